#!/usr/bin/python3
"""Writes a corpus of malformed model files and directories for tests/fault/test_malformed.sh.

Every case is derived from a valid base written by tools/gen_model.py (a micro LFM2, a micro Llama),
`lfmd quantize` (an MLX q4 directory and a GGUF q8_0 file) and the embedded router's tokenizer, then
broken in one way: truncation at every section, offsets past the end, overlapping tensors, absurd
dimensions and counts, wrong dtypes, NaN/Inf weights, missing or extra tensors, inconsistent
configs, huge strings, bad shard indexes, bad tokenizers.

Output: OUT/<case> (a directory, or a .gguf file) and OUT/cases.tsv with one line per case:
    name <TAB> path <TAB> expect <TAB> what
expect is `error` (lfmd must exit 1 with a one-line error), `ok` (must load and generate: NaN/Inf
weights are data, not format errors; the output is garbage but nothing may crash) or `any` (either
outcome is acceptable, e.g. an extra unused tensor; it still must not crash).
Usage: tools/make_malformed.py --lfmd BUILD/src/lfmd --out DIR
"""
import argparse, json, os, shutil, struct, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = {"vocab_size": 288, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "block_ff_dim": 64, "block_auto_adjust_ff_dim": False,
         "layer_types": ["conv", "full_attention"]}
cases = []


# ---------------------------------------------------------------- safetensors
def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_bytes(hdr, data, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + data


def new_dir(out, name, base):
    d = os.path.join(out, name)
    shutil.copytree(base, d)
    return d


def add(name, path, expect, what):
    cases.append((name, path, expect, what))


def st_case(out, base, name, expect, what, hdr_fn=None, data_fn=None, raw=None, cfg_fn=None,
            cfg_raw=None, extra=None):
    d = new_dir(out, name, base)
    stp = os.path.join(d, "model.safetensors")
    hdr, data = st_read(stp)
    if hdr_fn:
        hdr = hdr_fn(hdr) or hdr
    if data_fn:
        data = data_fn(hdr, data)
    with open(stp, "wb") as f:
        f.write(raw(open(os.path.join(base, "model.safetensors"), "rb").read()) if raw
                else st_bytes(hdr, data))
    cp = os.path.join(d, "config.json")
    if cfg_fn:
        c = json.load(open(cp))
        c = cfg_fn(c) or c
        json.dump(c, open(cp, "w"))
    if cfg_raw is not None:
        if cfg_raw is False:
            os.unlink(cp)
        else:
            open(cp, "wb").write(cfg_raw)
    if extra:
        extra(d)
    add(name, d, expect, what)


def tensors(hdr):
    return sorted((k for k in hdr if k != "__metadata__"), key=lambda k: hdr[k]["data_offsets"][0])


def set_floats(hdr, data, name, value):
    t = hdr[name]
    b, e = t["data_offsets"]
    assert t["dtype"] == "BF16"
    v = struct.pack("<f", value)[2:]  # bf16 = top half of f32
    return data[:b] + v * ((e - b) // 2) + data[e:]


def safetensors_cases(out, base, llama):
    b = open(os.path.join(base, "model.safetensors"), "rb").read()
    hl = struct.unpack("<Q", b[:8])[0]
    hdr, data = st_read(os.path.join(base, "model.safetensors"))
    names = tensors(hdr)
    first, last = names[0], names[-1]
    emb = "model.embed_tokens.weight" if "model.embed_tokens.weight" in hdr else names[0]
    # truncation at every section
    for nm, cut in (("st-empty", 0), ("st-trunc-len", 4), ("st-trunc-header-start", 9),
                    ("st-trunc-header-mid", 8 + hl // 2), ("st-trunc-header-end", 8 + hl - 1),
                    ("st-trunc-no-data", 8 + hl), ("st-trunc-first-tensor", 8 + hl + 3),
                    ("st-trunc-mid-data", 8 + hl + len(data) // 2), ("st-trunc-last-byte", len(b) - 1)):
        st_case(out, base, nm, "error", "safetensors truncated at byte %d" % cut,
                raw=lambda x, c=cut: x[:c])
    st_case(out, base, "st-header-len-huge", "error", "header length 2^63",
            raw=lambda x: struct.pack("<Q", 1 << 63) + x[8:])
    st_case(out, base, "st-header-len-past-end", "error", "header length = file size",
            raw=lambda x: struct.pack("<Q", len(x)) + x[8:])
    st_case(out, base, "st-header-garbage", "error", "header is not JSON",
            raw=lambda x: x[:8] + b"\xff" * hl + x[8 + hl:])
    st_case(out, base, "st-header-array", "error", "header is a JSON array",
            raw=lambda x: st_bytes(None, data, b"[" + b" " * (hl - 2) + b"]"))
    st_case(out, base, "st-header-deep", "error", "header nested 100000 deep",
            raw=lambda x: st_bytes(None, data, b"[" * 100000 + b"]" * 100000))

    def mod(name, fn):
        def f(h):
            fn(h[name])
        return f
    st_case(out, base, "st-offset-past-end", "error", "last tensor ends past the file",
            hdr_fn=mod(last, lambda t: t.__setitem__("data_offsets", [t["data_offsets"][0],
                                                                       len(data) + 64])))
    st_case(out, base, "st-offset-begin-past-end", "error", "tensor begins 2^60 past the data",
            hdr_fn=mod(last, lambda t: t.__setitem__("data_offsets", [1 << 60, (1 << 60) + 8])))
    st_case(out, base, "st-offsets-reversed", "error", "begin > end",
            hdr_fn=mod(first, lambda t: t.__setitem__("data_offsets", t["data_offsets"][::-1])))
    st_case(out, base, "st-offsets-negative", "error", "negative offsets",
            hdr_fn=mod(first, lambda t: t.__setitem__("data_offsets", [-8, 0])))
    st_case(out, base, "st-offsets-float", "error", "fractional offsets",
            hdr_fn=mod(first, lambda t: t.__setitem__("data_offsets", [0.5, 8.5])))
    st_case(out, base, "st-offsets-overlap", "error", "two tensors share bytes",
            hdr_fn=lambda h: h[names[1]].__setitem__("data_offsets",
                                                     [h[names[0]]["data_offsets"][0] + 2,
                                                      h[names[0]]["data_offsets"][0] + 2 +
                                                      h[names[1]]["data_offsets"][1] -
                                                      h[names[1]]["data_offsets"][0]]))
    st_case(out, base, "st-size-mismatch", "error", "shape product != byte size",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", [t["shape"][0], t["shape"][1] + 1])))
    st_case(out, base, "st-dims-absurd", "error", "shape [2^40, 2^40] (size overflow)",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", [1 << 40, 1 << 40])))
    st_case(out, base, "st-dims-overflow-exact", "error", "shape product wraps to the byte size",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", [1 << 62, 4, t["shape"][0] *
                                                              t["shape"][1]])))
    st_case(out, base, "st-dims-negative", "error", "negative dimension",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", [-t["shape"][0], -t["shape"][1]])))
    st_case(out, base, "st-dims-five", "error", "5-D tensor",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", [1, 1, 1] + t["shape"])))
    st_case(out, base, "st-dims-zero", "error", "zero-size embedding",
            hdr_fn=mod(emb, lambda t: (t.__setitem__("shape", [0, t["shape"][1]]),
                                       t.__setitem__("data_offsets", [t["data_offsets"][0]] * 2))))
    st_case(out, base, "st-dtype-unknown", "error", "dtype Q9",
            hdr_fn=mod(emb, lambda t: t.__setitem__("dtype", "Q9")))
    st_case(out, base, "st-dtype-int", "error", "embedding stored as I16 (same size, wrong type)",
            hdr_fn=mod(emb, lambda t: t.__setitem__("dtype", "I16")))
    st_case(out, base, "st-dtype-f32-halfshape", "error", "F32 with half the columns",
            hdr_fn=mod(emb, lambda t: (t.__setitem__("dtype", "F32"),
                                       t.__setitem__("shape", [t["shape"][0], t["shape"][1] // 2]))))
    st_case(out, base, "st-dtype-not-string", "error", "dtype is a number",
            hdr_fn=mod(emb, lambda t: t.__setitem__("dtype", 16)))
    st_case(out, base, "st-entry-missing-fields", "error", "tensor entry without shape",
            hdr_fn=mod(emb, lambda t: t.pop("shape")))
    st_case(out, base, "st-shape-transposed", "error", "embedding shape transposed",
            hdr_fn=mod(emb, lambda t: t.__setitem__("shape", t["shape"][::-1])))
    st_case(out, base, "st-missing-embedding", "error", "no embedding tensor",
            hdr_fn=lambda h: h.pop(emb))
    lt = [n for n in names if ".layers.1." in n][0]
    st_case(out, base, "st-missing-layer-tensor", "error", "missing " + lt,
            hdr_fn=lambda h: h.pop(lt))
    st_case(out, base, "st-extra-tensor", "any", "an extra unused tensor",
            hdr_fn=lambda h: h.__setitem__("model.layers.99.extra.weight",
                                           dict(h[first], data_offsets=h[first]["data_offsets"])),
            data_fn=None)
    st_case(out, base, "st-huge-name", "error", "a 1 MiB tensor name",
            hdr_fn=lambda h: h.__setitem__("x" * (1 << 20), h.pop(first)))
    st_case(out, base, "st-metadata-types", "any", "__metadata__ with non-string values",
            hdr_fn=lambda h: h.__setitem__("__metadata__", {"format": 1, "x": [1, 2], "y": None}))
    st_case(out, base, "st-duplicate-key", "any", "the same tensor name twice in the header",
            raw=lambda x: st_bytes(None, data, json.dumps(hdr).encode()[:-1] + b"," +
                                   json.dumps({emb: hdr[emb]}).encode()[1:]))
    # NaN / Inf weights: load fine, generation must not crash (output is garbage)
    st_case(out, base, "st-nan-weights", "ok", "embedding all NaN",
            data_fn=lambda h, d: set_floats(h, d, emb, float("nan")))
    st_case(out, base, "st-inf-weights", "ok", "embedding all +Inf",
            data_fn=lambda h, d: set_floats(h, d, emb, float("inf")))
    nrm = [n for n in names if "norm" in n][0]
    st_case(out, base, "st-nan-norm", "ok", nrm + " all NaN",
            data_fn=lambda h, d: set_floats(h, d, nrm, float("nan")))
    # config.json
    st_case(out, base, "cfg-missing", "error", "no config.json", cfg_raw=False)
    st_case(out, base, "cfg-empty", "error", "empty config.json", cfg_raw=b"")
    st_case(out, base, "cfg-garbage", "error", "config.json not JSON", cfg_raw=b"{\"vocab_size\": ")
    st_case(out, base, "cfg-array", "error", "config.json is an array", cfg_raw=b"[1,2]")
    st_case(out, base, "cfg-huge", "error", "config.json over the size limit (5 MiB)",
            cfg_raw=b"{" + b" " * (5 << 20) + b"}")
    for nm, k, v in (("cfg-vocab-zero", "vocab_size", 0), ("cfg-vocab-negative", "vocab_size", -5),
                     ("cfg-vocab-huge", "vocab_size", 1 << 40), ("cfg-vocab-mismatch", "vocab_size", 300),
                     ("cfg-hidden-mismatch", "hidden_size", 64), ("cfg-hidden-string", "hidden_size", "32"),
                     ("cfg-layers-huge", "num_hidden_layers", 100000), ("cfg-layers-zero", "num_hidden_layers", 0),
                     ("cfg-layers-more", "num_hidden_layers", 3), ("cfg-heads-zero", "num_attention_heads", 0),
                     ("cfg-kv-heads-zero", "num_key_value_heads", 0), ("cfg-kv-heads-nondiv", "num_key_value_heads", 3),
                     ("cfg-heads-nondiv", "num_attention_heads", 3), ("cfg-conv-zero", "conv_L_cache", 0),
                     ("cfg-conv-huge", "conv_L_cache", 1 << 30), ("cfg-norm-eps-negative", "norm_eps", -1.0),
                     ("cfg-rope-zero", "rope_theta", 0), ("cfg-maxpos-zero", "max_position_embeddings", 0),
                     ("cfg-model-type-unknown", "model_type", "gpt99"), ("cfg-arch-huge-string", "model_type", "x" * (1 << 20)),
                     ("cfg-layer-types-short", "layer_types", ["conv"]), ("cfg-layer-types-bad", "layer_types", ["conv", "mamba"]),
                     ("cfg-bos-out-of-range", "bos_token_id", 1 << 30), ("cfg-eos-negative", "eos_token_id", -7),
                     ("cfg-untied-no-head", "tie_word_embeddings", False), ("cfg-ff-mismatch", "block_ff_dim", 96)):
        expect = "any" if k in ("bos_token_id", "eos_token_id", "max_position_embeddings") else "error"
        st_case(out, base, nm, expect, "config %s = %s" % (k, json.dumps(v)[:40]),
                cfg_fn=lambda c, k=k, v=v: c.__setitem__(k, v))
    st_case(out, base, "cfg-no-model-type", "error", "config without model_type or architectures",
            cfg_fn=lambda c: (c.pop("model_type"), c.pop("architectures")))
    # shard index
    def sharded(d, idx):
        os.rename(os.path.join(d, "model.safetensors"), os.path.join(d, "model-00001-of-00001.safetensors"))
        open(os.path.join(d, "model.safetensors.index.json"), "w").write(idx)
    wm = {n: "model-00001-of-00001.safetensors" for n in names}
    st_case(out, base, "idx-ok-control", "ok", "valid single-shard index (control case)",
            extra=lambda d: sharded(d, json.dumps({"weight_map": wm})))
    st_case(out, base, "idx-garbage", "error", "index not JSON", extra=lambda d: sharded(d, "{{"))
    st_case(out, base, "idx-no-weight-map", "error", "index without weight_map",
            extra=lambda d: sharded(d, "{}"))
    st_case(out, base, "idx-missing-shard", "error", "index names a missing shard",
            extra=lambda d: sharded(d, json.dumps({"weight_map": dict(wm, **{first: "nope.safetensors"})})))
    st_case(out, base, "idx-path-traversal", "error", "shard name ../../etc/passwd",
            extra=lambda d: sharded(d, json.dumps({"weight_map": dict(wm, **{first: "../../../../etc/passwd"})})))
    st_case(out, base, "idx-wrong-shard-for-tensor", "any", "index maps a tensor to a shard without it",
            extra=lambda d: (sharded(d, json.dumps({"weight_map": dict(wm, **{first: "model-2.safetensors"})})),
                             open(os.path.join(d, "model-2.safetensors"), "wb").write(
                                 st_bytes({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, b"\0\0"))))
    # llama base: a couple of llama-specific config breaks
    for nm, k, v in (("llama-headdim-mismatch", "head_dim", 64), ("llama-ffn-mismatch", "intermediate_size", 48)):
        d = new_dir(out, nm, llama)
        c = json.load(open(os.path.join(d, "config.json")))
        c[k] = v
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        add(nm, d, "error", "llama config %s = %s" % (k, v))


def mlx_cases(out, mlx):
    def cfg(nm, fn, what, expect="error"):
        d = new_dir(out, nm, mlx)
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        fn(c)
        json.dump(c, open(p, "w"))
        add(nm, d, expect, what)
    cfg("mlx-bits-3", lambda c: c["quantization"].__setitem__("bits", 3), "quantization bits 3")
    cfg("mlx-bits-zero", lambda c: c["quantization"].__setitem__("bits", 0), "quantization bits 0")
    cfg("mlx-group-zero", lambda c: c["quantization"].__setitem__("group_size", 0), "group_size 0")
    cfg("mlx-group-7", lambda c: c["quantization"].__setitem__("group_size", 7), "group_size 7")
    cfg("mlx-group-mismatch", lambda c: c["quantization"].__setitem__("group_size", 128),
        "group_size 128 vs packed shapes of 32")
    cfg("mlx-no-quant-block", lambda c: c.pop("quantization"), "packed weights, no quantization block")
    hdr, data = st_read(os.path.join(mlx, "model.safetensors"))
    sc = [n for n in hdr if n.endswith(".scales")][0]
    for nm, fn, what in (("mlx-missing-scales", lambda h: h.pop(sc), "missing " + sc),
                         ("mlx-scales-shape", lambda h: h[sc].__setitem__("shape", h[sc]["shape"][::-1]),
                          "scales shape transposed"),
                         ("mlx-biases-missing", lambda h: h.pop(sc.replace(".scales", ".biases")),
                          "missing biases"),
                         ("mlx-packed-dtype", lambda h: h[sc.replace(".scales", ".weight")].__setitem__("dtype", "I32"),
                          "packed weight as I32")):
        d = new_dir(out, nm, mlx)
        h = json.loads(json.dumps(hdr))
        fn(h)
        open(os.path.join(d, "model.safetensors"), "wb").write(st_bytes(h, data))
        add(nm, d, "error", what)


# ---------------------------------------------------------------- GGUF
def gguf_read(path):
    b = open(path, "rb").read()
    pos = 24
    magic, ver, nt, nkv = struct.unpack("<4sIQQ", b[:24])
    kvs = []

    def rstr(p):
        n = struct.unpack("<Q", b[p:p + 8])[0]
        return b[p + 8:p + 8 + n], p + 8 + n
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def rval(t, p):
        if t == 8:
            s, p2 = rstr(p)
            return b[p:p2], p2
        if t == 9:
            et, n = struct.unpack("<IQ", b[p:p + 12])
            q = p + 12
            for _ in range(n):
                _, q = rval(et, q)
            return b[p:q], q
        return b[p:p + sizes[t]], p + sizes[t]
    for _ in range(nkv):
        k, pos = rstr(pos)
        t = struct.unpack("<I", b[pos:pos + 4])[0]
        v, pos = rval(t, pos + 4)
        kvs.append([k, t, v])
    tens = []
    for _ in range(nt):
        name, pos = rstr(pos)
        nd = struct.unpack("<I", b[pos:pos + 4])[0]
        ne = list(struct.unpack("<%dQ" % nd, b[pos + 4:pos + 4 + 8 * nd]))
        pos += 4 + 8 * nd
        ty, off = struct.unpack("<IQ", b[pos:pos + 12])
        pos += 12
        tens.append([name, ne, ty, off])
    align = 32
    data_start = (pos + align - 1) // align * align
    return dict(ver=ver, kvs=kvs, tens=tens, data=b[data_start:], header_end=pos, raw=b,
                data_start=data_start)


def gguf_bytes(g, magic=b"GGUF", nt=None, nkv=None, align=32):
    out = bytearray(struct.pack("<4sIQQ", magic, g["ver"], len(g["tens"]) if nt is None else nt,
                                len(g["kvs"]) if nkv is None else nkv))
    for k, t, v in g["kvs"]:
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + v
    for name, ne, ty, off in g["tens"]:
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne))
        out += struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", ty, off)
    out += b"\0" * ((-len(out)) % align)
    return bytes(out + g["data"])


def gguf_cases(out, base):
    g0 = gguf_read(base)
    raw = g0["raw"]

    def case(nm, what, fn=None, rawfn=None, expect="error", **kw):
        p = os.path.join(out, nm + ".gguf")
        if rawfn:
            b = rawfn(raw)
        else:
            g = json.loads(json.dumps({}))  # fresh copy below
            g = dict(g0, kvs=[list(x) for x in g0["kvs"]], tens=[[t[0], list(t[1]), t[2], t[3]] for t in g0["tens"]])
            fn(g)
            b = gguf_bytes(g, **kw)
        open(p, "wb").write(b)
        add(nm, p, expect, what)

    # truncation at every section
    kv_end = 24
    first_kv = 24 + 8 + len(g0["kvs"][0][0]) + 4 + len(g0["kvs"][0][1:2]) * 0
    for nm, cut in (("gguf-empty", 0), ("gguf-trunc-magic", 2), ("gguf-trunc-header", 20),
                    ("gguf-trunc-first-key", first_kv - 3), ("gguf-trunc-kv-mid", g0["header_end"] // 3),
                    ("gguf-trunc-kv-late", g0["header_end"] // 2),
                    ("gguf-trunc-tensor-info", g0["header_end"] - 10),
                    ("gguf-trunc-before-data", g0["data_start"]),
                    ("gguf-trunc-mid-data", g0["data_start"] + len(g0["data"]) // 2),
                    ("gguf-trunc-last-byte", len(raw) - 1)):
        case(nm, "GGUF truncated at byte %d" % cut, rawfn=lambda r, c=cut: r[:c])
    case("gguf-bad-magic", "magic GGUX", rawfn=lambda r: b"GGUX" + r[4:])
    case("gguf-version-1", "version 1", rawfn=lambda r: r[:4] + struct.pack("<I", 1) + r[8:])
    case("gguf-version-99", "version 99", rawfn=lambda r: r[:4] + struct.pack("<I", 99) + r[8:])
    case("gguf-ntensors-huge", "tensor count 2^62", lambda g: None, nt=1 << 62)
    case("gguf-nkv-huge", "kv count 2^62", lambda g: None, nkv=1 << 62)
    case("gguf-nkv-plus-one", "kv count one more than present", lambda g: None, nkv=len(g0["kvs"]) + 1)

    def kvset(key, t, v):
        def f(g):
            for kv in g["kvs"]:
                if kv[0] == key:
                    kv[1], kv[2] = t, v
                    return
            g["kvs"].append([key, t, v])
        return f
    arch = [kv for kv in g0["kvs"] if kv[0] == b"general.architecture"][0][2][8:].decode()
    case("gguf-key-len-huge", "a key of length 2^60",
         lambda g: g["kvs"].insert(0, [b"", 4, b""]),
         rawfn=lambda r: r[:24] + struct.pack("<Q", 1 << 60) + r[32:])
    case("gguf-kv-type-invalid", "value type 99", lambda g: g["kvs"][0].__setitem__(1, 99))
    case("gguf-str-len-huge", "general.architecture string length 2^50",
         kvset(b"general.architecture", 8, struct.pack("<Q", 1 << 50) + arch.encode()))
    case("gguf-array-count-huge", "array with 2^61 elements", kvset(b"x.arr", 9, struct.pack("<IQ", 4, 1 << 61)))
    case("gguf-array-nested", "array of arrays (unused key)", expect="any", fn=kvset(b"x.arr", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0)))
    case("gguf-array-type-invalid", "array element type 77", kvset(b"x.arr", 9, struct.pack("<IQ", 77, 1) + b"\0" * 8))
    case("gguf-arch-unknown", "general.architecture gpt99",
         kvset(b"general.architecture", 8, struct.pack("<Q", 5) + b"gpt99"))
    case("gguf-arch-wrong-type", "general.architecture is a u32", kvset(b"general.architecture", 4, b"\1\0\0\0"))
    case("gguf-block-count-huge", "block_count 2^31-1",
         kvset(("%s.block_count" % arch).encode(), 4, struct.pack("<I", 0x7fffffff)))
    case("gguf-embd-mismatch", "embedding_length 64 vs tensors of 32",
         kvset(("%s.embedding_length" % arch).encode(), 4, struct.pack("<I", 64)))
    case("gguf-heads-zero", "head_count 0", kvset(("%s.attention.head_count" % arch).encode(), 4, struct.pack("<I", 0)))
    case("gguf-alignment-zero", "general.alignment 0", kvset(b"general.alignment", 4, struct.pack("<I", 0)))
    case("gguf-alignment-3", "general.alignment 3", kvset(b"general.alignment", 4, struct.pack("<I", 3)))
    case("gguf-huge-string", "a 4 MiB string value (unused key)", expect="any", fn=kvset(b"x.big", 8, struct.pack("<Q", 4 << 20) + b"a" * (4 << 20)))
    toks = [kv for kv in g0["kvs"] if kv[0] == b"tokenizer.ggml.tokens"]
    if toks:
        def short_vocab(g):
            for kv in g["kvs"]:
                if kv[0] == b"tokenizer.ggml.tokens":
                    et, n = struct.unpack("<IQ", kv[2][:12])
                    p, items = 12, []
                    for _ in range(n):
                        ln = struct.unpack("<Q", kv[2][p:p + 8])[0]
                        items.append(kv[2][p:p + 8 + ln])
                        p += 8 + ln
                    kv[2] = struct.pack("<IQ", et, 10) + b"".join(items[:10])
        case("gguf-vocab-short", "10 tokens for a vocab of 288", short_vocab)
        def types_short(g):
            for kv in g["kvs"]:
                if kv[0] == b"tokenizer.ggml.token_type":
                    kv[2] = struct.pack("<IQ", 5, 3) + b"\1\0\0\0" * 3
        case("gguf-token-types-short", "token_type array of 3", types_short)
        case("gguf-bos-out-of-range", "bos id 2^31-1",
             kvset(b"tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0x7fffffff)), expect="any")
    def t(i, fn):
        def f(g):
            fn(g["tens"][i])
        return f
    case("gguf-tensor-type-invalid", "tensor type 99", t(0, lambda x: x.__setitem__(2, 99)))
    case("gguf-tensor-type-unsupported", "tensor type 41 (not known)", t(0, lambda x: x.__setitem__(2, 41)))
    case("gguf-tensor-dims-zero", "0-D tensor", t(0, lambda x: x.__setitem__(1, [])))
    case("gguf-tensor-dims-five", "5-D tensor", t(0, lambda x: x.__setitem__(1, x[1] + [1, 1, 1, 1])))
    case("gguf-tensor-ne-huge", "ne = [2^40, 2^40]", t(0, lambda x: x.__setitem__(1, [1 << 40, 1 << 40])))
    case("gguf-tensor-ne-zero", "a zero dimension", t(0, lambda x: x.__setitem__(1, [0] + x[1][1:])))
    case("gguf-tensor-offset-past-end", "offset past the file", t(-1, lambda x: x.__setitem__(3, 1 << 40)))
    case("gguf-tensor-offset-unaligned", "offset 1 (unaligned)", t(1, lambda x: x.__setitem__(3, x[3] + 1)))
    case("gguf-tensor-overlap", "two tensors at the same offset",
         lambda g: g["tens"][1].__setitem__(3, g["tens"][0][3]))
    case("gguf-tensor-dup-name", "duplicate tensor name", lambda g: g["tens"][1].__setitem__(0, g["tens"][0][0]))
    case("gguf-tensor-missing", "a required tensor renamed away",
         lambda g: g["tens"][2].__setitem__(0, b"zzz." + g["tens"][2][0]))
    case("gguf-tensor-extra", "an extra tensor (aliasing another's data)",
         lambda g: g["tens"].append([b"blk.99.extra.weight", list(g["tens"][0][1]), g["tens"][0][2], g["tens"][0][3]]),
         expect="any")
    case("gguf-tensor-name-huge", "a tensor name of 2 MiB",
         lambda g: g["tens"][0].__setitem__(0, b"n" * (2 << 20)))
    case("gguf-tensor-shape-transposed", "token_embd shape transposed",
         lambda g: [x.__setitem__(1, x[1][::-1]) for x in g["tens"] if x[0] == b"token_embd.weight"])


def tokenizer_cases(out, router_model):
    base = router_model

    def tcase(nm, what, fn, expect="error", fname="tokenizer.json"):
        d = os.path.join(out, nm)
        os.makedirs(d)
        for f in os.listdir(base):
            src = os.path.join(base, f)
            if f == "model.safetensors":
                os.symlink(os.path.abspath(src), os.path.join(d, f))
            else:
                shutil.copy(src, d)
        p = os.path.join(d, fname)
        new = fn(open(p, "rb").read())
        open(p, "wb").write(new)
        add(nm, d, expect, what)
    J = lambda fn: (lambda b: json.dumps(fn(json.loads(b))).encode())
    tcase("tok-trunc", "tokenizer.json cut in half", lambda b: b[:len(b) // 2])
    tcase("tok-empty", "empty tokenizer.json", lambda b: b"")
    tcase("tok-bad-merge", "merge of unknown tokens",
          J(lambda d: (d["model"].__setitem__("merges", ["qqq zzz"] + d["model"]["merges"]), d)[1]))
    tcase("tok-added-id-huge", "added token id 2^31",
          J(lambda d: (d["added_tokens"].append({"id": 1 << 31, "content": "<x>", "special": True}), d)[1]))
    tcase("tok-bad-regex", "pre-tokenizer regex does not compile",
          J(lambda d: (d.__setitem__("pre_tokenizer", {"type": "Split", "pattern": {"Regex": "(("},
                                                          "behavior": "Isolated", "invert": False}), d)[1]))
    tcase("tok-model-unknown", "model type Unigram9", J(lambda d: (d["model"].__setitem__("type", "Unigram9"), d)[1]))
    tcase("tok-vocab-array", "vocab is an array", J(lambda d: (d["model"].__setitem__("vocab", [1, 2]), d)[1]))
    tcase("tok-huge-token", "a 1 MiB token text",
          J(lambda d: (d["model"]["vocab"].__setitem__("x" * (1 << 20), len(d["model"]["vocab"])), d)[1]),
          expect="any")
    tcase("tok-template-syntax", "chat template with a syntax error",
          J(lambda d: (d.__setitem__("chat_template", "{% for %}{{"), d)[1]), expect="any",
          fname="tokenizer_config.json")
    tcase("tok-config-garbage", "tokenizer_config.json not JSON", lambda b: b"{{{", expect="any",
          fname="tokenizer_config.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfmd", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    bases = os.path.join(out, ".bases")
    gen = [sys.executable, os.path.join(ROOT, "tools", "gen_model.py")]
    micro = os.path.join(bases, "micro")
    subprocess.check_call(gen + ["--preset", "tiny-lfm2", "--config", json.dumps(MICRO), "--seed", "5",
                                 "--out", micro], stdout=subprocess.DEVNULL)
    llama = os.path.join(bases, "llama")
    subprocess.check_call(gen + ["--preset", "tiny-llama", "--config", json.dumps(
        {"vocab_size": 288, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1, "intermediate_size": 64}), "--seed", "6", "--out", llama],
        stdout=subprocess.DEVNULL)
    mlx = os.path.join(bases, "mlx")
    subprocess.check_call([a.lfmd, "quantize", micro, mlx, "--group-size", "32"], stdout=subprocess.DEVNULL)
    gg = os.path.join(bases, "micro.gguf")
    subprocess.check_call([a.lfmd, "quantize", micro, gg, "--format", "gguf", "--type", "q8_0"],
                          stdout=subprocess.DEVNULL)
    safetensors_cases(out, micro, llama)
    mlx_cases(out, mlx)
    gguf_cases(out, gg)
    tokenizer_cases(out, os.path.join(ROOT, "models", "lfm2-router"))
    with open(os.path.join(out, "cases.tsv"), "w") as f:
        for c in cases:
            f.write("\t".join(c) + "\n")
    print("wrote %d cases to %s" % (len(cases), out))


if __name__ == "__main__":
    main()
