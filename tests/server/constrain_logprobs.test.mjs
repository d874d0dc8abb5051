// Constrained output and logprobs over HTTP and stdio on a real model (the embedded router):
// response_format outputs parse and match their schema (checked here, independently of the
// server's automaton), unsupported schemas are 400s, logprobs are well formed (probabilities sum
// to <= 1, top_logprobs sorted, the greedy token is the top one with the same logprob), prompt
// arrays give one choice per prompt equal to the single-prompt answers, stdio batches reply per
// inner request. SPDX-License-Identifier: MIT
import { spawn } from 'node:child_process';
import { BIN, MODEL, check, done, startServer, stopServer } from './harness.mjs';

const post = async (s, path, body) => {
  const r = await fetch(`${s.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};

function validate(schema, v) {
  if (schema.enum) return schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v));
  const t = schema.type;
  const ty = (x) => (x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x === 'object' ? 'object' : typeof x);
  if (t === 'integer') return Number.isInteger(v);
  if (t && t !== ty(v) && !(t === 'number' && typeof v === 'number')) return false;
  if (t === 'string' && schema.maxLength !== undefined && [...v].length > schema.maxLength) return false;
  if (t === 'array') return v.every((x) => validate(schema.items || {}, x));
  if (t === 'object' && schema.properties) {
    for (const k of Object.keys(v)) if (!schema.properties[k] || !validate(schema.properties[k], v[k])) return false;
    for (const k of schema.required || []) if (!(k in v)) return false;
  }
  return true;
}

const schemas = [
  { type: 'object', properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer' } }, required: ['name', 'age'] },
  { type: 'object', properties: { tags: { type: 'array', items: { enum: ['a', 'b', 'c'] } }, ok: { type: 'boolean' } }, required: ['ok'] },
  { type: 'object', properties: { service: { enum: ['billing', 'support', 'sales'] }, score: { type: 'number' } }, required: ['service', 'score'] },
];

const s = await startServer(['--parallel', '8']);
try {
  // response_format: json_schema, chat and completions, several seeds
  for (const [i, schema] of schemas.entries()) {
    for (let seed = 0; seed < 3; seed++) {
      const chat = seed % 2 === 0;
      const body = {
        max_tokens: 80, temperature: 1, seed,
        response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema } },
      };
      if (chat) body.messages = [{ role: 'user', content: 'Answer in JSON.' }];
      else body.prompt = 'JSON:';
      const r = await post(s, chat ? '/v1/chat/completions' : '/v1/completions', body);
      const text = chat ? r.body.choices?.[0]?.message?.content : r.body.choices?.[0]?.text;
      let v, ok = false;
      try { v = JSON.parse(text); ok = validate(schema, v); } catch { ok = false; }
      check(r.status === 200 && ok, `schema ${i} seed ${seed}: ${text}`);
    }
  }
  const jo = await post(s, '/v1/chat/completions', {
    messages: [{ role: 'user', content: 'hi' }], max_tokens: 60, temperature: 1, seed: 5,
    response_format: { type: 'json_object' },
  });
  let parsed = null;
  try { parsed = JSON.parse(jo.body.choices[0].message.content); } catch {}
  check(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), `json_object: ${jo.body.choices?.[0]?.message?.content}`);
  for (const bad of [{ $ref: '#/a' }, { type: 'string', pattern: 'x' }, { anyOf: [] }]) {
    const r = await post(s, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { schema: bad } },
    });
    check(r.status === 400 && r.body.error.param === 'response_format' && /unsupported/.test(r.body.error.message),
      `unsupported schema ${JSON.stringify(bad)} -> ${r.status} ${JSON.stringify(r.body)}`);
  }

  // logprobs (chat, greedy)
  const lp = await post(s, '/v1/chat/completions', {
    messages: [{ role: 'user', content: 'What is the capital of France?' }], max_tokens: 12,
    temperature: 0, logprobs: true, top_logprobs: 5,
  });
  const content = lp.body.choices?.[0]?.logprobs?.content || [];
  check(content.length > 0, 'chat logprobs present');
  let joined = '';
  for (const t of content) {
    joined += t.token;
    const tops = t.top_logprobs;
    check(tops.length === 5, 'five alternatives');
    const sum = tops.reduce((a, x) => a + Math.exp(x.logprob), 0);
    check(sum <= 1 + 1e-4, `probabilities sum to ${sum}`);
    check(tops.every((x, k) => k === 0 || tops[k - 1].logprob >= x.logprob), 'top_logprobs sorted');
    check(tops[0].token === t.token && Math.abs(tops[0].logprob - t.logprob) < 1e-6,
      `greedy token ${JSON.stringify(t.token)} is the most likely one with the same logprob`);
    check(t.logprob <= 0 && Buffer.from(t.bytes).toString('utf8') === t.token, 'bytes match the token');
  }
  check(joined === lp.body.choices[0].message.content, 'tokens join to the content');

  // completions: logprobs N and prompt arrays
  const prompts = ['Hello', 'What is 2+2?', 'Name a color.'];
  const multi = await post(s, '/v1/completions', { prompt: prompts, max_tokens: 8, temperature: 0, logprobs: 3 });
  check(multi.status === 200 && multi.body.choices.length === 3, 'one choice per prompt');
  for (const [i, p] of prompts.entries()) {
    const one = await post(s, '/v1/completions', { prompt: p, max_tokens: 8, temperature: 0, logprobs: 3 });
    const c = multi.body.choices[i];
    check(c.index === i && c.text === one.body.choices[0].text, `prompt ${i}: batched text equals alone`);
    const l = c.logprobs;
    check(l.tokens.join('') === c.text, 'completion tokens join to the text');
    check(l.token_logprobs.length === l.tokens.length && l.top_logprobs.length === l.tokens.length, 'parallel arrays');
    check(l.text_offset.every((o, k) => o === l.tokens.slice(0, k).join('').length), 'text_offset');
    check(l.top_logprobs.every((m) => Object.keys(m).length <= 3), 'at most N alternatives');
  }
  const st = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Hi', max_tokens: 4, temperature: 0, stream: true, logprobs: 1 }) });
  const sse = await st.text();
  check(/"logprobs":\{"tokens"/.test(sse), 'streamed chunks carry logprobs');
} finally {
  await stopServer(s);
}

// stdio batch: every inner request replies with its own id; the routing text parses.
const lines = await new Promise((resolve) => {
  const p = spawn(BIN, ['stdio', MODEL], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d;
    if (out.split('\n').filter((l) => l.startsWith('{')).length >= 4) p.stdin.end();
  });
  p.on('exit', () => resolve(out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))));
  p.stdin.write(JSON.stringify({ type: 'batch', requests: [
    { type: 'completion', prompt: 'Hi', maxTokens: 4, temperature: 0, requestId: 'a' },
    { type: 'completion', prompt: 'Yo', maxTokens: 4, temperature: 0, requestId: 'b' },
    { type: 'routing', prompt: 'Route: my invoice is wrong', maxTokens: 60, requestId: 'c' },
    { type: 'routing', prompt: 'Pick a service.\n- billing: invoices and payments\n- tech: bugs and outages\nRequest: the app crashes', requestId: 'd' },
  ] }) + '\n');
  setTimeout(() => p.kill(), 30000);
});
const ids = lines.map((l) => l.requestId).sort().join(',');
check(ids === 'a,b,c,d', `stdio batch replies: ${ids}`);
for (const l of lines.filter((x) => x.requestId === 'c' || x.requestId === 'd')) {
  let ok = false;
  try { ok = typeof JSON.parse(l.text).service === 'string'; } catch {}
  check(l.success && ok, `routing text parses: ${l.text}`);
}
done();
