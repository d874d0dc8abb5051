#!/usr/bin/env node
// Serving benchmark for lfmd (node >= 18, no packages): starts `lfmd serve` on a free port and
// measures (1) aggregate decode tok/s at 1, 2, 4, 8, 16 concurrent streams, (2) /v1/route
// latency p50/p99 for a ~350-token routing prompt over 5 routes, cold (prefix cache off) and
// with the template prefix cached, (3) time to first token with and without the prefix cache.
// Usage: node bench/serve_bench.mjs --bin build/src/lfmd --model DIR [--tokens 32]
//        [--route-calls 30] [--streams 1,2,4,8,16] [--threads N] [--json]
// SPDX-License-Identifier: MIT
import { spawn } from 'node:child_process';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true]);
  return acc;
}, []));
const BIN = args.bin || 'build/src/lfmd';
const MODEL = args.model || 'models/lfm2-router';
const TOKENS = Number(args.tokens || 32);
const ROUTE_CALLS = Number(args['route-calls'] || 30);
const STREAMS = String(args.streams || '1,2,4,8,16').split(',').map(Number);
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function start(extra) {
  return new Promise((resolve, reject) => {
    const a = ['serve', '-m', MODEL, '--port', '0', '--parallel', '16', '--ctx', '1024', ...extra];
    if (args.threads) a.push('--threads', String(args.threads));
    const proc = spawn(BIN, a, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`no start: ${log}`)), 60000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/[\d.]+:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ proc, url: `http://127.0.0.1:${m[1]}` }); }
    });
    proc.on('exit', (c) => reject(new Error(`exited ${c}: ${log}`)));
  });
}
const stop = (s) => new Promise((r) => { s.proc.removeAllListeners('exit'); s.proc.on('exit', r); s.proc.kill('SIGTERM'); });

async function post(s, path, body) {
  const r = await fetch(`${s.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

// Streams one completion; returns {t0, first, last, n} (n = content chunks = tokens).
async function stream(s, prompt) {
  const t0 = now();
  const r = await fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ prompt, max_tokens: TOKENS, temperature: 0, stream: true }),
  });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let first = 0, last = 0, n = 0, buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: {')) continue;
      const j = JSON.parse(ev.slice(6));
      if (j.choices?.[0]?.text) {
        n++;
        last = now();
        if (!first) first = last;
      }
    }
  }
  return { t0, first, last, n };
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

const routes = [
  ['billing', 'Invoices, charges, refunds, payment methods, subscriptions, pricing plans, tax documents, failed card payments and anything about money owed to or by the customer, in any currency.'],
  ['technical', 'Bugs, crashes, error messages, outages, slow performance, installation problems, API questions, integrations, SDKs, configuration and anything that is broken or behaves unexpectedly on any device.'],
  ['account', 'Sign-in problems, passwords, two-factor authentication, profile changes, team members, permissions, account deletion, data export and privacy requests about personal data held by the company.'],
  ['sales', 'New purchases, upgrades, enterprise plans, quotes, demos, trials, discounts for non-profits or education, partnership and reseller questions from prospective customers and partners.'],
  ['feedback', 'Feature requests, suggestions, compliments, complaints about the product direction, survey answers and general comments that need no immediate action from the support team today.'],
].map(([name, description]) => ({ name, description }));
const SYSTEM = 'You are the routing layer of a customer support platform. Read the customer message and decide which team should handle it. ' +
  'Consider the main intent of the message rather than incidental words; when a message mentions several topics, prefer the one the customer needs resolved first. ' +
  'Messages may be short, rude, misspelled or written in a hurry. Answer with the route name only. ' +
  'Guidelines: a refund request is billing even when the customer is angry about a bug; a login problem is account even when an error message is quoted; ' +
  'questions from people who are not customers yet are sales; ideas and wishes without a concrete problem are feedback; ' +
  'anything that stops the customer from using the product right now is technical unless it is about payment or access. ' +
  'Do not invent new routes, do not explain the choice, and do not ask the customer for more details. ' +
  'Security reports, legal threats and press inquiries are rare; send them to account, billing or technical depending on what the sender wants done, ' +
  'and remember that a wrong route costs the customer a day of waiting while a slightly imperfect one is fixed by the receiving team in minutes.';
// The routing template of models/README.md with the five routes listed (~330 tokens).
const ROUTE_SYSTEM = ['Classify the request into one of these routes:', ...routes.map((r) => `${r.name}: ${r.description}`),
  'Answer with the route name only.'].join('\n');
const inputs = [
  'My card was charged twice this month, please refund one of the payments.',
  'The app crashes every time I open the settings page on Android.',
  'I cannot log in since I changed my phone, the 2FA code never arrives.',
  'Do you offer a discount for universities buying fifty seats?',
  'It would be great if the dashboard had a dark mode.',
  'Where can I download the invoice for March for my accountant?',
];

async function routeLatency(s, label) {
  const lat = [];
  let usage = null, choice = null;
  for (let i = 0; i < ROUTE_CALLS + 2; i++) {
    const input = `${inputs[i % inputs.length]} (ticket ${1000 + i})`;
    const t = now();
    const r = await post(s, '/v1/route', { input, routes, system: ROUTE_SYSTEM });
    if (i >= 2) lat.push(now() - t); // first two warm the model (and the cache)
    usage = r.usage;
    if (i === 2) choice = r;
  }
  return { label, p50: pct(lat, 0.5), p99: pct(lat, 0.99), mean: lat.reduce((a, b) => a + b, 0) / lat.length, usage, choice };
}

async function ttft(s) {
  const xs = [];
  const system = `${SYSTEM} ${routes.map((r) => `${r.name}: ${r.description}`).join(' ')}`;
  for (let i = 0; i < 12; i++) {
    const t = now();
    const r = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ messages: [{ role: 'system', content: system }, { role: 'user', content: inputs[i % inputs.length] + ` #${i}` }], max_tokens: 1, temperature: 0, stream: true }),
    });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let got = 0, buf = '';
    while (!got) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      if (/"content":"[^"]/.test(buf) || buf.includes('[DONE]')) got = now();
    }
    reader.cancel().catch(() => {});
    if (i >= 2) xs.push((got || now()) - t);
  }
  return { p50: pct(xs, 0.5), mean: xs.reduce((a, b) => a + b, 0) / xs.length };
}

const out = { model: MODEL, tokens: TOKENS, decode: [], route: [], ttft: {} };
let s = await start([]);
try {
  await post(s, '/v1/completions', { prompt: 'warm up', max_tokens: 2 });
  for (const n of STREAMS) {
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => stream(s, `Story number ${i}: once upon a time`)));
    const first = Math.min(...rs.map((r) => r.first)), last = Math.max(...rs.map((r) => r.last));
    const toks = rs.reduce((a, r) => a + Math.max(0, r.n - 1), 0);
    const single = rs.map((r) => r.n / ((r.last - r.t0) / 1000));
    out.decode.push({ streams: n, agg_tok_s: toks / ((last - first) / 1000), per_stream_tok_s: single.reduce((a, b) => a + b, 0) / n, tokens: toks });
  }
  out.route.push(await routeLatency(s, 'cached'));
  out.ttft.cached = await ttft(s);
} finally { await stop(s); }
s = await start(['--prefix-cache', '0']);
try {
  out.route.push(await routeLatency(s, 'cold'));
  out.ttft.cold = await ttft(s);
} finally { await stop(s); }

if (args.json) console.log(JSON.stringify(out, null, 1));
else {
  console.log(`model ${MODEL}, ${TOKENS} tokens per stream`);
  for (const d of out.decode) console.log(`decode ${String(d.streams).padStart(2)} streams: ${d.agg_tok_s.toFixed(1)} tok/s aggregate (${d.per_stream_tok_s.toFixed(1)} tok/s per stream incl. prefill)`);
  const base = out.decode[0]?.agg_tok_s;
  if (base) console.log(`speedup: ${out.decode.map((d) => `${d.streams}:${(d.agg_tok_s / base).toFixed(2)}x`).join(' ')}`);
  for (const r of out.route) console.log(`route ${r.label}: p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, mean ${r.mean.toFixed(1)} ms; usage ${JSON.stringify(r.usage)}; choice ${r.choice.route} ${JSON.stringify(r.choice.scores)}`);
  const [c, k] = [out.route.find((r) => r.label === 'cached'), out.route.find((r) => r.label === 'cold')];
  console.log(`route cached/cold (p50): ${(100 * c.p50 / k.p50).toFixed(0)}%`);
  console.log(`ttft: cached p50 ${out.ttft.cached.p50.toFixed(1)} ms, cold p50 ${out.ttft.cold.p50.toFixed(1)} ms`);
}
