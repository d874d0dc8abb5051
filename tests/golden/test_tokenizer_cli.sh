#!/usr/bin/env bash
# CLI golden test: `lfmd tokenize/detokenize/template --jsonl` on the fixture cases and chats must
# reproduce the Hugging Face / Jinja2 outputs line for line; bad input exits 1, bad usage exits 2.
# SPDX-License-Identifier: MIT
set -uo pipefail
bin=${LFMD_BIN:?}
data=${LFMD_SRC:?}/tests/data/tokenizers
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
python3 -c "
import json
for l in open('$data/cases.jsonl'): print(json.dumps({'text': json.loads(l)['text']}))" > "$tmp/in.jsonl"
for t in qwen3 llama2; do
  for mode in special no-special; do
    flag=; [ $mode = no-special ] && flag=--no-special
    field=ids; [ $mode = no-special ] && field=ids_no_special
    "$bin" tokenize --tokenizer "$data/$t" $flag --jsonl < "$tmp/in.jsonl" > "$tmp/out.jsonl" || fail=1
    python3 - "$data/$t/expected.jsonl" "$tmp/out.jsonl" "$field" <<'PY' || fail=1
import json, sys
exp = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(exp) == len(got), (len(exp), len(got))
bad = [e["id"] for e, g in zip(exp, got) if e[sys.argv[3]] != g["ids"]]
assert not bad, bad[:5]
PY
  done
  python3 -c "
import json
for l in open('$data/$t/expected.jsonl'): print(json.dumps({'ids': json.loads(l)['ids']}))" > "$tmp/ids.jsonl"
  "$bin" detokenize --tokenizer "$data/$t/tokenizer.json" --jsonl < "$tmp/ids.jsonl" > "$tmp/text.jsonl" || fail=1
  python3 - "$data/$t/expected.jsonl" "$tmp/text.jsonl" <<'PY' || fail=1
import json, sys
exp = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(exp) == len(got)
bad = [e["id"] for e, g in zip(exp, got) if e["decoded"] != g["text"]]
assert not bad, bad[:5]
PY
done
"$bin" template --tokenizer "$data/qwen3" --jsonl < "$data/chats.jsonl" > "$tmp/chat.jsonl" || fail=1
python3 - "$data/qwen3/expected.chat.jsonl" "$tmp/chat.jsonl" <<'PY' || fail=1
import json, sys
exp = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert [e["prompt"] for e in exp] == [g["prompt"] for g in got]
PY
echo '{"text": 3}' | "$bin" tokenize --tokenizer "$data/gpt2" --jsonl > /dev/null 2>&1; [ $? = 1 ] || fail=1
echo '{"ids": [99999999]}' | "$bin" detokenize --tokenizer "$data/gpt2" --jsonl > /dev/null 2>&1; [ $? = 1 ] || fail=1
echo 'not json' | "$bin" template --tokenizer "$data/qwen3" --jsonl > /dev/null 2>&1; [ $? = 1 ] || fail=1
"$bin" tokenize --jsonl < /dev/null > /dev/null 2>&1; [ $? = 2 ] || fail=1
"$bin" tokenize --tokenizer "$data/gpt2" --bogus < /dev/null > /dev/null 2>&1; [ $? = 2 ] || fail=1
"$bin" tokenize --help > /dev/null || fail=1
[ $fail = 0 ] && echo "tokenizer CLI: ok" || echo "tokenizer CLI: FAILED"
exit $fail
