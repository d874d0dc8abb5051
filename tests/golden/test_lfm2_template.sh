#!/usr/bin/env bash
# LFM2 chat template (the default model's tokenizer_config.json): lfmd's Jinja rendering + tokenizer
# must reproduce the prompt ids transformers' apply_chat_template produced for the 10 reference
# conversations in tests/data/router_eval/greedy_ref.jsonl.
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:-.}
TOK=$SRC/models/lfm2-router
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 - "$SRC/tests/data/router_eval/greedy_ref.jsonl" > "$T/chats.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    msgs = ([{"role": "system", "content": d["system"]}] if d["system"] else []) + \
           [{"role": "user", "content": d["user"]}]
    print(json.dumps({"messages": msgs, "add_generation_prompt": True}))
PY
"$BIN" template --tokenizer "$TOK" --jsonl < "$T/chats.jsonl" > "$T/prompts.jsonl" || exit 1
/usr/bin/python3 -c "
import json, sys
for l in open('$T/prompts.jsonl'): print(json.dumps({'text': json.loads(l)['prompt']}))" > "$T/texts.jsonl"
"$BIN" tokenize --tokenizer "$TOK" --no-special --jsonl < "$T/texts.jsonl" > "$T/ids.jsonl" || exit 1
/usr/bin/python3 - "$SRC/tests/data/router_eval/greedy_ref.jsonl" "$T/ids.jsonl" <<'PY'
import json, sys
ref = [json.loads(l)["prompt_ids"] for l in open(sys.argv[1])]
got = [json.loads(l)["ids"] for l in open(sys.argv[2])]
bad = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
print(f"{len(ref)} conversations, {len(bad)} mismatches", bad)
sys.exit(1 if bad or len(ref) != len(got) or len(ref) != 10 else 0)
PY
