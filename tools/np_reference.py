#!/usr/bin/python3
"""Independent numpy (float64) forward pass for the golden LFM2 / Llama models, used to cross-check the
transformers references (and the generator's scales) without torch.

  /usr/bin/python3 tools/np_reference.py tests/golden/data/NAME [--greedy] [--cases 0,1]
      compares last-position logits (and with --greedy the 32 greedy tokens) with NAME/reference.json
  /usr/bin/python3 tools/np_reference.py DIR --stats
      prints logit statistics for a few prompts (no reference needed)

Implements lfm2-spec.md §2 (LFM2) and the Hugging Face Llama forward (split-half RoPE, optional
attention/MLP bias, llama3 rope scaling). Full recompute, no cache: slow but simple; tiny models only.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    hdr = json.loads(buf[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = np.frombuffer(buf, dtype="<u2", count=(b - a) // 2, offset=base + a)
        assert v["dtype"] == "BF16"
        f = (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
        out[k] = f.reshape(v["shape"]).astype(np.float64)
    return out


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(x):
    return x / (1.0 + np.exp(-x))


def inv_freq(c, arch, hd):
    theta = float(gen_model.rope_theta_of(c))
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = c.get("rope_scaling") if arch == "llama" else None
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        inv_l = np.where(wl > old / lo, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        med = ~(wl < old / hi) & ~(wl > old / lo)
        inv = np.where(med, smoothed, inv_l)
    return inv


def rope(x, pos, inv):  # x [T, nh, hd], split-half
    ang = pos[:, None] * inv[None, :]  # [T, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention(q, k, v, H, Hkv, hd):  # q [T,H,hd], k/v [T,Hkv,hd]
    T = q.shape[0]
    rep = H // Hkv
    out = np.empty((T, H, hd))
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for h in range(H):
        g = h // rep
        s = q[:, h, :] @ k[:, g, :].T / math.sqrt(hd) + mask
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, g, :]
    return out.reshape(T, H * hd)


class Model:
    def __init__(self, d):
        self.c = json.load(open(os.path.join(d, "config.json")))
        self.arch = "lfm2" if self.c["model_type"] == "lfm2" else "llama"
        self.w = read_safetensors(os.path.join(d, "model.safetensors"))
        c = self.c
        self.D, self.H = c["hidden_size"], c["num_attention_heads"]
        self.Hkv = c.get("num_key_value_heads") or self.H
        self.hd = c.get("head_dim") or self.D // self.H
        self.inv = inv_freq(c, self.arch, self.hd)
        self.lm = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"]) if not gen_model.tied(c) \
            else self.w["model.embed_tokens.weight"]

    def logits(self, ids):
        w, c = self.w, self.c
        x = w["model.embed_tokens.weight"][np.array(ids)]
        T = len(ids)
        pos = np.arange(T, dtype=np.float64)
        H, Hkv, hd = self.H, self.Hkv, self.hd
        if self.arch == "lfm2":
            eps = c.get("norm_eps", 1e-5)
            for i, ty in enumerate(gen_model.lfm2_layer_types(c)):
                p = "model.layers.%d." % i
                a = rmsnorm(x, w[p + "operator_norm.weight"], eps)
                if ty == "conv":
                    z = a @ w[p + "conv.in_proj.weight"].T
                    D = self.D
                    B, C, xx = z[:, :D], z[:, D:2 * D], z[:, 2 * D:]
                    bx = B * xx
                    wc = w[p + "conv.conv.weight"][:, 0, :]  # [D, L]
                    L = wc.shape[1]
                    pad = np.concatenate([np.zeros((L - 1, D)), bx], axis=0)
                    cc = sum(wc[:, j][None, :] * pad[j:j + T] for j in range(L))
                    u = (C * cc) @ w[p + "conv.out_proj.weight"].T
                else:
                    q = (a @ w[p + "self_attn.q_proj.weight"].T).reshape(T, H, hd)
                    k = (a @ w[p + "self_attn.k_proj.weight"].T).reshape(T, Hkv, hd)
                    v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(T, Hkv, hd)
                    q = rmsnorm(q, w[p + "self_attn.q_layernorm.weight"], eps)
                    k = rmsnorm(k, w[p + "self_attn.k_layernorm.weight"], eps)
                    q, k = rope(q, pos, self.inv), rope(k, pos, self.inv)
                    u = attention(q, k, v, H, Hkv, hd) @ w[p + "self_attn.out_proj.weight"].T
                x = x + u
                f = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
                x = x + (silu(f @ w[p + "feed_forward.w1.weight"].T) * (f @ w[p + "feed_forward.w3.weight"].T)) \
                    @ w[p + "feed_forward.w2.weight"].T
            x = rmsnorm(x, w["model.embedding_norm.weight"], eps)
        else:
            eps = c.get("rms_norm_eps", 1e-6)

            def lin(t, name):
                y = t @ w[name + ".weight"].T
                if name + ".bias" in w:
                    y = y + w[name + ".bias"]
                return y
            for i in range(c["num_hidden_layers"]):
                p = "model.layers.%d." % i
                a = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
                q = lin(a, p + "self_attn.q_proj").reshape(T, H, hd)
                k = lin(a, p + "self_attn.k_proj").reshape(T, Hkv, hd)
                v = lin(a, p + "self_attn.v_proj").reshape(T, Hkv, hd)
                q, k = rope(q, pos, self.inv), rope(k, pos, self.inv)
                x = x + lin(attention(q, k, v, H, Hkv, hd), p + "self_attn.o_proj")
                f = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
                x = x + lin(silu(lin(f, p + "mlp.gate_proj")) * lin(f, p + "mlp.up_proj"), p + "mlp.down_proj")
            x = rmsnorm(x, w["model.norm.weight"], eps)
        return x[-1] @ self.lm.T

    def greedy(self, ids, n):
        seq = list(ids)
        margins = []
        for _ in range(n):
            lg = self.logits(seq)
            o = np.argsort(-lg, kind="stable")
            margins.append(lg[o[0]] - lg[o[1]])
            seq.append(int(o[0]))
        return seq[len(ids):], min(margins)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--cases")
    ap.add_argument("--stats", action="store_true")
    a = ap.parse_args()
    m = Model(a.dir)
    V = m.c["vocab_size"]
    if a.stats:
        for ci, n in enumerate([1, 7, 64]):
            ids = gen_model.prompt_ids(0, "stats", ci, n, V)
            lg = m.logits(ids)
            o = np.argsort(-lg)
            g, mm = m.greedy(ids, 8)
            print("n=%d std=%.2f top2 margin=%.3f greedy8=%s min margin %.3f" % (n, lg.std(), lg[o[0]] - lg[o[1]], g, mm))
        return 0
    ref = json.load(open(os.path.join(a.dir, "reference.json")))
    worst = 0.0
    ok = True
    for ci, case in enumerate(ref["cases"]):
        if a.cases and str(ci) not in a.cases.split(","):
            continue
        ids = case["prompt_ids"]
        hf = np.fromfile(os.path.join(a.dir, case["logits"]), dtype="<f4").astype(np.float64)
        lg = m.logits(ids)
        r = float(np.linalg.norm(lg - hf) / np.linalg.norm(hf))
        worst = max(worst, r)
        line = "case %d n=%d rel_l2(numpy f64 vs HF) = %.3e" % (ci, len(ids), r)
        if a.greedy:
            g, mm = m.greedy(ids, len(case["greedy"]))
            same = g == case["greedy"]
            ok &= same
            line += " greedy %s (min margin %.3g)" % ("SAME" if same else "DIFFERENT", mm)
        print(line)
    ok &= worst < 1e-4
    print("%s: worst rel_l2 %.3e -> %s" % (ref["name"], worst, "OK" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
