// Memory lifecycle and limits on the real binary: lazy load, health while loading, idle trim and
// unload with RSS checks, reload, queue-full 503, client disconnect, SIGUSR1 during generation,
// SIGTERM drain, --memory-limit refusal. SPDX-License-Identifier: MIT
import { spawnSync } from 'node:child_process';
import { check, done, startServer, stopServer, postJson, metrics, rssOf, sleep, waitFor, BIN, MODEL } from './harness.mjs';

const FAKE = MODEL === '@test';
const WORDS = 'Hello from the lfmd test model. '.repeat(20);

// ---- health during a slow load; idle trim and unload; reload ----
{
  const s = await startServer(['--idle-trim', '1', '--idle-unload', '2500ms'],
    { LFMD_TEST_LOAD_MS: '700', LFMD_TEST_WEIGHTS_MB: '48' });
  const rss0 = rssOf(s.proc.pid);
  const first = postJson(s, '/v1/completions', { prompt: 'hi', max_tokens: 4 });
  await sleep(200);
  const h = await fetch(`${s.url}/health`);
  check(h.status === 503, `health 503 while loading (${h.status})`);
  const r = await first;
  check(r.status === 200, 'request during load waits and succeeds');
  check((await fetch(`${s.url}/health`)).status === 200, 'health 200 after load');
  const rssLoaded = rssOf(s.proc.pid);
  check(rssLoaded > rss0 + (40 << 20), `weights resident after load (${rssLoaded - rss0} bytes)`);
  const trimmed = await waitFor(async () => (await metrics(s)).state === 'trimmed', 2500);
  check(trimmed, 'idle trim after 1 s');
  const rssTrim = rssOf(s.proc.pid);
  check(rssTrim < rssLoaded - (40 << 20), `trim released weight pages (${rssLoaded} -> ${rssTrim})`);
  const unloaded = await waitFor(async () => (await metrics(s)).state === 'unloaded', 3000);
  check(unloaded, 'idle unload');
  const m = await metrics(s);
  check(m['lfmd_memory_bytes{category="weights"}'] === 0 && m['lfmd_memory_bytes{category="scratch"}'] === 0,
    'nothing budgeted after unload');
  const rssUnl = rssOf(s.proc.pid);
  check(rssUnl <= rss0 + (8 << 20), `RSS after unload within 8 MB of start (${rss0} -> ${rssUnl})`);
  const again = await postJson(s, '/v1/completions', { prompt: 'hi', max_tokens: 4 });
  check(again.status === 200, 'request after unload reloads and succeeds');
  const m2 = await metrics(s);
  check(m2.lfmd_model_loads_total === 2 && m2.lfmd_model_unloads_total === 1, 'loads 2, unloads 1');
  const adm = await postJson(s, '/admin/unload', {});
  check(adm.status === 202, 'admin unload accepted');
  check(await waitFor(async () => (await metrics(s)).state === 'unloaded', 2000), 'admin unload works');
  await stopServer(s);
}

// ---- queue full -> 503 + Retry-After; nothing lost ----
{
  const s = await startServer(['--queue', '1'], { LFMD_TEST_TOKEN_MS: '10' });
  const reqs = [postJson(s, '/v1/completions', { prompt: 'r', max_tokens: 20 })];
  await sleep(80); // the first is generating: one queue slot is left for five requests
  for (let i = 1; i < 6; i++) reqs.push(postJson(s, '/v1/completions', { prompt: `r${i}`, max_tokens: 20 }));
  const res = await Promise.all(reqs);
  const ok = res.filter((r) => r.status === 200), busy = res.filter((r) => r.status === 503);
  check(ok.length + busy.length === 6, 'every request answered 200 or 503');
  check(busy.length >= 1 && busy.every((r) => r.headers.get('retry-after')), `503s carry Retry-After (${busy.length})`);
  check(ok.length >= 2, `some requests succeed (${ok.length})`);
  if (FAKE) check(ok.every((r) => r.json.choices[0].text === WORDS.slice(0, 20)), 'successful answers are correct');
  await stopServer(s);
}

// ---- client disconnect mid-stream cancels and frees; SIGUSR1 during generation ----
{
  const s = await startServer([], { LFMD_TEST_TOKEN_MS: '15' });
  const ac = new AbortController();
  const resp = await fetch(`${s.url}/v1/completions`, {
    method: 'POST', body: JSON.stringify({ prompt: 'x', max_tokens: 200, stream: true }), signal: ac.signal,
  });
  const reader = resp.body.getReader();
  await reader.read();
  await sleep(100);
  const during = await metrics(s);
  check(during['lfmd_memory_bytes{category="kv_cache"}'] > 0, 'KV held while streaming');
  ac.abort();
  const freed = await waitFor(async () => {
    const m = await metrics(s);
    return m['lfmd_requests_total{outcome="canceled"}'] === 1 && m['lfmd_memory_bytes{category="kv_cache"}'] === 0 &&
      m.lfmd_active_sequences === 0;
  }, 2000);
  check(freed, 'disconnect cancels the sequence and returns its memory');

  // SIGUSR1 x50 during a burst: everything completes correctly, the process survives.
  const burst = [];
  for (let i = 0; i < 4; i++) burst.push(postJson(s, '/v1/completions', { prompt: `u${i}`, max_tokens: 15 }));
  for (let i = 0; i < 50; i++) { s.proc.kill('SIGUSR1'); await sleep(10); }
  const res = await Promise.all(burst);
  check(res.every((r) => r.status === 200), 'all requests complete during SIGUSR1 storm');
  if (FAKE) check(res.every((r) => r.json.choices[0].text === WORDS.slice(0, 15)), 'answers correct during SIGUSR1 storm');
  check(s.proc.exitCode === null, 'SIGUSR1 does not kill');
  check((await metrics(s)).lfmd_trims_total >= 1, 'SIGUSR1 trims');

  // SIGTERM drain: in-flight request finishes, exit 0, then no longer listening.
  const inflight = postJson(s, '/v1/completions', { prompt: 'drain', max_tokens: 30 });
  await sleep(150);
  s.proc.kill('SIGTERM');
  const r = await inflight;
  check(r.status === 200 && r.json.usage.completion_tokens === 30, 'in-flight request completes on SIGTERM');
  const ex = await s.exited;
  check(ex.code === 0, `drain exits 0 (${ex.code} ${ex.sig})`);
  let refused = false;
  try { await fetch(`${s.url}/health`); } catch { refused = true; }
  check(refused, 'not listening after exit');
}

// ---- --memory-limit below one request's need is refused with the numbers ----
{
  const r = spawnSync(BIN, ['serve', '-m', MODEL, '--port', '0', '--memory-limit', '1M'], { encoding: 'utf8', timeout: 10000 });
  check(r.status === 1, `too-small limit exits 1 (${r.status})`);
  check(/below what one request needs/.test(r.stderr) && /weights \d+/.test(r.stderr), `message has numbers: ${r.stderr.trim()}`);
  const u = spawnSync(BIN, ['serve', '--ctx', 'abc'], { encoding: 'utf8' });
  check(u.status === 2, 'usage error exits 2');
}

// ---- a limit that fits: concurrent clients stay under it ----
{
  const limit = 24 << 20;
  const s = await startServer(['--memory-limit', String(limit), '--parallel', '4', '--queue-timeout', '2s'],
    { LFMD_TEST_TOKEN_MS: '2' });
  let peakOk = true;
  const reqs = [];
  for (let i = 0; i < 32; i++) reqs.push(postJson(s, '/v1/completions', { prompt: `c${i}`, max_tokens: 40 }));
  const sampler = setInterval(async () => {
    try { const m = await metrics(s); if (m.lfmd_memory_total_bytes > limit) peakOk = false; } catch { /* ignore */ }
  }, 10);
  const res = await Promise.all(reqs);
  clearInterval(sampler);
  check(res.every((r) => r.status === 200 || (r.status === 503 && r.headers.get('retry-after'))), 'answers are 200 or 503');
  check(res.filter((r) => r.status === 200).length >= 8, 'most requests answered');
  const m = await metrics(s);
  check(peakOk && m.lfmd_memory_peak_bytes <= limit, `budget peak ${m.lfmd_memory_peak_bytes} <= ${limit}`);
  await stopServer(s);
}
done();
