// Load generator for lfmd serve (node, no packages). Starts the real binary, drives it, samples
// VmRSS from /proc/PID/status every 10 ms, prints one JSON summary line and exits 1 when a check
// fails. Scenarios (--scenario):
//   burst    C concurrent clients send N mixed requests (chat, streaming chat, completions,
//            /v1/route when it answers, invalid bodies, disconnects mid-stream); with --sigusr1 K
//            the server gets K SIGUSR1 during the burst. Checks: none lost (every request gets a
//            status), no 5xx other than 503 + Retry-After, correct bodies (200 JSON with choices,
//            SSE ending in [DONE]), invalid bodies 400, RSS <= --memory-limit when one is given.
//   drift    W warm-up then N sequential requests: RSS after minus RSS after warm-up (< 1 MiB).
//   soak     --seconds S of mixed traffic from --clients C; RSS every second (--csv FILE);
//            drift under 1 MiB (runs under 10 min) or under 1 MiB per hour (longer runs).
//            --think-ms T: each client pauses T ms between requests (a light, long soak);
//            --progress S: one JSON progress line on stderr every S seconds.
//   idle     bare RSS (lazy, before the first request), loaded RSS, RSS after idle trim and
//            after idle unload, then one more request must succeed.
// Usage: node tests/load/load.mjs --scenario burst --clients 64 --requests 1000
//        [--model DIR|@test] [--memory-limit 256M] [--sigusr1 100] [--mix chat,stream,...]
//        [--serve-args "..."] [--bin build/src/lfmd]
// SPDX-License-Identifier: MIT
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => {
  if (v.startsWith('--')) a.push([v.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : '1']);
  return a;
}, []));
const BIN = args.bin || process.env.LFMD_BIN || 'build/src/lfmd';
const MODEL = args.model || process.env.LFMD_TEST_MODEL || '@test';
const scenario = args.scenario || 'burst';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const parseBytes = (s) => {
  if (!s) return 0;
  const m = /^([\d.]+)\s*([KMG]?)/i.exec(s);
  return Math.round(Number(m[1]) * { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase()]);
};

function start(extra) {
  return new Promise((resolve, reject) => {
    const a = ['serve', '-m', MODEL, '--port', '0', ...extra];
    const proc = spawn(BIN, a, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env } });
    let log = '';
    const t = setTimeout(() => reject(new Error('no listen: ' + log)), 20000);
    proc.stderr.on('data', (d) => {
      log += d;
      if (log.length > 1 << 20) log = log.slice(-65536);
      const m = /listening on http:\/\/([\d.]+):(\d+)/.exec(log);
      if (m && t) { clearTimeout(t); resolve({ proc, url: `http://127.0.0.1:${m[2]}`, log: () => log }); }
    });
    proc.on('exit', (c) => { clearTimeout(t); reject(new Error(`exited ${c}: ${log}`)); });
  });
}
const rss = (pid) => {
  try { return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024; } catch { return 0; }
};
function sampler(pid) {
  const s = { max: 0, n: 0, series: [] , t0: Date.now() };
  s.timer = setInterval(() => {
    const v = rss(pid);
    s.n++; if (v > s.max) s.max = v;
    if (s.n % 100 === 0) s.series.push([(Date.now() - s.t0) / 1000, v]);
  }, 10);
  return s;
}
async function metric(url, name) {
  const t = await (await fetch(url + '/metrics')).text();
  const m = new RegExp('^' + name.replace(/[{}"=]/g, '\\$&') + ' ([\\d.e+]+)', 'm').exec(t);
  return m ? Number(m[1]) : NaN;
}

const bodies = {
  chat: { path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'route: what is the weather in Paris' }], max_tokens: 8, temperature: 0 } },
  stream: { path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8, stream: true } },
  completion: { path: '/v1/completions', body: { prompt: 'The quick brown fox', max_tokens: 6, temperature: 0.7, seed: 3 } },
  route: { path: '/v1/route', body: { input: 'book a flight to Rome', routes: ['travel', 'weather', 'code'] } },
  invalid: { path: '/v1/chat/completions', raw: '{"messages": [{"role": "user", "content": 5}], "max_tokens": "x"' },
  disconnect: { path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'tell a long story' }], max_tokens: 64, stream: true } },
};

async function one(url, kind, stats) {
  const b = bodies[kind];
  const ctl = new AbortController();
  const to = setTimeout(() => ctl.abort(), 120000);
  try {
    const r = await fetch(url + b.path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b.raw ?? JSON.stringify(b.body), signal: ctl.signal });
    stats.status[r.status] = (stats.status[r.status] || 0) + 1;
    if (r.status === 503) {
      if (!r.headers.get('retry-after')) stats.bad.push(`${kind}: 503 without Retry-After`);
      await r.text(); stats.rejected++; return;
    }
    if (kind === 'invalid') {
      const t = await r.text();
      if (r.status !== 400 || !/"error"/.test(t)) stats.bad.push(`invalid body: ${r.status} ${t.slice(0, 80)}`);
      else stats.ok++;
      return;
    }
    if (r.status !== 200) { stats.bad.push(`${kind}: HTTP ${r.status} ${(await r.text()).slice(0, 120)}`); return; }
    if (kind === 'disconnect') {
      const rd = r.body.getReader(); await rd.read(); ctl.abort(); stats.ok++; stats.disconnects++; return;
    }
    const t = await r.text();
    if (kind === 'stream') {
      if (!t.trimEnd().endsWith('data: [DONE]') || /"error"/.test(t)) stats.bad.push(`stream: bad SSE tail ${t.slice(-100)}`);
      else stats.ok++;
      return;
    }
    const j = JSON.parse(t);
    const good = kind === 'route' ? j && typeof j === 'object' && !j.error : Array.isArray(j.choices) && j.choices.length === 1 && j.usage;
    if (!good) stats.bad.push(`${kind}: unexpected body ${t.slice(0, 120)}`); else stats.ok++;
  } catch (e) {
    if (kind === 'disconnect' && e.name === 'AbortError') { stats.ok++; stats.disconnects++; return; }
    stats.lost++; stats.bad.push(`${kind}: ${e.message}`);
  } finally { clearTimeout(to); }
}

async function burst(srv, pid, limit) {
  const C = Number(args.clients || 64), N = Number(args.requests || 1000);
  let mix = (args.mix || 'chat,stream,completion,route,invalid,disconnect').split(',');
  if (mix.includes('route')) {
    const r = await fetch(srv.url + '/v1/route', { method: 'POST', body: JSON.stringify(bodies.route.body) });
    await r.text();
    if (r.status === 404 || r.status === 400) mix = mix.filter((k) => k !== 'route');
  }
  const stats = { ok: 0, rejected: 0, lost: 0, disconnects: 0, status: {}, bad: [] };
  const smp = sampler(pid);
  let next = 0, sigs = 0;
  const nsig = Number(args.sigusr1 || 0);
  const t0 = Date.now();
  const sigTimer = nsig ? setInterval(() => { if (sigs < nsig) { srv.proc.kill('SIGUSR1'); sigs++; } }, 20) : null;
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) { const i = next++; await one(srv.url, mix[i % mix.length], stats); }
  }));
  const secs = (Date.now() - t0) / 1000;
  if (sigTimer) { while (sigs < nsig) { srv.proc.kill('SIGUSR1'); sigs++; await sleep(5); } clearInterval(sigTimer); }
  await sleep(200);
  clearInterval(smp.timer);
  const served = stats.ok + stats.rejected;
  const res = { scenario: 'burst', model: MODEL, clients: C, requests: N, mix, seconds: secs, ok: stats.ok, rejected_503: stats.rejected,
    lost: stats.lost, disconnects: stats.disconnects, status: stats.status, sigusr1: sigs, rss_max: smp.max, rss_samples: smp.n,
    memory_limit: limit, peak_budget: await metric(srv.url, 'lfmd_memory_peak_bytes'), errors: stats.bad.slice(0, 10), n_errors: stats.bad.length };
  res.pass = stats.lost === 0 && stats.bad.length === 0 && served === N && (!limit || smp.max <= limit);
  return res;
}

async function drift(srv, pid) {
  const W = Number(args.warmup || 200), N = Number(args.requests || 2000);
  const st = { ok: 0, rejected: 0, lost: 0, disconnects: 0, status: {}, bad: [] };
  for (let i = 0; i < W; i++) await one(srv.url, i % 2 ? 'chat' : 'completion', st);
  await sleep(300);
  const r0 = rss(pid);
  const series = [];
  for (let i = 0; i < N; i++) {
    await one(srv.url, i % 2 ? 'chat' : 'completion', st);
    if (i % 200 === 199) series.push(rss(pid));
  }
  await sleep(300);
  const r1 = rss(pid);
  return { scenario: 'drift', model: MODEL, warmup: W, requests: N, ok: st.ok, errors: st.bad.slice(0, 5), rss_after_warmup: r0, rss_after: r1,
    drift_bytes: r1 - r0, rss_every_200: series, pass: st.bad.length === 0 && r1 - r0 < (1 << 20) };
}

async function idle(srv, pid) {
  const st = { ok: 0, rejected: 0, lost: 0, disconnects: 0, status: {}, bad: [] };
  await sleep(300);
  const bare = rss(pid);
  for (let i = 0; i < 20; i++) await one(srv.url, i % 2 ? 'chat' : 'stream', st);
  const loaded = rss(pid);
  const weights = await metric(srv.url, 'lfmd_memory_bytes{category="weights"}');
  const waitState = async (s, ms) => { const until = Date.now() + ms; while (Date.now() < until) { if ((await metric(srv.url, `lfmd_model_state{state="${s}"}`)) === 1) return true; await sleep(50); } return false; };
  const trimmedOk = await waitState('trimmed', 20000);
  await sleep(200);
  const trimmed = rss(pid);
  const unloadedOk = await waitState('unloaded', 30000);
  await sleep(200);
  const unloaded = rss(pid);
  await one(srv.url, 'chat', st);
  const nonWeight = Math.max(0, loaded - bare - weights);
  const res = { scenario: 'idle', model: MODEL, rss_bare: bare, rss_loaded: loaded, weights_budget: weights, rss_trimmed: trimmed,
    rss_unloaded: unloaded, trim_drop: loaded - trimmed, non_weight_part: nonWeight, trimmed_seen: trimmedOk, unloaded_seen: unloadedOk,
    next_request_ok: st.bad.length === 0, errors: st.bad.slice(0, 5) };
  res.unload_within_8mb = unloaded - bare <= 8 * 1048576;
  res.trim_drop_ge_90pct_nonweight = loaded - trimmed >= 0.9 * nonWeight;
  res.pass = trimmedOk && unloadedOk && res.unload_within_8mb && res.trim_drop_ge_90pct_nonweight && res.next_request_ok;
  return res;
}

// soak: C clients (default 8) send mixed requests for --seconds; RSS every second; the drift is
// the RSS floor of the last tenth minus that of the second tenth (after warm-up), scaled per hour.
async function soak(srv, pid, limit) {
  const secs = Number(args.seconds || 60), C = Number(args.clients || 8);
  const think = Number(args['think-ms'] || 0), every = Number(args.progress || 0);
  const mix = (args.mix || 'chat,stream,completion,invalid,disconnect').split(',');
  const st = { ok: 0, rejected: 0, lost: 0, disconnects: 0, status: {}, bad: [] };
  const t0 = Date.now(), series = [];
  let n = 0, max = 0;
  const timer = setInterval(() => { const v = rss(pid); if (v > max) max = v; series.push([Math.round((Date.now() - t0) / 1000), v]); }, 1000);
  // The fast sampler catches peaks between requests; with think time the traffic is sparse, so it
  // samples every 100 ms instead of 10 ms to keep the generator itself light.
  const fast = setInterval(() => { const v = rss(pid); if (v > max) max = v; }, think ? 100 : 10);
  const prog = every ? setInterval(() => process.stderr.write(JSON.stringify({ t: Math.round((Date.now() - t0) / 1000),
    requests: n, ok: st.ok, errors: st.bad.length, lost: st.lost, rss: rss(pid), rss_max: max }) + '\n'), every * 1000) : null;
  await Promise.all(Array.from({ length: C }, async () => {
    while (Date.now() - t0 < secs * 1000) {
      await one(srv.url, mix[n++ % mix.length], st);
      if (think) await sleep(think);
    }
  }));
  clearInterval(timer); clearInterval(fast); if (prog) clearInterval(prog);
  // Windows of a tenth of the run (at least 3 samples). RSS swings with the requests in flight, so
  // each window is summarised by its floor (the minimum): a leak raises the floor, a burst does not.
  const k = Math.max(3, Math.floor(series.length / 10));
  const floor = (a) => a.reduce((x, y) => Math.min(x, y[1]), Infinity);
  const early = floor(series.slice(k, 2 * k)), late = floor(series.slice(-k));
  const perHour = (late - early) * 3600 / Math.max(1, secs * 0.8);
  if (args.csv) (await import('node:fs')).writeFileSync(args.csv, 'seconds,rss_bytes\n' + series.map((r) => r.join(',')).join('\n') + '\n');
  return { scenario: 'soak', model: MODEL, seconds: secs, clients: C, think_ms: think, requests: n,
    status: st.status, disconnects: st.disconnects,
    rss_start: series.length ? series[0][1] : 0, rss_end: series.length ? series[series.length - 1][1] : 0, ok: st.ok, rejected_503: st.rejected, lost: st.lost,
    errors: st.bad.slice(0, 5), n_errors: st.bad.length, rss_max: max, memory_limit: limit, rss_early: Math.round(early), rss_late: Math.round(late),
    drift_bytes: Math.round(late - early), drift_per_hour_bytes: Math.round(perHour),
    // Runs under 10 minutes are dominated by heap warm-up: they check the absolute drift (< 1 MiB);
    // longer runs check the drift projected per hour (< 1 MiB/h).
    pass: st.lost === 0 && st.bad.length === 0 && (!limit || max <= limit) &&
      (secs < 600 ? late - early < (1 << 20) : perHour < (1 << 20)) };
}

const limit = parseBytes(args['memory-limit']);
const extra = (args['serve-args'] || '').split(' ').filter(Boolean);
if (limit) extra.push('--memory-limit', args['memory-limit']);
if (scenario === 'idle') extra.push('--idle-trim', args['idle-trim'] || '2', '--idle-unload', args['idle-unload'] || '5');
const srv = await start(extra);
let res;
try {
  const fn = { burst, drift, idle, soak }[scenario];
  if (!fn) throw new Error('unknown scenario ' + scenario);
  res = await fn(srv, srv.proc.pid, limit);
} catch (e) { res = { scenario, pass: false, error: String(e.stack || e) }; }
const alive = srv.proc.exitCode === null;
srv.proc.kill('SIGTERM');
const code = await new Promise((r) => srv.proc.on('exit', (c) => r(c)));
res.server_alive = alive; res.server_exit = code;
// A sanitizer build (TSan/ASan/UBSan) reports on the server's stderr: any report fails the run.
const san = /WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/.exec(srv.log());
if (san) res.sanitizer_report = srv.log().slice(Math.max(0, san.index - 200), san.index + 2000);
res.pass = res.pass && alive && code === 0 && !san;
console.log(JSON.stringify(res));
process.exit(res.pass ? 0 : 1);
