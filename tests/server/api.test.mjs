// OpenAI API through the official `openai` npm client, plus raw-HTTP error paths.
// SPDX-License-Identifier: MIT
import OpenAI from 'openai';
import { check, done, startServer, stopServer, postJson, metrics, MODEL } from './harness.mjs';

const FAKE = MODEL === '@test';
const s = await startServer(['--ctx', '64', '--max-tokens', '32']);
const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });

// health never loads the model
let h = await fetch(`${s.url}/health`);
check(h.status === 200, 'health 200 while unloaded');
check((await metrics(s)).state === 'unloaded', 'health/metrics do not load the model');

const models = await client.models.list();
check(models.data.length === 1 && typeof models.data[0].id === 'string', 'models.list');

// chat, non-streaming
const chat = await client.chat.completions.create({
  model: models.data[0].id, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }],
  max_tokens: 10, temperature: 0,
});
check(chat.object === 'chat.completion', 'chat object');
check(chat.choices[0].message.role === 'assistant', 'chat role');
check(typeof chat.choices[0].message.content === 'string', 'chat content');
if (FAKE) check(chat.choices[0].message.content === 'Hello from', `chat text "${chat.choices[0].message.content}"`);
check(chat.choices[0].finish_reason === 'length', 'chat finish length');
check(chat.usage.completion_tokens === 10 && chat.usage.prompt_tokens > 0 &&
  chat.usage.total_tokens === chat.usage.prompt_tokens + 10, 'chat usage');

// completion, non-streaming, stop string
const cmpl = await client.completions.create({ model: 'x', prompt: 'hi', max_tokens: 20, stop: ['the'] });
check(cmpl.object === 'text_completion', 'completion object');
if (FAKE) {
  check(cmpl.choices[0].text === 'Hello from ', `stop string cut: "${cmpl.choices[0].text}"`);
  check(cmpl.choices[0].finish_reason === 'stop', 'stop -> finish stop');
}

// EOS -> stop
if (FAKE) {
  const e = await client.completions.create({ model: 'x', prompt: '[eos:4]', max_tokens: 20 });
  check(e.choices[0].text === 'Hell' && e.choices[0].finish_reason === 'stop', 'eos finish');
}

// max_tokens above --max-tokens is clamped
const big = await client.completions.create({ model: 'x', prompt: 'hi', max_tokens: 1000 });
check(big.usage.completion_tokens === 32, `clamped to --max-tokens (${big.usage.completion_tokens})`);

// seed: same seed, same text at temperature 1
const a = await client.completions.create({ model: 'x', prompt: 'seed', max_tokens: 8, temperature: 1, seed: 7 });
const b = await client.completions.create({ model: 'x', prompt: 'seed', max_tokens: 8, temperature: 1, seed: 7 });
check(a.choices[0].text === b.choices[0].text, 'seeded sampling is reproducible');

// chat streaming
let text = '', chunks = 0, finish = null, role = null;
const stream = await client.chat.completions.create({
  model: 'x', messages: [{ role: 'user', content: 'stream please' }], max_tokens: 12, stream: true,
  stream_options: { include_usage: true },
});
let usage = null;
for await (const ch of stream) {
  chunks++;
  if (ch.usage) usage = ch.usage;
  if (!ch.choices.length) continue;
  if (ch.choices[0].delta.role) role = ch.choices[0].delta.role;
  text += ch.choices[0].delta.content || '';
  if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
}
check(chunks >= 3, `chat stream chunks (${chunks})`);
check(role === 'assistant', 'stream role');
if (FAKE) check(text === 'Hello from t', `chat stream text "${text}"`);
check(finish === 'length', 'chat stream finish');
check(usage && usage.completion_tokens === 12, 'stream usage');

// completion streaming
text = ''; finish = null;
const cs = await client.completions.create({ model: 'x', prompt: 'go', max_tokens: 6, stream: true });
for await (const ch of cs) {
  text += ch.choices[0]?.text || '';
  if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
}
if (FAKE) check(text === 'Hello ', `completion stream text "${text}"`);
check(finish === 'length', 'completion stream finish');

// raw stream ends with data: [DONE]
const raw = await postJson(s, '/v1/completions', { prompt: 'go', max_tokens: 2, stream: true });
check(raw.status === 200 && raw.headers.get('content-type') === 'text/event-stream', 'SSE content type');
check(raw.text.trimEnd().endsWith('data: [DONE]'), 'SSE ends with [DONE]');

// ---- error paths ----
const long = 'x'.repeat(100);
let r = await postJson(s, '/v1/completions', { prompt: long, max_tokens: 4 });
check(r.status === 400, `context overflow -> 400 (${r.status})`);
check(/\b(101|100)\b/.test(r.json?.error?.message) && /\b64\b/.test(r.json?.error?.message),
  `message names both counts: ${r.json?.error?.message}`);
r = await postJson(s, '/v1/completions', { prompt: long, max_tokens: 4, stream: true });
check(r.status === 400, 'context overflow while streaming -> 400 before any SSE');
r = await postJson(s, '/v1/chat/completions', '{"messages": [');
check(r.status === 400 && r.json?.error?.type === 'invalid_request_error', 'bad JSON -> 400');
r = await postJson(s, '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] });
check(r.status === 400 && /role/.test(r.json?.error?.message), 'bad role -> 400 naming the field');
r = await postJson(s, '/v1/chat/completions', { messages: [] });
check(r.status === 400 && r.json?.error?.param === 'messages', 'empty messages -> 400 param');
r = await postJson(s, '/v1/completions', { prompt: 'x', temperature: 9 });
check(r.status === 400 && r.json?.error?.param === 'temperature', 'temperature range -> 400');
r = await postJson(s, '/v1/completions', { prompt: 'x', n: 2 });
check(r.status === 400 && r.json?.error?.param === 'n', 'n=2 -> 400');
r = await postJson(s, '/v1/completions', { max_tokens: 3 });
check(r.status === 400 && r.json?.error?.param === 'prompt', 'missing prompt -> 400');
r = await postJson(s, '/v1/nothing', {});
check(r.status === 404, 'unknown endpoint -> 404');
r = await postJson(s, '/v1/completions', 'x'.repeat(9 << 20));
check(r.status === 413, `body over 8 MiB -> 413 (${r.status})`);
try {
  await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: long }] });
  check(false, 'openai client sees an error for an overflow');
} catch (e) {
  check(e.status === 400, `openai client error status ${e.status}`);
}

const m = await metrics(s);
check(m['lfmd_requests_total{outcome="ok"}'] >= 9, 'ok requests counted');
check(m['lfmd_requests_total{outcome="invalid"}'] >= 3, 'invalid requests counted');
check(m['lfmd_ttft_seconds_count'] >= 9, 'ttft histogram');
check(m['lfmd_rss_bytes'] > 0, 'rss metric');
check(m['lfmd_memory_bytes{category="kv_cache"}'] === 0, 'no KV held after requests');

const ex = await stopServer(s);
check(ex.code === 0, `SIGTERM exit 0 (${ex.code})`);
done();
