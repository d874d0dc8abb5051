#!/usr/bin/python3
"""Write a random-weight model in Hugging Face layout (config.json, generation_config.json,
model.safetensors in bf16) for architecture `lfm2` (Lfm2ForCausalLM) or `llama` (LlamaForCausalLM).

Needs numpy only. The weights are a pure function of (seed, tensor name, element index): a counter-based
splitmix64 hash computed with uint64 numpy arithmetic, so the output is bit-identical across numpy versions
and machines (no np.random). Tensors are generated and written chunk by chunk, so memory stays bounded
(tens of MB) even for 1.2B-parameter shapes.

Examples:
  tools/gen_model.py --preset lfm2-350m --seed 1 --out /tmp/lfm2-350m
  tools/gen_model.py --preset tiny-lfm2 --config '{"num_key_value_heads": 4}' --out /tmp/t
  tools/gen_model.py --arch llama --preset tinyllama-1.1b --seed 3 --out /tmp/tl --jobs 8
  tools/gen_model.py --golden lfm2-gqa4 --out /tmp/x      # an entry of tools/golden_configs.json

See docs/GOLDEN.md for the weight distributions and the file format.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_CONFIGS = os.path.join(HERE, "golden_configs.json")

# ----------------------------------------------------------------------------------------------
# presets: config.json fields exactly as they are written (overrides are merged on top;
# an override whose value is null deletes the key)

LFM2_BASE = {
    "architectures": ["Lfm2ForCausalLM"],
    "model_type": "lfm2",
    "vocab_size": 65536,
    "hidden_size": 1024,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 128000,
    "norm_eps": 1e-05,
    "conv_bias": False,
    "conv_L_cache": 3,
    "block_ff_dim": 6656,
    "block_auto_adjust_ff_dim": True,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "layer_types": None,  # filled from attn idxs below
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 7,
    "pad_token_id": 0,
    "torch_dtype": "bfloat16",
    "use_cache": True,
}


def _layer_types(n, attn):
    return ["full_attention" if i in attn else "conv" for i in range(n)]


LLAMA_BASE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "pretraining_tp": 1,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
    "use_cache": True,
}

PRESETS = {
    # published LFM2 shapes (random weights)
    "lfm2-350m": ("lfm2", dict(LFM2_BASE, layer_types=_layer_types(16, [2, 5, 8, 10, 12, 14]))),
    "lfm2-700m": ("lfm2", dict(LFM2_BASE, hidden_size=1536, num_attention_heads=24, block_ff_dim=10240,
                               layer_types=_layer_types(16, [2, 5, 8, 10, 12, 14]))),
    "lfm2-1.2b": ("lfm2", dict(LFM2_BASE, hidden_size=2048, num_attention_heads=32, block_ff_dim=12288,
                               layer_types=_layer_types(16, [2, 5, 8, 10, 12, 14]))),
    "lfm2-2.6b": ("lfm2", dict(LFM2_BASE, hidden_size=2048, num_hidden_layers=30, num_attention_heads=32,
                               block_ff_dim=10752, block_auto_adjust_ff_dim=False,
                               layer_types=_layer_types(30, [2, 5, 9, 13, 17, 21, 24, 27]))),
    # TinyLlama-1.1B shape
    "tinyllama-1.1b": ("llama", dict(LLAMA_BASE)),
    # small generic shapes for quick tests
    "tiny-lfm2": ("lfm2", dict(LFM2_BASE, vocab_size=512, hidden_size=128, num_hidden_layers=4,
                               num_attention_heads=4, num_key_value_heads=2, block_ff_dim=512,
                               block_multiple_of=64, layer_types=_layer_types(4, [1, 3]))),
    "tiny-llama": ("llama", dict(LLAMA_BASE, vocab_size=512, hidden_size=128, intermediate_size=352,
                                 num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                 tie_word_embeddings=True)),
}
DEFAULT_PRESET = {"lfm2": "tiny-lfm2", "llama": "tiny-llama"}

# ----------------------------------------------------------------------------------------------
# deterministic hashing (uint64 numpy ops; explicit np.uint64 constants so numpy 1.x and 2.x
# promotion rules agree)

_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def splitmix64_py(x):
    """Scalar splitmix64 finaliser on a Python int (used for keys and prompt ids)."""
    z = x & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & _M64
    return h


def stream_key(seed, name):
    return splitmix64_py((seed * 0x9E3779B97F4A7C15 + fnv1a64(name)) & _M64)


def hash_block(key, j0, n):
    """splitmix64(key + (j+1)*GOLDEN) for j in [j0, j0+n) as a uint64 array."""
    j = np.arange(j0 + 1, j0 + n + 1, dtype=np.uint64)
    z = j * _GOLDEN  # wraps mod 2^64
    z += np.uint64(key)
    z ^= z >> _S30
    z *= _MIX1
    z ^= z >> _S27
    z *= _MIX2
    z ^= z >> _S31
    return z


def uniform_block(key, i0, n):
    """Uniform values in (-1, 1), float32, for elements [i0, i0+n) of a stream.
    Element i uses bits [16*(i%4), 16*(i%4)+16) of hash i//4 (little-endian lanes).
    Each value is (2*u+1-65536)/65536 with u a 16-bit integer: exact in float32."""
    j0 = i0 // 4
    j1 = (i0 + n + 3) // 4
    h = hash_block(key, j0, j1 - j0)
    # '<u8' bytes viewed as '<u2': lane k = bits [16k, 16k+16) on any host byte order
    lanes = h.astype("<u8", copy=False).view("<u2")
    u = lanes[i0 - 4 * j0: i0 - 4 * j0 + n]
    f = u.astype(np.float32)
    f *= np.float32(2.0)
    f += np.float32(1.0 - 65536.0)
    f *= np.float32(1.0 / 65536.0)
    return f


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bf16 bit patterns (uint16). No NaNs occur here."""
    b = x.astype(np.float32).view(np.uint32)
    r = (b >> np.uint32(16)) & np.uint32(1)
    b = b + np.uint32(0x7FFF) + r
    return (b >> np.uint32(16)).astype(np.uint16)


# ----------------------------------------------------------------------------------------------
# shapes


def lfm2_ffn_dim(c):
    ff = c.get("block_ff_dim", c.get("intermediate_size"))
    if ff is None:
        raise SystemExit("config needs block_ff_dim or intermediate_size")
    if c.get("block_auto_adjust_ff_dim", True):
        ff = int(2 * ff / 3)
        mult = c.get("block_ffn_dim_multiplier", 1.0)
        if mult is not None:  # HF Lfm2MLP: round-up only inside this branch
            ff = int(mult * ff)
            m = c.get("block_multiple_of", 256)
            ff = m * ((ff + m - 1) // m)
    return ff


def lfm2_layer_types(c):
    n = c["num_hidden_layers"]
    if c.get("layer_types") is not None:
        lt = list(c["layer_types"])
        if len(lt) != n:
            raise SystemExit("layer_types length %d != num_hidden_layers %d" % (len(lt), n))
        return lt
    idx = c.get("full_attn_idxs")
    if idx is None:
        idx = list(range(n))
    return _layer_types(n, idx)


def tied(c):
    if "tie_embedding" in c:
        return bool(c["tie_embedding"])
    return bool(c.get("tie_word_embeddings", True))


def rope_theta_of(c):
    rp = c.get("rope_parameters")
    if isinstance(rp, dict) and "rope_theta" in rp:
        return rp["rope_theta"]
    return c.get("rope_theta", c.get("theta", 1e6 if c.get("model_type") == "lfm2" else 10000.0))


# Each tensor: (name, shape, scale, offset): value = bf16(offset + scale * U), U uniform in (-1, 1).
# Scales: linear weights sqrt(3/n_in) (unit-variance outputs); embedding rows of norm ~1 (sqrt(3/D)) so the
# token embedding does not dominate the residual stream (with tied weights a large embedding makes every
# greedy step predict the current token again); norms 1 +- 0.25; the output gets logits of std ~LOGIT_STD:
# tied -> the final norm weight carries the gain (LOGIT_STD +- 25%), untied -> lm_head rows are scaled.
NORM_NOISE = 0.25
LOGIT_STD = 8.0


def lin_scale(n_in):
    return math.sqrt(3.0 / n_in)  # unit-variance outputs for unit-variance inputs


def tensor_list(arch, c):
    D = c["hidden_size"]
    V = c["vocab_size"]
    H = c["num_attention_heads"]
    Hkv = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or D // H
    if H % Hkv:
        raise SystemExit("num_attention_heads %d not divisible by num_key_value_heads %d" % (H, Hkv))
    t = []
    emb = math.sqrt(3.0 / D)
    t.append(("model.embed_tokens.weight", [V, D], emb, 0.0))
    if tied(c):
        final_gain = LOGIT_STD
    else:
        final_gain = 1.0
        t.append(("lm_head.weight", [V, D], LOGIT_STD * emb, 0.0))
    final = (None, NORM_NOISE * final_gain, final_gain)
    if arch == "lfm2":
        F = lfm2_ffn_dim(c)
        L = c.get("conv_L_cache", 3)
        if c.get("conv_bias", False):
            raise SystemExit("conv_bias=true is not supported by this generator")
        t.append(("model.embedding_norm.weight", [D]) + final[1:])
        for i, ty in enumerate(lfm2_layer_types(c)):
            p = "model.layers.%d." % i
            t.append((p + "operator_norm.weight", [D], NORM_NOISE, 1.0))
            t.append((p + "ffn_norm.weight", [D], NORM_NOISE, 1.0))
            t.append((p + "feed_forward.w1.weight", [F, D], lin_scale(D), 0.0))
            t.append((p + "feed_forward.w3.weight", [F, D], lin_scale(D), 0.0))
            t.append((p + "feed_forward.w2.weight", [D, F], lin_scale(F), 0.0))
            if ty == "conv":
                t.append((p + "conv.in_proj.weight", [3 * D, D], lin_scale(D), 0.0))
                t.append((p + "conv.conv.weight", [D, 1, L], 0.8, 0.0))
                t.append((p + "conv.out_proj.weight", [D, D], lin_scale(D), 0.0))
            elif ty == "full_attention":
                t.append((p + "self_attn.q_proj.weight", [H * hd, D], lin_scale(D), 0.0))
                t.append((p + "self_attn.k_proj.weight", [Hkv * hd, D], lin_scale(D), 0.0))
                t.append((p + "self_attn.v_proj.weight", [Hkv * hd, D], lin_scale(D), 0.0))
                t.append((p + "self_attn.out_proj.weight", [D, H * hd], lin_scale(H * hd), 0.0))
                t.append((p + "self_attn.q_layernorm.weight", [hd], NORM_NOISE, 1.0))
                t.append((p + "self_attn.k_layernorm.weight", [hd], NORM_NOISE, 1.0))
            else:
                raise SystemExit("unknown layer type %r" % ty)
    elif arch == "llama":
        F = c["intermediate_size"]
        ab = bool(c.get("attention_bias", False))
        mb = bool(c.get("mlp_bias", False))
        t.append(("model.norm.weight", [D]) + final[1:])
        for i in range(c["num_hidden_layers"]):
            p = "model.layers.%d." % i
            t.append((p + "input_layernorm.weight", [D], NORM_NOISE, 1.0))
            t.append((p + "post_attention_layernorm.weight", [D], NORM_NOISE, 1.0))
            for nm, o, n_in in (("q_proj", H * hd, D), ("k_proj", Hkv * hd, D), ("v_proj", Hkv * hd, D),
                                ("o_proj", D, H * hd)):
                t.append((p + "self_attn.%s.weight" % nm, [o, n_in], lin_scale(n_in), 0.0))
                if ab:
                    t.append((p + "self_attn.%s.bias" % nm, [o], 0.5, 0.0))
            for nm, o, n_in in (("gate_proj", F, D), ("up_proj", F, D), ("down_proj", D, F)):
                t.append((p + "mlp.%s.weight" % nm, [o, n_in], lin_scale(n_in), 0.0))
                if mb:
                    t.append((p + "mlp.%s.bias" % nm, [o], 0.5, 0.0))
    else:
        raise SystemExit("unknown arch %r" % arch)
    return t


# ----------------------------------------------------------------------------------------------
# writing

CHUNK = 1 << 22  # elements per generated chunk (~40 MB of temporaries)


def gen_chunk(seed, name, scale, offset, i0, n):
    f = uniform_block(stream_key(seed, name), i0, n)
    f *= np.float32(scale)
    if offset:
        f += np.float32(offset)
    return f32_to_bf16_bits(f).astype("<u2").tobytes()


def _job(args):
    path, seed, name, scale, offset, i0, n, off = args
    data = gen_chunk(seed, name, scale, offset, i0, n)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    return len(data)


def write_safetensors(path, tensors, seed, jobs=1):
    tensors = sorted(tensors, key=lambda x: x[0])
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, scale, offset in tensors:
        nb = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    base = 8 + len(hj)
    total = base + off
    with open(path, "wb") as f:
        f.write(len(hj).to_bytes(8, "little"))
        f.write(hj)
        f.truncate(total)
    work = []
    for name, shape, scale, offset in tensors:
        n = int(np.prod(shape))
        d0 = base + header[name]["data_offsets"][0]
        for i0 in range(0, n, CHUNK):
            m = min(CHUNK, n - i0)
            work.append((path, seed, name, scale, offset, i0, m, d0 + 2 * i0))
    if jobs > 1 and len(work) > 1:
        import multiprocessing as mp
        with mp.Pool(jobs) as pool:
            for _ in pool.imap_unordered(_job, work, chunksize=1):
                pass
    else:
        for w in work:
            _job(w)
    return total


def build_config(arch, preset, overrides, vocab):
    if preset is None:
        preset = DEFAULT_PRESET[arch]
    parch, base = PRESETS[preset]
    if arch is not None and arch != parch:
        raise SystemExit("preset %s is arch %s, not %s" % (preset, parch, arch))
    c = json.loads(json.dumps(base))
    for k, v in (overrides or {}).items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    if vocab:
        c["vocab_size"] = vocab
    for k in [k for k, v in c.items() if v is None]:
        del c[k]
    return parch, c


def load_golden(name):
    with open(GOLDEN_CONFIGS) as f:
        g = json.load(f)
    for e in g["models"]:
        if e["name"] == name:
            return e
    raise SystemExit("no golden model named %r in %s" % (name, GOLDEN_CONFIGS))


def generate(out, arch=None, preset=None, overrides=None, seed=0, vocab=None, jobs=1, quiet=False):
    arch, c = build_config(arch, preset, overrides, vocab)
    tensors = tensor_list(arch, c)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    gc = {"_from_model_config": False, "bos_token_id": c.get("bos_token_id"),
          "eos_token_id": c.get("eos_token_id")}
    if c.get("pad_token_id") is not None:
        gc["pad_token_id"] = c["pad_token_id"]
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gc, f, indent=2)
        f.write("\n")
    total = write_safetensors(os.path.join(out, "model.safetensors"), tensors, seed, jobs)
    n_params = sum(int(np.prod(s)) for _, s, _, _ in tensors)
    if not quiet:
        print("wrote %s: arch=%s params=%d bytes=%d" % (out, arch, n_params, total))
    return c, n_params


def prompt_ids(seed, name, case, length, vocab, bos=1, lo=16):
    """Deterministic test prompt: [bos] + ids in [lo, vocab) from splitmix64(seed, name, case, i)."""
    key = stream_key(seed, "prompt:%s:%d" % (name, case))
    ids = [bos]
    for i in range(1, length):
        ids.append(lo + splitmix64_py(key + i * 0x9E3779B97F4A7C15) % (vocab - lo))
    return ids


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 24)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["lfm2", "llama"])
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--golden", help="name of an entry in tools/golden_configs.json (sets preset/config/seed)")
    ap.add_argument("--config", help="JSON object (or path to a JSON file) merged over the preset; null deletes")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--sha256", action="store_true", help="print sha256 of model.safetensors")
    a = ap.parse_args()
    overrides = {}
    preset, seed, arch = a.preset, a.seed, a.arch
    if a.golden:
        e = load_golden(a.golden)
        preset = preset or e.get("preset")
        arch = arch or e.get("arch")
        overrides.update(e.get("config", {}))
        if seed is None:
            seed = e["seed"]
    if a.config:
        s = a.config
        if not s.lstrip().startswith("{"):
            with open(s) as f:
                s = f.read()
        overrides.update(json.loads(s))
    if arch is None and preset is None:
        arch = "lfm2"
    generate(a.out, arch, preset, overrides, seed if seed is not None else 0, a.vocab, a.jobs)
    if a.sha256:
        print("sha256 %s" % sha256_file(os.path.join(a.out, "model.safetensors")))


if __name__ == "__main__":
    main()
