// llama.cpp side of lfmd's comparison harness, driven through node-llama-cpp 3.21.1 (prebuilt
// CPU binaries; `npm install` in this directory once, no network needed afterwards).
//
//   node run.mjs bench  MODEL.gguf [--threads N] [--pp 512] [--tg 128] [--reps 3] [--no-mmap]
//       prints one JSON line: load_ms, pp_tok_s / tg_tok_s (median of reps after one warm-up,
//       every rep listed),
//       peak_rss_mib (VmHWM of this process, node itself included)
//   node run.mjs greedy MODEL.gguf --prompt-ids 1,2,3 [--n 32] [--threads N] [--probs FILE]
//                       [--logits FILE]
//       prints the greedy continuation ids (ignores EOS: generation never stops early) as
//       "ids: a,b,c"; --probs writes the next-token probabilities at the last prompt position
//       (f32 little-endian, n_vocab values, temperature 1, no truncation) for accuracy checks;
//       --logits FILE writes the logits up to one additive constant (f32, n_vocab values; see
//       below).
// SPDX-License-Identifier: MIT
import fs from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function arg(name, def) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const flag = (name) => process.argv.includes(name);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

function peakRssMiB() {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
}

// Deterministic pseudo-random prompt ids in [16, vocab) (same recipe as lfmd bench's default
// is not required: the speed of a forward pass does not depend on the ids).
function promptIds(n, vocab) {
    const ids = [];
    let x = 12345;
    for (let i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        ids.push(16 + (x % (vocab - 16)));
    }
    ids[0] = 1;
    return ids;
}

const cmd = process.argv[2];
const modelPath = process.argv[3];
if (!cmd || !modelPath || !["bench", "greedy"].includes(cmd)) {
    console.error("usage: node run.mjs bench|greedy MODEL.gguf [options] (see the header of run.mjs)");
    process.exit(2);
}
const threads = Number(arg("--threads", "2"));

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error,
                              maxThreads: threads});
const t0 = performance.now();
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: !flag("--no-mmap")});
const loadMs = performance.now() - t0;
const embd = model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight");
const vocab = embd ? Number(embd.dimensions[1]) : 32000;

if (cmd === "bench") {
    const pp = Number(arg("--pp", "512")), tg = Number(arg("--tg", "128")), reps = Number(arg("--reps", "3"));
    const ctx = await model.createContext({contextSize: pp + tg + 16, batchSize: Math.max(pp, 1),
                                           threads: {ideal: threads, min: threads}, sequences: 1,
                                           flashAttention: false});
    const seq = ctx.getSequence();
    const ids = promptIds(pp, vocab);
    const ppRates = [], tgRates = [];
    for (let r = -1; r < reps; r++) { // r = -1: warm-up (page faults, thread start), not recorded
        await seq.clearHistory();
        let t = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(ids);
        const ppRate = pp / ((performance.now() - t) / 1000);
        // decode: tg tokens one at a time (greedy; EOS ignored since we feed tokens ourselves)
        t = performance.now();
        let n = 0;
        let next = 2;
        for (let i = 0; i < tg; i++) {
            const out = await seq.controlledEvaluate([[next, {generateNext: {token: true, options: {temperature: 0}}}]]);
            next = out[0]?.next?.token ?? 2;
            n++;
        }
        if (r >= 0) {
            ppRates.push(ppRate);
            tgRates.push(n / ((performance.now() - t) / 1000));
        }
    }
    console.log(JSON.stringify({engine: "llama.cpp (node-llama-cpp 3.21.1)", model: modelPath, threads,
                                pp, tg, reps, load_ms: Math.round(loadMs), pp_tok_s: median(ppRates),
                                tg_tok_s: median(tgRates), pp_all: ppRates, tg_all: tgRates,
                                peak_rss_mib: Math.round(peakRssMiB()), mmap: !flag("--no-mmap")}));
} else {
    const prompt = arg("--prompt-ids", "1").split(",").map(Number);
    const n = Number(arg("--n", "32"));
    const probsPath = arg("--probs", null);
    // node-llama-cpp exposes no raw logits, only the distribution it computes from them in float
    // (exp(l - max) / sum). For --logits the distribution is taken at temperature 8: llama.cpp
    // divides the logits by 8 exactly (a power of two) and nothing underflows, so 8 * ln p equals
    // logit - (one constant for all tokens), to about 1e-6. Log-softmax of it is the log-softmax of
    // the logits.
    const logitsPath = arg("--logits", null);
    const distTemp = logitsPath ? 8 : 1;
    const ctx = await model.createContext({contextSize: prompt.length + n + 16, threads: {ideal: threads, min: threads},
                                           sequences: 1, flashAttention: false});
    const seq = ctx.getSequence();
    const items = prompt.map((t, i) => i === prompt.length - 1
        ? [t, {generateNext: {token: true, probabilities: !!(probsPath || logitsPath), options: (probsPath || logitsPath) ? {temperature: distTemp, topK: 0, topP: 1, minP: 0} : {temperature: 0}}}]
        : t);
    // With temperature 1 the sampled token is random: take the argmax of the probabilities instead.
    const out = await seq.controlledEvaluate(items);
    const last = out[prompt.length - 1];
    let next = last.next.token;
    if (probsPath || logitsPath) {
        const p = new Float32Array(vocab);
        let best = -1;
        for (const [tok, pr] of last.next.probabilities) {
            p[tok] = pr;
            if (best < 0 || pr > p[best]) best = tok;
        }
        next = best;
        if (logitsPath) {
            const lg = p.map((x) => distTemp * Math.log(x));
            fs.writeFileSync(logitsPath, Buffer.from(lg.buffer));
            if (probsPath) { // temperature-1 distribution from the logits (float64 softmax)
                const m = lg[best];
                let sum = 0;
                for (const x of lg) sum += Math.exp(x - m);
                for (let i = 0; i < vocab; i++) p[i] = Math.exp(lg[i] - m) / sum;
            }
        }
        if (probsPath) fs.writeFileSync(probsPath, Buffer.from(p.buffer));
    }
    const gen = [next];
    while (gen.length < n) {
        const o = await seq.controlledEvaluate([[gen[gen.length - 1], {generateNext: {token: true, options: {temperature: 0}}}]]);
        gen.push(o[0].next.token);
    }
    console.log("ids: " + gen.join(","));
}
await model.dispose();
await llama.dispose();
