// Load generator for test_nginx.sh: C concurrent clients send chat completions through nginx for
// DURATION ms; at KILL_AT ms the victim replica (pid VICTIM) gets SIGKILL. Prints a JSON summary:
// every request's start/end, status and the upstream that served it (X-Upstream from nginx).
// SPDX-License-Identifier: MIT
const url = process.env.URL, C = Number(process.env.C || 8), DURATION = Number(process.env.DURATION || 6000);
const KILL_AT = Number(process.env.KILL_AT || 2000), VICTIM = Number(process.env.VICTIM);
const t0 = Date.now();
const results = [];
let killedAt = null;
setTimeout(() => { process.kill(VICTIM, 'SIGKILL'); killedAt = Date.now() - t0; }, KILL_AT);
async function one(i, k) {
  const start = Date.now() - t0;
  const stream = k % 2 === 1;
  try {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: `client ${i} request ${k}` }], max_tokens: 16, stream }),
    });
    const text = await r.text();
    const ok = r.status === 200 && (stream ? text.includes('data: [DONE]') : JSON.parse(text).choices[0].message.content.length > 0);
    results.push({ start, end: Date.now() - t0, status: r.status, ok, up: r.headers.get('x-upstream') || '' });
  } catch (e) {
    results.push({ start, end: Date.now() - t0, status: 0, ok: false, up: '', err: String(e.cause || e) });
  }
}
await Promise.all(Array.from({ length: C }, async (_, i) => {
  for (let k = 0; Date.now() - t0 < DURATION; k++) await one(i, k);
}));
console.log(JSON.stringify({ killedAt, results }));
