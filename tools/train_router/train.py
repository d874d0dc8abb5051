#!/usr/bin/env python3
"""Train lfmd's embedded default model: a small LFM2 (Lfm2ForCausalLM) router/chat model.

Runs on one GPU (PyTorch 2.11, transformers 5.x, tokenizers 0.23) in about 5 minutes:
    PYTHONUNBUFFERED=1 python3 tools/train_router/train.py --out /tmp/router
It
  1. generates its own training data (tools/train_router/data.py), deterministic from --seed;
  2. trains a byte-level BPE tokenizer with HF `tokenizers` (LFM2 special-token layout, Llama-3 split regex);
  3. trains a small Lfm2ForCausalLM from scratch (conv/attention hybrid, tied embeddings);
  4. exports it in HF layout (bf16 model.safetensors, config.json, generation_config.json,
     tokenizer.json, tokenizer_config.json with the LFM2 chat template);
  5. reloads the export in fp32 (eager attention, TF32 off, CPU) and reports routing accuracy on the
     hand-written held-out set (tools/train_router/heldout.py), sample chat answers, and greedy
     reference outputs for 10 fixed prompts (greedy_ref.jsonl).
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
from heldout import HELDOUT  # noqa: E402

SPECIALS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>",
            "<|im_start|>", "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>",
            "<|tool_call_end|>", "<|tool_response_start|>", "<|tool_response_end|>"]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 7
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# LFM2 chat template (lfm2-spec.md §5.4)
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- set ns = namespace(system_prompt='') -%}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set ns.system_prompt = messages[0]['content'] -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{%- set ns.system_prompt = ns.system_prompt + ('\\n' if ns.system_prompt else '') + 'List of tools: <|tool_list_start|>[' -%}"
    "{%- for tool in tools -%}"
    "{%- if tool is not string -%}{%- set tool = tool | tojson -%}{%- endif -%}"
    "{%- set ns.system_prompt = ns.system_prompt + tool -%}"
    "{%- if not loop.last -%}{%- set ns.system_prompt = ns.system_prompt + ', ' -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set ns.system_prompt = ns.system_prompt + ']<|tool_list_end|>' -%}"
    "{%- endif -%}"
    "{%- if ns.system_prompt -%}"
    "{{- '<|im_start|>system\\n' + ns.system_prompt + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- set content = message['content'] -%}"
    "{%- if content is not string -%}{%- set content = content | tojson -%}{%- endif -%}"
    "{%- if message['role'] == 'tool' -%}{%- set content = '<|tool_response_start|>' + content + '<|tool_response_end|>' -%}{%- endif -%}"
    "{{- content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# 10 fixed prompts for the greedy reference (system, user)
GREEDY_PROMPTS = [
    ("", "Hello!"),
    ("You are a helpful assistant.", "What is the capital of France?"),
    ("", "What is 12 plus 7?"),
    ("", "Write a short poem about the sea."),
    ("You are a helpful assistant.", "Give me three tips for sleeping better."),
    ("", "Tell me a short story about a brave fox."),
    ("", "Who are you?"),
    (D.DEFAULT_ROUTING_SYSTEM, "Write a Python function that reverses a string."),
    (D.DEFAULT_ROUTING_SYSTEM, "Compare the pros and cons of solar and wind power."),
    ("", "What is photosynthesis?"),
]
SAMPLE_CHAT = [
    ("", "Hi there!"), ("", "How are you?"), ("", "What can you do?"), ("", "Tell me a joke."),
    ("You are a helpful assistant.", "What is the capital of Japan?"), ("", "What is 8 times 7?"),
    ("", "What is a volcano?"), ("", "Write a slogan for a coffee shop."), ("", "Name three fruits."),
    ("", "What sound does a cow make?"), ("", "Thanks, bye!"), ("", "What does the math route handle?"),
]


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


# ---------------------------------------------------------------------------
def train_tokenizer(examples, vocab_size, outdir):
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers
    try:
        bpe = models.BPE(ignore_merges=True)
    except TypeError:
        bpe = models.BPE()
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def corpus():
        yield from ("system", "user", "assistant", "\n")
        for e in examples:
            if e["system"]:
                yield e["system"]
            yield e["user"]
            yield e["assistant"]
        for t, _ in HELDOUT[:0]:  # held-out text is never used (kept explicit)
            yield t
    tok.train_from_iterator(corpus(), trainer=trainer, length=len(examples) * 3)
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", pair="<|startoftext|> $A <|startoftext|> $B:1",
        special_tokens=[("<|startoftext|>", BOS_ID)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    path = os.path.join(outdir, "tokenizer.json")
    tok.save(path)
    # make the LFM2 conventions explicit in the file
    tj = json.load(open(path))
    tj["model"]["ignore_merges"] = True
    json.dump(tj, open(path, "w"), ensure_ascii=False, indent=None)
    tok = Tokenizer.from_file(path)
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>",
        "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": 4096, "legacy": False,
        "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for i, s in enumerate(SPECIALS)},
        "chat_template": CHAT_TEMPLATE,
    }
    json.dump(cfg, open(os.path.join(outdir, "tokenizer_config.json"), "w"), indent=2, ensure_ascii=False)
    return tok


# ---------------------------------------------------------------------------
def encode_examples(tok, examples, max_len):
    import numpy as np
    prompts, fulls, userpre = [], [], []
    for e in examples:
        p, f = D.render(e)
        prompts.append(p)
        fulls.append(f)
        userpre.append(p[: p.index("<|im_start|>user\n") + len("<|im_start|>user\n")])
    enc_f = tok.encode_batch(fulls, add_special_tokens=False)
    enc_p = tok.encode_batch(prompts, add_special_tokens=False)
    enc_u = tok.encode_batch(userpre, add_special_tokens=False)
    n = len(examples)
    X = np.zeros((n, max_len), dtype=np.int32)
    W = np.zeros((n, max_len), dtype=np.float32)
    lens = np.zeros(n, dtype=np.int32)
    bad_prefix = dropped = 0
    keep = []
    for i in range(n):
        ids = enc_f[i].ids
        npf, nu = len(enc_p[i].ids), len(enc_u[i].ids)
        if ids[:npf] != enc_p[i].ids:
            bad_prefix += 1
        if len(ids) > max_len:
            dropped += 1
            continue
        L = len(ids)
        X[i, :L] = ids
        W[i, nu:npf] = 0.1      # user text: light LM loss
        # answer + <|im_end|>: full loss; one-word routing/classification answers count double
        W[i, npf:L] = 1.0 if examples[i]["kind"] == "chat" else 2.0
        lens[i] = L
        keep.append(i)
    keep = np.array(keep)
    return X[keep], W[keep], lens[keep], bad_prefix, dropped


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-train", type=int, default=400000)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--attn", default="2,5")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--max-len", type=int, default=224)
    # The committed model used a 5000-step cosine schedule that the first H100 run cut at step 4013 (its
    # 230 s time cap).  --stop-after makes that truncation explicit and deterministic; --time-cap (off by
    # default) is only a safety net and makes the step count depend on the machine.
    ap.add_argument("--stop-after", type=int, default=4013, help="stop after this many steps (0 = run --steps)")
    ap.add_argument("--time-cap", type=float, default=0.0, help="stop training after this many seconds (0 = off)")
    ap.add_argument("--greedy-steps", type=int, default=24)
    args = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers
    import tokenizers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Lfm2Config, Lfm2ForCausalLM

    t_all = time.time()
    outdir = args.out
    mdir = os.path.join(outdir, "lfm2-router")
    os.makedirs(mdir, exist_ok=True)
    log("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__,
        "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    log("args", vars(args))
    results = {"args": vars(args), "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                                "tokenizers": tokenizers.__version__}}

    # 1. data -------------------------------------------------------------
    t0 = time.time()
    examples = D.generate(args.seed, args.n_train)
    log(f"generated {len(examples)} examples in {time.time() - t0:.1f}s")

    # 2. tokenizer --------------------------------------------------------
    t0 = time.time()
    tok = train_tokenizer(examples, args.vocab, mdir)
    V = tok.get_vocab_size()
    log(f"tokenizer: vocab {V} in {time.time() - t0:.1f}s")
    for r in D.ROUTES:
        log(f"  route {r!r} -> ids {tok.encode(r, add_special_tokens=False).ids}")
    results["route_token_ids"] = {r: tok.encode(r, add_special_tokens=False).ids for r in D.ROUTES}
    t0 = time.time()
    X, W, lens, bad_prefix, dropped = encode_examples(tok, examples, args.max_len)
    log(f"encoded {len(X)} sequences in {time.time() - t0:.1f}s; mean len {lens.mean():.1f}, max {lens.max()}, "
        f"prompt-prefix mismatches {bad_prefix}, dropped (too long) {dropped}")
    results["data"] = {"n_examples": len(examples), "n_sequences": int(len(X)), "mean_len": float(lens.mean()),
                       "max_len": int(lens.max()), "prompt_prefix_mismatch": bad_prefix, "dropped": dropped,
                       "tokens": int(lens.sum())}

    # 3. model ------------------------------------------------------------
    torch.manual_seed(args.seed)
    np_rng = np.random.RandomState(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    attn_idx = [int(x) for x in args.attn.split(",")]
    cfg = Lfm2Config(
        vocab_size=V, hidden_size=args.hidden, intermediate_size=args.ff, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, max_position_embeddings=4096,
        norm_eps=1e-5, conv_bias=False, conv_L_cache=3, block_auto_adjust_ff_dim=False,
        layer_types=["full_attention" if i in attn_idx else "conv" for i in range(args.layers)],
        tie_word_embeddings=True, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        initializer_range=0.02, use_cache=True)
    model = Lfm2ForCausalLM(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters; layer_types {cfg.layer_types}")
    results["n_params"] = n_params

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    def lr_at(s):
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        p = min(1.0, (s - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    # length-bucketed batches, deterministic
    def batch_order():
        while True:
            perm = np_rng.permutation(len(X))
            chunk = args.batch * 64
            batches = []
            for c in range(0, len(perm), chunk):
                idx = perm[c:c + chunk]
                idx = idx[np.argsort(lens[idx], kind="stable")]
                for b in range(0, len(idx) - args.batch + 1, args.batch):
                    batches.append(idx[b:b + args.batch])
            for j in np_rng.permutation(len(batches)):
                yield batches[j]

    Xg = torch.from_numpy(X).to(dev)
    Wg = torch.from_numpy(W).to(dev)
    order = batch_order()
    model.train()
    t0 = time.time()
    hist = []
    step = 0
    capped = False
    for step in range(args.steps):
        b = next(order)
        L = int(lens[b].max())
        bi = torch.from_numpy(b).to(dev)
        ids = Xg.index_select(0, bi)[:, :L].long()
        w = Wg.index_select(0, bi)[:, 1:L]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids, use_cache=False).logits
        ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
        loss = (ce * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            lv = loss.item()
            hist.append((step, lv))
            log(f"step {step:5d} loss {lv:.4f} gnorm {gn.item():.2f} lr {lr_at(step):.2e} L {L} "
                f"elapsed {time.time() - t0:.1f}s")
        if args.stop_after and step + 1 >= args.stop_after:
            log(f"stop-after reached at step {step}")
            break
        if args.time_cap and time.time() - t0 > args.time_cap:
            capped = True
            log(f"time cap reached at step {step}")
            break
    torch.cuda.synchronize()
    train_s = time.time() - t0
    log(f"trained {step + 1} steps in {train_s:.1f}s ({train_s / (step + 1) * 1000:.1f} ms/step), capped={capped}")
    results["train"] = {"steps_done": step + 1, "seconds": train_s, "time_capped": capped, "loss_history": hist,
                        "tokens_seen_approx": int((step + 1) * args.batch * lens.mean())}

    # 4. export -----------------------------------------------------------
    model.eval()
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                                               do_sample=False, max_new_tokens=64)
    model.save_pretrained(mdir)
    # config: make eos/bos/pad and dtype explicit
    cj = json.load(open(os.path.join(mdir, "config.json")))
    log("config.json:", json.dumps(cj))
    try:
        from safetensors import safe_open
        with safe_open(os.path.join(mdir, "model.safetensors"), "pt") as f:
            keys = sorted(f.keys())
            dts = {str(f.get_tensor(k).dtype) for k in keys}
        log(f"safetensors: {len(keys)} tensors, dtypes {dts}, lm_head stored: {any('lm_head' in k for k in keys)}")
        results["safetensors"] = {"n_tensors": len(keys), "dtypes": sorted(dts), "keys": keys}
    except Exception as ex:  # noqa: BLE001
        log("safetensors check failed:", repr(ex))
    log("export files:", {f: os.path.getsize(os.path.join(mdir, f)) for f in sorted(os.listdir(mdir))})
    del model, Xg, Wg
    torch.cuda.empty_cache()

    # 5. reference evaluation: fp32 from the bf16 export, eager attention, TF32 off, CPU --------------
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    t0 = time.time()
    m = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    log("reloaded:", type(m).__name__, next(m.parameters()).dtype, m.config._attn_implementation)

    def enc_prompt(system, user):
        return tok.encode(D.render_prompt(system, user), add_special_tokens=False).ids

    @torch.no_grad()
    def greedy(ids, n, stop_eos):
        ids = list(ids)
        out = []
        for _ in range(n):
            lg = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
            nx = int(torch.argmax(lg))
            out.append(nx)
            ids.append(nx)
            if stop_eos and nx == EOS_ID:
                break
        return out

    # HF tokenizer / chat template agreement
    try:
        htok = AutoTokenizer.from_pretrained(mdir)
        mism = 0
        for s, u in GREEDY_PROMPTS + SAMPLE_CHAT:
            msgs = ([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": u}]
            txt = htok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            hids = htok(txt, add_special_tokens=False)["input_ids"]
            if txt != D.render_prompt(s, u) or hids != enc_prompt(s, u):
                mism += 1
        plain = htok("hello world")["input_ids"]
        log(f"HF tokenizer: chat-template/ids mismatches {mism}; plain encode 'hello world' -> {plain}; "
            f"eos {htok.eos_token!r} {htok.eos_token_id} bos {htok.bos_token!r} {htok.bos_token_id}")
        results["hf_tokenizer_check"] = {"template_mismatches": mism, "plain_hello_world": plain,
                                         "eos_id": htok.eos_token_id, "bos_id": htok.bos_token_id}
    except Exception as ex:  # noqa: BLE001
        log("HF tokenizer check failed:", repr(ex))
        results["hf_tokenizer_check"] = {"error": repr(ex)}

    @torch.no_grad()
    def route_scores(system, user, names):
        """log p(name + <|im_end|> | prompt) for each candidate name."""
        p = enc_prompt(system, user)
        cands = [tok.encode(n, add_special_tokens=False).ids + [EOS_ID] for n in names]
        Lm = max(len(c) for c in cands)
        batch = torch.tensor([p + c + [PAD_ID] * (Lm - len(c)) for c in cands])
        lp = torch.log_softmax(m(input_ids=batch, use_cache=False).logits.float(), -1)
        sc = []
        for j, c in enumerate(cands):
            sc.append(sum(float(lp[j, len(p) + k - 1, c[k]]) for k in range(len(c))))
        return sc

    def eval_routing(items, system, names, label_map=None):
        ok_gen = ok_score = 0
        conf = {}
        rows = []
        for text, route in items:
            want = label_map[route] if label_map else route
            g = greedy(enc_prompt(system, text), 6, True)
            gtxt = tok.decode([i for i in g if i != EOS_ID], skip_special_tokens=True).strip()
            sc = route_scores(system, text, names)
            best = names[int(np.argmax(sc))]
            ok_gen += gtxt == want
            ok_score += best == want
            conf.setdefault(want, {}).setdefault(gtxt, 0)
            conf[want][gtxt] += 1
            rows.append({"text": text, "route": want, "greedy": gtxt, "scored": best})
        n = len(items)
        return {"n": n, "acc_greedy": ok_gen / n, "acc_scored": ok_score / n, "confusion_greedy": conf}, rows

    r_held, rows = eval_routing(HELDOUT, D.DEFAULT_ROUTING_SYSTEM, D.ROUTES)
    log(f"HELD-OUT routing ({r_held['n']}): greedy acc {r_held['acc_greedy']:.3f}, scored acc {r_held['acc_scored']:.3f}")
    log("confusion (want -> greedy outputs):", json.dumps(r_held["confusion_greedy"]))
    for rw in rows:
        if rw["greedy"] != rw["route"] or rw["scored"] != rw["route"]:
            log("  miss:", json.dumps(rw))
    results["heldout"] = r_held
    results["heldout_rows"] = rows

    # in-distribution generated test set (different seed, default prompt)
    import random
    rng = random.Random(args.seed + 999)
    ind = [(D.route_request(rng, r), r) for r in D.ROUTES for _ in range(60)]
    r_ind, _ = eval_routing(ind, D.DEFAULT_ROUTING_SYSTEM, D.ROUTES)
    log(f"generated test routing ({r_ind['n']}): greedy {r_ind['acc_greedy']:.3f}, scored {r_ind['acc_scored']:.3f}")
    results["generated_test"] = r_ind

    # custom route names (same prompt format, aliases + other descriptions, shuffled order)
    alias = {"code": "programming", "math": "calculator", "creative": "writing", "analysis": "research",
             "chat": "smalltalk"}
    order = ["chat", "analysis", "code", "creative", "math"]
    sys_alias = D.routing_system_prompt([(alias[r], D.ALT_DESC[r][0]) for r in order])
    r_alias, _ = eval_routing(HELDOUT, sys_alias, [alias[r] for r in order], alias)
    log(f"HELD-OUT with renamed routes: greedy {r_alias['acc_greedy']:.3f}, scored {r_alias['acc_scored']:.3f}")
    results["heldout_renamed_routes"] = {k: v for k, v in r_alias.items() if k != "confusion_greedy"}
    results["heldout_renamed_routes"]["system"] = sys_alias
    # classification set with labels only (sentiment)
    sys_sent = D.routing_system_prompt([("positive", ""), ("negative", ""), ("neutral", "")])
    sent = [("I absolutely loved this movie, the acting was superb", "positive"),
            ("The package arrived broken and support never answered", "negative"),
            ("The store opens at nine", "neutral"), ("Worst pizza I have ever eaten", "negative"),
            ("This blender is fantastic, I use it every day", "positive")]
    r_sent, _ = eval_routing(sent, sys_sent, ["positive", "negative", "neutral"])
    log(f"sentiment mini-check: greedy {r_sent['acc_greedy']:.3f} scored {r_sent['acc_scored']:.3f}")
    results["sentiment_minicheck"] = {k: v for k, v in r_sent.items() if k != "confusion_greedy"}

    # sample chat answers
    samples = []
    for s, u in SAMPLE_CHAT:
        g = greedy(enc_prompt(s, u), 64, True)
        txt = tok.decode([i for i in g if i != EOS_ID], skip_special_tokens=True)
        samples.append({"system": s, "user": u, "answer": txt})
        log(f"  CHAT {u!r} -> {txt!r}")
    results["chat_samples"] = samples

    # greedy reference (EOS not treated as a stop: exactly greedy_steps argmax steps)
    refs = []
    for s, u in GREEDY_PROMPTS:
        p = enc_prompt(s, u)
        g = greedy(p, args.greedy_steps, False)
        eos_at = g.index(EOS_ID) if EOS_ID in g else -1
        refs.append({"prompt_ids": p, "greedy_ids": g, "system": s, "user": u, "eos_index": eos_at,
                     "text": tok.decode(g[: eos_at] if eos_at >= 0 else g, skip_special_tokens=False)})
    # cross-check with transformers generate (uses the conv/KV cache path)
    try:
        agree = 0
        for rf in refs:
            out = m.generate(torch.tensor([rf["prompt_ids"]]), max_new_tokens=args.greedy_steps, do_sample=False,
                             eos_token_id=EOS_ID, pad_token_id=PAD_ID)
            gen = out[0, len(rf["prompt_ids"]):].tolist()
            agree += gen == rf["greedy_ids"][: len(gen)]
        log(f"generate() (cached) agrees with no-cache greedy on {agree}/{len(refs)} prompts")
        results["generate_agreement"] = agree
    except Exception as ex:  # noqa: BLE001
        log("generate cross-check failed:", repr(ex))
    with open(os.path.join(outdir, "greedy_ref.jsonl"), "w") as f:
        for rf in refs:
            f.write(json.dumps(rf, ensure_ascii=False) + "\n")
    for rf in refs:
        log(f"  GREEDY {rf['user']!r}: {rf['text']!r} (eos at {rf['eos_index']})")
    log(f"eval took {time.time() - t0:.1f}s")
    results["total_seconds"] = time.time() - t_all
    json.dump(results, open(os.path.join(outdir, "results.json"), "w"), indent=1, ensure_ascii=False)
    log(f"done in {results['total_seconds']:.1f}s")


if __name__ == "__main__":
    main()
