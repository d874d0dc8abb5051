// Security defaults on the real binary: loopback bind, API key on every route but /health
// (Bearer or x-api-key, OpenAI error shape, env variable), CORS off by default and allow-listed
// with --cors-origin (preflight), 413 for large bodies, oversized headers refused, a client
// sending one byte per second is dropped, 1,000 idle connections do not lock others out,
// idle keep-alive connections are closed. SPDX-License-Identifier: MIT
import net from 'node:net';
import { check, done, startServer, stopServer, metrics, sleep, waitFor } from './harness.mjs';

const KEY = 'k3y-for-tests-0123456789';

async function req(s, path, { method = 'GET', headers = {}, body } = {}) {
  const r = await fetch(`${s.url}${path}`, { method, headers, body });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

// Raw TCP: resolves with the time the server closed the socket (ms since connect) or null.
function rawSocket(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.resume(); // consume replies so 'close' fires
    const t0 = Date.now();
    sock.on('connect', () => resolve({ sock, t0, closed: new Promise((r) => sock.on('close', () => r(Date.now() - t0))) }));
    sock.on('error', () => {});
    setTimeout(() => reject(new Error('connect timeout')), 5000);
  });
}

// ---- default bind, API key ----
{
  const s = await startServer(['--api-key', KEY]);
  check(/listening on http:\/\/127\.0\.0\.1:/.test(s.log()), 'binds 127.0.0.1 by default');
  const routes = [['GET', '/v1/models'], ['POST', '/v1/chat/completions'], ['POST', '/v1/completions'],
    ['GET', '/api/tags'], ['POST', '/api/generate'], ['GET', '/api/ps'], ['GET', '/metrics'],
    ['POST', '/admin/trim'], ['POST', '/admin/unload'], ['GET', '/'], ['GET', '/nope']];
  let all401 = true, shape = true;
  for (const [method, path] of routes) {
    const r = await req(s, path, { method, body: method === 'POST' ? '{}' : undefined, headers: { 'Content-Type': 'application/json' } });
    if (r.status !== 401) { all401 = false; console.error(`  ${method} ${path} -> ${r.status}`); }
    if (!(r.json && r.json.error && typeof r.json.error.message === 'string' && 'type' in r.json.error)) shape = false;
  }
  check(all401, 'without a key: 401 on every route but /health');
  check(shape, '401 bodies have OpenAI error shape');
  check((await req(s, '/health')).status === 200, '/health stays public');
  const bad = await req(s, '/v1/models', { headers: { Authorization: `Bearer ${KEY.slice(0, -1)}X` } });
  check(bad.status === 401, 'wrong key (same length) -> 401');
  const short = await req(s, '/v1/models', { headers: { Authorization: `Bearer ${KEY.slice(0, 5)}` } });
  check(short.status === 401, 'key prefix -> 401');
  const bearer = await req(s, '/v1/models', { headers: { Authorization: `Bearer ${KEY}` } });
  check(bearer.status === 200, 'Authorization: Bearer works');
  const xk = await req(s, '/api/tags', { headers: { 'x-api-key': KEY } });
  check(xk.status === 200, 'x-api-key works');
  const gen = await req(s, '/v1/completions', { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'hi', max_tokens: 3 }) });
  check(gen.status === 200 && gen.json.choices, 'generation with the key');
  check(/^[\w.:-]+$/.test(gen.headers.get('x-request-id') || ''), 'X-Request-Id on responses');
  const rid = await req(s, '/health', { headers: { 'X-Request-Id': 'trace-abc.1' } });
  check(rid.headers.get('x-request-id') === 'trace-abc.1', 'incoming X-Request-Id is kept');
  check(await waitFor(() => s.log().includes('trace-abc.1'), 2000), 'request id in the log');
  await stopServer(s);
}
{
  const s = await startServer([], { LFMD_API_KEY: KEY });
  check((await req(s, '/v1/models')).status === 401, 'LFMD_API_KEY enables auth');
  check((await req(s, '/v1/models', { headers: { Authorization: `Bearer ${KEY}` } })).status === 200, 'LFMD_API_KEY key works');
  await stopServer(s);
}

// ---- CORS ----
{
  const s = await startServer([]);
  const pre = await req(s, '/v1/chat/completions', { method: 'OPTIONS', headers: { Origin: 'http://a.example', 'Access-Control-Request-Method': 'POST' } });
  check(!pre.headers.get('access-control-allow-origin'), `CORS off by default: preflight not allowed (${pre.status})`);
  const g = await req(s, '/v1/models', { headers: { Origin: 'http://a.example' } });
  check(g.status === 200 && !g.headers.get('access-control-allow-origin'), 'CORS off: no Allow-Origin header');
  await stopServer(s);
}
{
  const s = await startServer(['--cors-origin', 'http://a.example, http://c.example', '--api-key', KEY]);
  const pre = await req(s, '/v1/chat/completions', { method: 'OPTIONS',
    headers: { Origin: 'http://a.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
  check(pre.status === 204 && pre.headers.get('access-control-allow-origin') === 'http://a.example', `preflight allowed without the key (${pre.status})`);
  check(/POST/.test(pre.headers.get('access-control-allow-methods') || ''), 'preflight lists POST');
  check(/authorization/i.test(pre.headers.get('access-control-allow-headers') || ''), 'preflight allows Authorization');
  const g = await req(s, '/v1/models', { headers: { Origin: 'http://c.example', Authorization: `Bearer ${KEY}` } });
  check(g.headers.get('access-control-allow-origin') === 'http://c.example', 'allowed origin echoed');
  const e = await req(s, '/v1/models', { headers: { Origin: 'http://evil.example', Authorization: `Bearer ${KEY}` } });
  check(!e.headers.get('access-control-allow-origin'), 'other origins get no Allow-Origin');
  const u = await req(s, '/v1/models', { headers: { Origin: 'http://a.example' } });
  check(u.status === 401 && u.headers.get('access-control-allow-origin') === 'http://a.example', '401 readable by an allowed origin');
  await stopServer(s);
}

// ---- body and header limits ----
{
  const s = await startServer(['--max-body', '64K']);
  const big = 'x'.repeat(100 << 10);
  const r = await req(s, '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: big }) });
  check(r.status === 413 && r.json && r.json.error, `body over --max-body -> 413 (${r.status})`);
  const o = await req(s, '/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: big }) });
  check(o.status === 413, 'same on the Ollama routes');
  // chunked (no Content-Length): refused once the limit is crossed
  const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(JSON.stringify({ prompt: big }))); c.close(); } });
  const ch = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: stream, duplex: 'half', headers: { 'Content-Type': 'application/json' } });
  check(ch.status === 413, `chunked body over the limit -> 413 (${ch.status})`);
  // Oversized headers: refused by the connection memory pool (431), server unharmed.
  let hs = 0;
  try { hs = (await fetch(`${s.url}/v1/models`, { headers: { 'X-Big': 'y'.repeat(100 << 10) } })).status; } catch { hs = -1; }
  check(hs === 431 || hs === 413 || hs === -1, `100 KB of headers refused (${hs})`);
  check((await req(s, '/health')).status === 200, 'server fine after oversized headers');
  await stopServer(s);
}
{
  const s = await startServer([]);
  const r = await req(s, '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'x'.repeat(9 << 20) }) });
  check(r.status === 413, `default limit: 9 MiB body -> 413 (${r.status})`);
  // A declared body far over the limit is cut at once (413 if the client reads it, else reset).
  let st = 0;
  try {
    st = (await fetch(`${s.url}/v1/completions`, { method: 'POST', body: new Uint8Array(80 << 20) })).status;
  } catch { st = -1; }
  check(st === 413 || st === -1, `80 MiB body refused early (${st})`);
  check((await req(s, '/health')).status === 200, 'server fine after an 80 MiB body');
  await stopServer(s);
}

// ---- slow clients, idle piles, keep-alive ----
{
  const s = await startServer(['--request-timeout', '3s', '--keepalive-timeout', '1s', '--max-connections', '64']);
  // One byte per second of a request line: dropped at the request deadline.
  const slow = await rawSocket(s.port);
  const line = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
  let i = 0;
  const timer = setInterval(() => { if (i < line.length && !slow.sock.destroyed) slow.sock.write(line[i++]); }, 1000);
  const closedAfter = await Promise.race([slow.closed, sleep(8000).then(() => null)]);
  clearInterval(timer);
  check(closedAfter !== null && closedAfter >= 2500 && closedAfter < 5000, `1 byte/s client dropped after ~3 s (${closedAfter} ms, ${i} bytes sent)`);
  const m = await metrics(s);
  check(m['lfmd_http_connections_dropped_total{reason="request_timeout"}'] >= 1, 'drop counted in /metrics');

  // Keep-alive: an idle connection after a response is closed after --keepalive-timeout.
  const ka = await rawSocket(s.port);
  ka.sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  const kaClosed = await Promise.race([ka.closed, sleep(5000).then(() => null)]);
  check(kaClosed !== null && kaClosed < 3000, `idle keep-alive closed after ~1 s (${kaClosed} ms)`);

  // 1,000 idle connections (no bytes): others still get served; idle ones are evicted.
  const socks = [];
  for (let k = 0; k < 1000; k++) {
    const so = net.connect(s.port, '127.0.0.1');
    so.on('error', () => {});
    socks.push(so);
    if (k % 100 === 99) await sleep(20);
  }
  await sleep(300);
  const t0 = Date.now();
  let ok = 0;
  for (let k = 0; k < 5; k++) {
    try { if ((await fetch(`${s.url}/v1/models`, { signal: AbortSignal.timeout(3000) })).status === 200) ok++; } catch { /* refused */ }
  }
  check(ok === 5, `requests served next to 1,000 idle connections (${ok}/5, ${Date.now() - t0} ms)`);
  const gen = await req(s, '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'hi', max_tokens: 3 }) });
  check(gen.status === 200, 'generation works next to 1,000 idle connections');
  const m2 = await metrics(s);
  check(m2['lfmd_http_connections_dropped_total{reason="evicted"}'] > 500, `idle connections evicted (${m2['lfmd_http_connections_dropped_total{reason="evicted"}']})`);
  check(m2.lfmd_http_connections <= 64, `open connections stay under --max-connections (${m2.lfmd_http_connections})`);
  for (const so of socks) so.destroy();
  check(await waitFor(async () => (await metrics(s)).lfmd_http_connections <= 2, 3000), 'connections released');
  await stopServer(s);
}

done();
