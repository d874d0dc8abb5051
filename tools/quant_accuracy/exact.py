#!/usr/bin/python3
# Exact logits of a quantized LFM2 file: dequantizes every tensor of a GGUF (F32/F16/Q8_0/Q4_0) or
# MLX (4/8-bit affine) file into float64 and runs tools/np_reference.py's independent float64
# forward on those weights. This separates the error the quantized weights themselves cause from
# the arithmetic of an engine that runs them (lfmd, llama.cpp). Invariant: it reads the quantized
# file as written, with its own decoder (lfmd's code is not used); numpy only.
# SPDX-License-Identifier: MIT
"""usage: exact.py BF16_DIR WEIGHTS CASES.json OUT_PATTERN

BF16_DIR: the HF model the file was quantized from (config.json; its weights are replaced).
WEIGHTS:  FILE.gguf, an MLX folder (model.safetensors with .scales/.biases), or "bf16" (no change).
CASES.json: [{"name": "case0", "ids": "1,2,3"}, ...]; writes OUT_PATTERN with {case} replaced
(V little-endian float32 logits of the last prompt position) for each case whose file does not
exist yet (written whole by numpy; delete the files to recompute).
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import np_reference  # noqa: E402

GGUF_LFM2 = {  # GGUF name (after "blk.N.") -> HF name (after "model.layers.N.")
    "attn_norm.weight": "operator_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "feed_forward.w1.weight", "ffn_up.weight": "feed_forward.w3.weight",
    "ffn_down.weight": "feed_forward.w2.weight", "shortconv.in_proj.weight": "conv.in_proj.weight",
    "shortconv.conv.weight": "conv.conv.weight",
    "shortconv.out_proj.weight": "conv.out_proj.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.out_proj.weight",
    "attn_q_norm.weight": "self_attn.q_layernorm.weight",
    "attn_k_norm.weight": "self_attn.k_layernorm.weight"}
GGUF_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight",
               "token_embd_norm.weight": "model.embedding_norm.weight",
               "output_norm.weight": "model.embedding_norm.weight"}


def f16(raw):
    return raw.view("<f2").astype(np.float64)


def read_gguf(path):
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    mv = memoryview(buf)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, mv, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = bytes(mv[pos:pos + n]).decode("utf-8", "replace")
        pos += n
        return s
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])
    if bytes(mv[0:4]) != b"GGUF":
        raise SystemExit("%s: not GGUF" % path)
    pos = 4
    take("I")
    n_t, n_kv = take("Q"), take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("I"))
    infos = []
    for _ in range(n_t):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        infos.append((name, ne, take("I"), take("Q")))
    al = kv.get("general.alignment", 32)
    base = (pos + al - 1) // al * al
    out = {}
    for name, ne, ty, off in infos:
        n = int(np.prod(ne))
        rows = n // ne[0]
        a = base + off
        if ty == 0:
            w = buf[a:a + 4 * n].view("<f4").astype(np.float64)
        elif ty == 1:
            w = f16(buf[a:a + 2 * n])
        elif ty == 8:  # Q8_0: f16 d, 32 x int8
            blk = buf[a:a + n // 32 * 34].reshape(-1, 34)
            w = (f16(blk[:, :2].copy().reshape(-1))[:, None] *
                 blk[:, 2:].view(np.int8).astype(np.float64)).reshape(-1)
        elif ty == 2:  # Q4_0: f16 d, 16 bytes; element j = low nibble of byte j, j+16 = high - 8
            blk = buf[a:a + n // 32 * 18].reshape(-1, 18)
            q = blk[:, 2:]
            v = np.concatenate([(q & 15), (q >> 4)], axis=1).astype(np.float64) - 8.0
            w = (f16(blk[:, :2].copy().reshape(-1))[:, None] * v).reshape(-1)
        else:
            raise SystemExit("%s: tensor %s has type %d (not decoded here)" % (path, name, ty))
        w = w.reshape(rows, ne[0]) if len(ne) >= 2 else w
        if name in GGUF_GLOBAL:
            hf = GGUF_GLOBAL[name]
        else:
            parts = name.split(".", 2)
            hf = "model.layers.%s.%s" % (parts[1], GGUF_LFM2[parts[2]])
        out[hf] = w
    return out


def read_safetensors_any(path):
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    n = int(buf[:8].view("<u8")[0])
    hdr = json.loads(bytes(buf[8:8 + n]))
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = buf[8 + n + a:8 + n + b]
        if v["dtype"] == "BF16":
            x = (raw.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
        elif v["dtype"] == "F16":
            x = raw.view("<f2")
        elif v["dtype"] == "F32":
            x = raw.view("<f4")
        elif v["dtype"] == "U32":
            x = raw.view("<u4")
        else:
            raise SystemExit("%s: %s has dtype %s" % (path, k, v["dtype"]))
        out[k] = x.reshape(v["shape"])
    return out


def read_mlx(d):
    c = json.load(open(os.path.join(d, "config.json")))
    bits = c["quantization"]["bits"]
    gs = c["quantization"]["group_size"]
    t = read_safetensors_any(os.path.join(d, "model.safetensors"))
    out = {}
    for k, x in t.items():
        if k.endswith(".scales") or k.endswith(".biases"):
            continue
        base = k[:-len(".weight")] if k.endswith(".weight") else None
        if base and base + ".scales" in t:
            by = x.view(np.uint8).reshape(x.shape[0], -1)  # little-endian: first element lowest
            if bits == 8:
                q = by
            elif bits == 4:
                q = np.stack([by & 15, by >> 4], axis=2).reshape(x.shape[0], -1)
            else:
                raise SystemExit("bits %d not decoded here" % bits)
            s = t[base + ".scales"].astype(np.float64)
            b = t[base + ".biases"].astype(np.float64)
            rows, cols = q.shape
            w = (q.reshape(rows, cols // gs, gs).astype(np.float64) * s[:, :, None] + b[:, :, None])
            out[k] = w.reshape(rows, cols)
        else:
            out[k] = x.astype(np.float64)
    return out


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    bf16_dir, weights, cases_path, pattern = sys.argv[1:]
    todo = [c for c in json.load(open(cases_path))
            if not os.path.exists(pattern.replace("{case}", c["name"]))]
    if not todo:
        return 0
    m = np_reference.Model(bf16_dir)
    if weights != "bf16":
        new = read_gguf(weights) if weights.endswith(".gguf") else read_mlx(weights)
        for k, v in new.items():
            if k not in m.w:
                raise SystemExit("%s: unexpected tensor %s" % (weights, k))
            m.w[k] = v.reshape(m.w[k].shape)
        missing = sorted(set(m.w) - set(new))
        if missing:
            raise SystemExit("%s: missing %s" % (weights, missing[:5]))
        m.lm = m.w.get("lm_head.weight", m.w["model.embed_tokens.weight"])
    for c in todo:
        ids = [int(i) for i in c["ids"].split(",")]
        m.logits(ids).astype("<f4").tofile(pattern.replace("{case}", c["name"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
