// Encode speed of Hugging Face `tokenizers` (npm binding, single thread) on the lines of a JSONL
// file ({"text": ...}), for comparison with `lfmd tokenize --bench`. Usage:
//   node bench/tokenizer_bench.js TOKENIZER_JSON IN_JSONL ITERS
// SPDX-License-Identifier: MIT
const path = require('path');
const fs = require('fs');
const { Tokenizer } = require(path.join(__dirname, 'tokenizer_node', 'node_modules', 'tokenizers'));

async function main() {
  const [file, input, itersArg] = process.argv.slice(2);
  const iters = parseInt(itersArg || '200', 10);
  const tok = Tokenizer.fromFile(file);
  for (const line of fs.readFileSync(input, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const text = JSON.parse(line).text;
    const bytes = Buffer.byteLength(text);
    let enc = await tok.encode(text, null, { addSpecialTokens: false });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) enc = await tok.encode(text, null, { addSpecialTokens: false });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ bytes, tokens: enc.getIds().length, iters, seconds: +s.toFixed(4),
                                 mb_per_s: +((bytes * iters) / 1e6 / s).toFixed(2) }));
  }
}
main();
