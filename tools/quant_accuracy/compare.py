#!/usr/bin/env python3
# Accuracy of quantized weights: compares next-token logits from lfmd and llama.cpp with the
# transformers fp32 reference (bf16 weights) and prints a markdown table. Used by
# tools/quant_accuracy.sh; numpy only. Invariant: every number printed is computed here from the
# files named on the command line; nothing is hard-coded.
# SPDX-License-Identifier: MIT
"""usage: compare.py --cases CASES.json --run LABEL=PATTERN [--run ...] [--pair A:B:C ...]
                  [--exact LABEL=PATTERN ...] [--json OUT]

CASES.json: [{"name": "case0", "n": 7, "ref": "/path/case0.f32"}, ...] (V little-endian float32).
--run LABEL=PATTERN: PATTERN has "{case}" replaced by a case name; the file holds V float32 logits
  (raw, or shifted by one constant per file, as llama.cpp's runner writes them).
--pair "TYPE:LFMD_LABEL:LLAMA_LABEL": one verdict line per pair (lfmd vs llama.cpp, same weights).
--exact LABEL=PATTERN: the exact logits of the weights that run LABEL used (tools/quant_accuracy/
  exact.py); adds a table of each engine's own arithmetic error.

Metrics per run and case (r = reference logits, x = run's logits, float64):
  lp_rel   ||logsoftmax(x) - logsoftmax(r)|| / ||logsoftmax(r)||   (log-probabilities)
  c_rel    ||(x - mean x) - (r - mean r)|| / ||r - mean r||         (logits up to a constant)
  kl       KL(softmax(r) || softmax(x)) in nats
  top1     argmax x == argmax r
"""
import argparse
import json
import sys

import numpy as np


def logsoftmax(x):
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def metrics(x, r):
    lr, lx = logsoftmax(r), logsoftmax(x)
    cr, cx = r - r.mean(), x - x.mean()
    return {"lp_rel": float(np.linalg.norm(lx - lr) / np.linalg.norm(lr)),
            "c_rel": float(np.linalg.norm(cx - cr) / np.linalg.norm(cr)),
            "kl": float((np.exp(lr) * (lr - lx)).sum()),
            "top1": bool(int(np.argmax(x)) == int(np.argmax(r)))}


def load(path, n_vocab):
    x = np.fromfile(path, dtype="<f4")
    if x.size != n_vocab:
        raise SystemExit("%s: %d values, expected %d" % (path, x.size, n_vocab))
    if not np.all(np.isfinite(x)):
        raise SystemExit("%s: %d non-finite values" % (path, int((~np.isfinite(x)).sum())))
    return x.astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--pair", action="append", default=[])
    ap.add_argument("--exact", action="append", default=[],
                    help="LABEL=PATTERN: exact (float64) logits of the weights run LABEL used")
    ap.add_argument("--json", help="also write all numbers here")
    a = ap.parse_args()
    cases = json.load(open(a.cases))
    refs = {}
    for c in cases:
        r = np.fromfile(c["ref"], dtype="<f4").astype(np.float64)
        refs[c["name"]] = r
    n_vocab = len(next(iter(refs.values())))
    runs = []
    for spec in a.run:
        label, pattern = spec.split("=", 1)
        per = {c["name"]: metrics(load(pattern.replace("{case}", c["name"]), n_vocab),
                                  refs[c["name"]]) for c in cases}
        runs.append((label, per))

    names = [c["name"] for c in cases]
    hdr = ("| engine / weights | " + " | ".join("%s (n=%d)" % (c["name"], c["n"]) for c in cases) +
           " | mean | logits rel L2, mean | KL mean (nats) | top-1 |")
    print("Relative L2 error of log-probabilities vs transformers (bf16 weights, fp32 compute):\n")
    print(hdr)
    print("|" + "---|" * (len(cases) + 5))
    summary = {}
    for label, per in runs:
        lp = [per[n]["lp_rel"] for n in names]
        cr = [per[n]["c_rel"] for n in names]
        kl = [per[n]["kl"] for n in names]
        t1 = sum(per[n]["top1"] for n in names)
        summary[label] = {"lp_rel_mean": float(np.mean(lp)), "c_rel_mean": float(np.mean(cr)),
                          "kl_mean": float(np.mean(kl)), "top1": t1, "cases": per}
        print("| %s | %s | **%.2e** | %.2e | %.1e | %d/%d |" % (
            label, " | ".join("%.2e" % v for v in lp), np.mean(lp), np.mean(cr), np.mean(kl),
            t1, len(names)))
    print()
    if a.exact:
        print("Engine arithmetic alone: the same metrics against the exact (float64) logits of the "
              "same quantized weights:\n")
        print(hdr.replace("| top-1 |", "| top-1 same as exact |"))
        print("|" + "---|" * (len(cases) + 5))
    for spec in a.exact:
        label, pattern = spec.split("=", 1)
        runf = dict(r.split("=", 1) for r in a.run)[label]
        per = {n: metrics(load(runf.replace("{case}", n), n_vocab),
                          load(pattern.replace("{case}", n), n_vocab)) for n in names}
        lp = [per[n]["lp_rel"] for n in names]
        summary[label]["vs_exact"] = per
        print("| %s | %s | **%.2e** | %.2e | %.1e | %d/%d |" % (
            label, " | ".join("%.2e" % v for v in lp), np.mean(lp),
            np.mean([per[n]["c_rel"] for n in names]), np.mean([per[n]["kl"] for n in names]),
            sum(per[n]["top1"] for n in names), len(names)))
    if a.exact:
        print()
    ok_all = True
    for p in a.pair:
        typ, lf, ll = p.split(":")
        if lf not in summary or ll not in summary:
            raise SystemExit("--pair %s: unknown label" % p)
        x, y = summary[lf]["lp_rel_mean"], summary[ll]["lp_rel_mean"]
        # "as close": lfmd's mean error at most 5% above llama.cpp's on the same weights.
        ok = x <= 1.05 * y
        ok_all &= ok
        print("- %s: lfmd (%s) %.3e vs llama.cpp (%s) %.3e, ratio %.3f: %s" % (
            typ, lf, x, ll, y, x / y,
            "as close as llama.cpp" if ok else "NOT as close as llama.cpp"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
