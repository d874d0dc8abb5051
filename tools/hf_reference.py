#!/usr/bin/env python3
"""Golden reference outputs from Hugging Face transformers for the models in tools/golden_configs.json.

Two steps:
  1. (any machine, numpy only)  write the tiny committed models:
        /usr/bin/python3 tools/hf_reference.py --prepare
     -> tests/golden/data/NAME/{config.json,generation_config.json,model.safetensors} for entries with
        commit_weights=true.
  2. (GPU machine, torch + transformers)  compute references:
        python3 tools/hf_reference.py --out OUTDIR [--work /tmp/golden_models] [--jobs 16] [--only a,b]
     For commit_weights=false entries the model is generated into WORK/NAME with gen_model.py first.
     Writes OUTDIR/NAME/reference.json, OUTDIR/NAME/caseK.f32 and OUTDIR/summary.json.

What is computed (fp32 weights = the bf16 file values upcast; attn_implementation="eager"; TF32 off):
  - logits of the last prompt position from one full forward over the prompt (caseK.f32)
  - greedy: 32 tokens by exact greedy decoding, each step a full uncached forward over prompt+generated
    (argmax; lowest id on ties, torch.argmax semantics); also HF generate(do_sample=False, 32 tokens, no
    EOS stop) as greedy_hf_generate, and whether the two agree
  - checks: loaded parameters equal the file's values, incremental decoding (token by token, and prefill
    half + decode the rest) agrees with the full forward, the rotary inv_freq HF uses.
See docs/GOLDEN.md.
"""
import argparse
import json
import math
import os
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_model  # noqa: E402

DATA = os.path.join(ROOT, "tests", "golden", "data")
N_GREEDY = 32


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


def load_spec(path):
    with open(path) as f:
        return json.load(f)["models"]


def gen_command(e):
    return "tools/gen_model.py --golden %s --out DIR" % e["name"]


def prepare(spec, only):
    for e in spec:
        if only and e["name"] not in only:
            continue
        if not e.get("commit_weights"):
            continue
        out = os.path.join(DATA, e["name"])
        gen_model.generate(out, e["arch"], e["preset"], e.get("config", {}), e["seed"])
        log(e["name"], "sha256", gen_model.sha256_file(os.path.join(out, "model.safetensors")))


def expected_inv_freq(c, arch):
    D, H = c["hidden_size"], c["num_attention_heads"]
    hd = c.get("head_dim") or D // H
    theta = float(gen_model.rope_theta_of(c))
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))
    rs = c.get("rope_scaling") if arch == "llama" else None
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        inv_l = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        med = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(med, smoothed, inv_l)
    return inv.astype(np.float64)


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def derive_shapes(model, arch, derived):
    if arch == "lfm2":
        derived["layer_types"] = list(model.config.layer_types)
        derived["ffn_dim"] = int(model.model.layers[0].feed_forward.w1.weight.shape[0])
        for lyr in model.model.layers:
            if hasattr(lyr, "self_attn"):
                derived["head_dim"] = int(lyr.self_attn.head_dim)
                break
        try:
            mod = sys.modules[type(model.model.layers[0]).__module__]
            derived["lfm2_conv_fast_path"] = bool(getattr(mod, "is_fast_path_available", False))
        except Exception:
            pass
    else:
        derived["ffn_dim"] = int(model.model.layers[0].mlp.gate_proj.weight.shape[0])
        derived["head_dim"] = int(model.model.layers[0].self_attn.head_dim)


def run_model(e, model_dir, outdir, device, torch, transformers, deadline, sha):
    from transformers import AutoModelForCausalLM
    res = {"name": e["name"], "ok": False, "problems": []}
    t_start = time.time()
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    arch = e["arch"]
    V = cfg["vocab_size"]
    model = info = None
    errs = []
    for kw in (dict(dtype=torch.float32, output_loading_info=True),
               dict(torch_dtype=torch.float32, output_loading_info=True),
               dict(dtype=torch.float32)):
        try:
            r = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", **kw)
            model, info = r if isinstance(r, tuple) else (r, {})
            break
        except Exception as ex:
            errs.append(repr(ex)[:300])
    if model is None:
        raise RuntimeError("from_pretrained failed: %s" % errs)
    if errs:
        res["problems"].append("from_pretrained fallbacks: %s" % errs)
    if next(model.parameters()).dtype != torch.float32:
        res["problems"].append("model dtype is %s" % next(model.parameters()).dtype)
    model.to(device).eval()
    info = {k: sorted(str(x) for x in v) for k, v in info.items() if isinstance(v, (list, set, tuple))}
    res["loading_info"] = info
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(k):
            res["problems"].append("%s: %s" % (k, info[k][:10]))
    log(e["name"], "loaded", type(model).__name__, "params", sum(p.numel() for p in model.parameters()))

    # ---- parameters == file values (bf16 -> fp32), tie check
    from safetensors.torch import load_file
    sd_file = load_file(os.path.join(model_dir, "model.safetensors"), device=str(device))
    sd_model = model.state_dict()
    n_bad = 0
    for name, t in sd_file.items():
        if name not in sd_model:
            res["problems"].append("file tensor not in model: " + name)
            n_bad += 1
            continue
        m = sd_model[name]
        if tuple(m.shape) != tuple(t.shape) or not torch.equal(m.float(), t.float()):
            res["problems"].append("param differs from file: " + name)
            n_bad += 1
    is_tied = gen_model.tied(cfg)
    lm = model.get_output_embeddings().weight
    emb = model.get_input_embeddings().weight
    if is_tied and not torch.equal(lm, emb):
        res["problems"].append("tied config but lm_head != embed_tokens")
    if not is_tied and torch.equal(lm, emb):
        res["problems"].append("untied config but lm_head == embed_tokens")
    res["params_match_file"] = n_bad == 0
    del sd_file

    # ---- derived shapes and rope
    derived = {"model_class": type(model).__name__, "tied": bool(is_tied)}
    try:
        derive_shapes(model, arch, derived)
    except Exception as ex:
        res["problems"].append("could not read derived shapes: %r" % ex)
    inv = {}
    for bn, b in model.named_buffers():
        if "inv_freq" in bn and "original" not in bn:
            inv[bn] = [float(x) for x in b.detach().float().cpu().numpy()]
    derived["inv_freq"] = inv
    exp = expected_inv_freq(cfg, arch)
    if inv:
        first = np.array(next(iter(inv.values())))
        if first.shape != exp.shape:
            res["problems"].append("inv_freq shape %s != expected %s" % (first.shape, exp.shape))
        else:
            d = float(np.max(np.abs(first - exp) / exp))
            derived["inv_freq_max_rel_diff_vs_expected"] = d
            if d > 1e-5:
                res["problems"].append("inv_freq differs from expected theta/scaling (max rel %g)" % d)
    else:
        res["problems"].append("no inv_freq buffer found")
    res["derived"] = derived

    def full_logits(ids):
        x = torch.tensor([ids], dtype=torch.long, device=device)
        out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False)
        return out.logits[0].float()

    def incremental_last(ids, k):
        """prefill ids[:k] then feed ids[k:] one at a time with the cache; return last logits."""
        x = torch.tensor([ids[:k]], dtype=torch.long, device=device)
        out = model(input_ids=x, use_cache=True)
        pkv = out.past_key_values
        last = out.logits[0, -1]
        for t in ids[k:]:
            out = model(input_ids=torch.tensor([[t]], dtype=torch.long, device=device),
                        past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            last = out.logits[0, -1]
        return last.float().cpu().numpy()

    cases = []
    seed = e["seed"]
    bos = cfg.get("bos_token_id", 1)
    if not isinstance(bos, int) or bos >= V:
        bos = 1
    for ci, n in enumerate(e["prompt_lengths"]):
        ids = gen_model.prompt_ids(seed, e["name"], ci, n, V, bos=bos)
        case = {"prompt_ids": ids, "logits": "case%d.f32" % ci}
        with torch.no_grad():
            lg = full_logits(ids)[-1].cpu().numpy().astype("<f4")
        lg.tofile(os.path.join(outdir, case["logits"]))
        order = np.argsort(-lg.astype(np.float64), kind="stable")
        case["logits_argmax"] = int(order[0])
        case["logits_top2_margin"] = float(lg[order[0]] - lg[order[1]])
        case["logits_std"] = float(lg.std())
        # exact greedy by full recompute
        seq = list(ids)
        margins = []
        with torch.no_grad():
            for s in range(N_GREEDY):
                l = full_logits(seq)[-1]
                top = torch.topk(l, 2)
                tok = int(torch.argmax(l).item())
                margins.append(float(top.values[0] - top.values[1]))
                seq.append(tok)
        greedy = seq[len(ids):]
        case["greedy"] = greedy
        case["greedy_min_margin"] = min(margins)
        # HF generate
        try:
            with torch.no_grad():
                x = torch.tensor([ids], dtype=torch.long, device=device)
                model.generation_config.eos_token_id = None
                pad = cfg.get("pad_token_id", 0) or 0
                g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, num_beams=1,
                                   max_new_tokens=N_GREEDY, eos_token_id=None, pad_token_id=pad)
            gg = [int(t) for t in g[0, len(ids):].tolist()]
            case["greedy_hf_generate"] = gg
            case["greedy_matches_hf_generate"] = gg == greedy
            if gg != greedy:
                fd = next((i for i in range(min(len(gg), len(greedy))) if gg[i] != greedy[i]), None)
                case["hf_generate_first_diff"] = fd
                res["problems"].append("case %d: generate differs from uncached greedy at step %s" % (ci, fd))
        except Exception as ex:  # keep going; record
            case["greedy_hf_generate_error"] = repr(ex)[:500]
            res["problems"].append("case %d: generate failed: %r" % (ci, ex))
        # incremental vs full
        if time.time() < deadline:
            with torch.no_grad():
                if n >= 2 and n <= 64:
                    inc = incremental_last(ids, 1)
                    case["rel_l2_token_by_token_vs_full"] = rel_l2(inc, lg)
                if n >= 3:
                    k = max(2, n // 2)
                    inc = incremental_last(ids, k)
                    case["rel_l2_prefill%d_then_decode_vs_full" % k] = rel_l2(inc, lg)
        cases.append(case)
        log(e["name"], "case", ci, "n", n, "argmax", case["logits_argmax"], "margin %.3g" % case["greedy_min_margin"],
            "gen==greedy", case.get("greedy_matches_hf_generate"),
            {k: "%.2e" % v for k, v in case.items() if k.startswith("rel_l2")})
    ref = {
        "format": 1,
        "name": e["name"],
        "arch": arch,
        "model": {
            "committed": bool(e.get("commit_weights")),
            "gen_command": gen_command(e),
            "preset": e["preset"],
            "seed": e["seed"],
            "config_overrides": e.get("config", {}),
            "safetensors_sha256": sha,
            "config": cfg,
            "note": e.get("note", ""),
        },
        "hf": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "dtype": "float32 (bf16 weights upcast)",
            "attn_implementation": "eager",
            "tf32": False,
            "derived": derived,
        },
        "vocab_size": V,
        "n_greedy": N_GREEDY,
        "cases": cases,
        "problems": res["problems"],
    }
    with open(os.path.join(outdir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    res["ok"] = True
    res["seconds"] = round(time.time() - t_start, 1)
    res["cases"] = [{k: v for k, v in c.items() if k not in ("prompt_ids", "greedy", "greedy_hf_generate")}
                    for c in cases]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=os.path.join(HERE, "golden_configs.json"))
    ap.add_argument("--prepare", action="store_true", help="write the committed tiny models (numpy only)")
    ap.add_argument("--out", help="output folder for references")
    ap.add_argument("--work", default="/tmp/golden_models", help="where non-committed models are generated")
    ap.add_argument("--jobs", type=int, default=max(1, min(16, os.cpu_count() or 1)))
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--device", default=None)
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="after this many seconds the optional incremental checks are skipped")
    a = ap.parse_args()
    spec = load_spec(a.spec)
    only = set(a.only.split(",")) if a.only else None
    if a.prepare:
        prepare(spec, only)
        return 0
    if not a.out:
        ap.error("--out is required (or --prepare)")

    # phase 1 (numpy only, before torch/CUDA exist in this process): generate every model
    todo = []
    for e in spec:
        if only and e["name"] not in only:
            continue
        name = e["name"]
        regen = os.path.join(a.work, name)
        t = time.time()
        gen_model.generate(regen, e["arch"], e["preset"], e.get("config", {}), e["seed"], jobs=a.jobs, quiet=True)
        sha = gen_model.sha256_file(os.path.join(regen, "model.safetensors"))
        log(name, "generated in %.1fs sha256 %s" % (time.time() - t, sha))
        regen_ok = None
        model_dir = regen
        if e.get("commit_weights"):
            model_dir = os.path.join(DATA, name)
            sha_c = gen_model.sha256_file(os.path.join(model_dir, "model.safetensors"))
            same_cfg = (json.load(open(os.path.join(model_dir, "config.json"))) ==
                        json.load(open(os.path.join(regen, "config.json"))))
            regen_ok = (sha_c == sha) and same_cfg
            log(name, "committed model == regenerated here:", regen_ok)
        todo.append((e, model_dir, sha, regen_ok))

    # phase 2: transformers
    import torch
    import transformers
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    except Exception as ex:
        log("tf32 settings:", ex)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    log("torch", torch.__version__, "transformers", transformers.__version__, "numpy", np.__version__, "device", device,
        torch.cuda.get_device_name(0) if device.type == "cuda" else "")
    deadline = T0 + a.budget_s
    os.makedirs(a.out, exist_ok=True)
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__,
               "models": []}
    for e, model_dir, sha, regen_ok in todo:
        name = e["name"]
        try:
            od = os.path.join(a.out, name)
            os.makedirs(od, exist_ok=True)
            r = run_model(e, model_dir, od, device, torch, transformers, deadline, sha)
            r["regenerated_matches_committed"] = regen_ok
            r["sha256"] = sha
            if regen_ok is False:
                r["problems"].append("regenerated model differs from committed one")
            summary["models"].append(r)
        except Exception as ex:
            traceback.print_exc()
            summary["models"].append({"name": name, "ok": False, "error": repr(ex)[:2000],
                                      "traceback": traceback.format_exc()[-4000:]})
        if not e.get("commit_weights"):
            import shutil
            shutil.rmtree(os.path.join(a.work, name), ignore_errors=True)
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    log("done", sum(1 for m in summary["models"] if m.get("ok")), "of", len(summary["models"]), "ok")
    for m in summary["models"]:
        log("SUMMARY", m["name"], "ok" if m.get("ok") else "FAILED", m.get("problems") or m.get("error", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
