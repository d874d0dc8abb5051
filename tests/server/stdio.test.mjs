// `lfmd stdio`, tested from bridge-protocol.md alone: handshake within 100 ms (lazy loading),
// requestId echoed on every reply (errors too), replies matched out of order, task types and
// aliases, maxTokens/temperature 0, token counts, ping/stats, cancel, deadlineMs, SIGUSR1, EOF.
// SPDX-License-Identifier: MIT
import { spawn } from 'node:child_process';
import { check, done, sleep, BIN, MODEL } from './harness.mjs';

const FAKE = MODEL === '@test';

function startStdio(env = {}) {
  const t0 = process.hrtime.bigint();
  const proc = spawn(BIN, ['stdio', MODEL], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const st = { proc, lines: [], waiters: [], initMs: null, stderr: '', badLines: [] };
  st.exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  let buf = '';
  proc.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'INITIALIZED') { st.initMs = Number(process.hrtime.bigint() - t0) / 1e6; continue; }
      let obj;
      try { obj = JSON.parse(line); } catch { st.badLines.push(line); continue; }
      st.lines.push(obj);
      st.waiters = st.waiters.filter((w) => !w(obj));
    }
  });
  proc.stderr.on('data', (d) => { st.stderr += d; });
  st.send = (o) => proc.stdin.write((typeof o === 'string' ? o : JSON.stringify(o)) + '\n');
  st.reply = (id, ms = 5000) => new Promise((resolve, reject) => {
    const found = st.lines.find((l) => l.requestId === id);
    if (found) return resolve(found);
    const t = setTimeout(() => reject(new Error(`no reply for ${id}`)), ms);
    st.waiters.push((o) => (o.requestId === id ? (clearTimeout(t), resolve(o), true) : false));
  });
  return st;
}

{
  const st = startStdio({ LFMD_TEST_TOKEN_MS: '5' });
  await sleep(300);
  check(st.initMs !== null && st.initMs < 100, `INITIALIZED within 100 ms (${st.initMs?.toFixed(1)} ms)`);

  // A slow request first, then quick ones: replies come back out of order and match by id.
  st.send({ type: 'completion', requestId: 'slow', prompt: 'write a lot', maxTokens: 60, temperature: 0.7 });
  st.send({ type: 'nonsense', requestId: 'bad-type', prompt: 'x' });
  st.send('{not json');
  st.send({ type: 'completion', requestId: 'no-prompt' });
  st.send({ type: 'completion', requestId: 'mt-bad', prompt: 'x', maxTokens: 'ten' });
  st.send({ type: 'ping', requestId: 'p1' });
  const bt = await st.reply('bad-type');
  check(bt.success === false && bt.error === 'Unknown task type: nonsense', `unknown type error: ${bt.error}`);
  check(typeof bt.processingTime === 'number', 'error has processingTime');
  const np = await st.reply('no-prompt');
  check(np.success === false && /prompt/.test(np.error), 'missing prompt -> error with id');
  const mb = await st.reply('mt-bad');
  check(mb.success === false && /maxTokens/.test(mb.error), 'bad maxTokens -> error with id');
  const p1 = await st.reply('p1');
  check(p1.success === true && p1.rssBytes > 0 && 'queueDepth' in p1 && 'kvBytes' in p1 && 'uptime' in p1, 'ping answers with stats');
  const slow = await st.reply('slow');
  check(slow.success === true && typeof slow.text === 'string', 'completion success');
  if (FAKE) check(slow.text.length === 60, `maxTokens honoured (${slow.text.length})`);
  check(slow.completionTokens === 60 && slow.promptTokens > 0, 'token counts reported');
  check(typeof slow.model === 'string' && Number.isInteger(slow.processingTime), 'model + processingTime');
  const order = st.lines.map((l) => l.requestId);
  check(order.indexOf('bad-type') < order.indexOf('slow'), 'replies arrive out of order');
  check(st.lines.some((l) => l.requestId === null && l.success === false && /JSON/.test(l.error)), 'invalid JSON -> error reply');

  // aliases and task types, temperature 0, maxTokens 0, empty prompt
  st.send({ type: 'routing', requestId: 'r1', prompt: 'route me', maxTokens: 5, temperature: 0 });
  st.send({ type: 'simple_qa', requestId: 'q1', prompt: 'what?', maxTokens: 5, temperature: 0 });
  st.send({ type: 'classification', requestId: 'c1', prompt: 'classify', categories: ['billing', 'Hello'], maxTokens: 8, temperature: 0 });
  st.send({ type: 'coordination', requestId: 'k1', prompt: 'plan', agents: [{ name: 'from' }], maxTokens: 12, temperature: 0 });
  st.send({ type: 'completion', requestId: 'zero', prompt: 'x', maxTokens: 0 });
  st.send({ type: 'completion', requestId: 'empty', prompt: '' });
  const [r1, q1, c1, k1, z, em] = await Promise.all(['r1', 'q1', 'c1', 'k1', 'zero', 'empty'].map((i) => st.reply(i)));
  check(r1.success && typeof r1.text === 'string', 'routing alias -> completion');
  check(q1.success && typeof q1.text === 'string', 'simple_qa alias -> completion');
  if (FAKE) check(q1.text === 'Hello', 'temperature 0 is greedy and deterministic');
  // routing without a parsable route list: the text is constrained to a JSON object
  check((() => { try { return typeof JSON.parse(r1.text).service === 'string'; } catch { return false; } })(), `routing text is JSON: ${r1.text}`);
  check(c1.success && typeof c1.category === 'string', 'classification -> category');
  if (FAKE) check(c1.category === 'Hello', `category picked from the list (${c1.category})`);
  check(k1.success && typeof k1.strategy === 'string', 'coordination -> strategy');
  if (FAKE) check(k1.suggestedAgent === 'from', 'coordination suggestedAgent');
  check(z.success && z.text === '' && z.completionTokens === 0, 'maxTokens 0 honoured');
  check(em.success && em.text === '', 'empty prompt -> success with empty text');

  // cancel and deadline
  st.send({ type: 'completion', requestId: 'long', prompt: 'x', maxTokens: 400 });
  await sleep(100);
  st.send({ type: 'cancel', requestId: 'long' });
  const lc = await st.reply('long');
  check(lc.success === false && /cancel/.test(lc.error), `cancel -> error reply with id (${lc.error})`);
  st.send({ type: 'completion', requestId: 'dl', prompt: 'x', maxTokens: 400, deadlineMs: 100 });
  const dl = await st.reply('dl');
  check(dl.success === false && /deadline/.test(dl.error) && dl.processingTime < 1000, `deadlineMs honoured (${dl.error})`);

  // SIGUSR1 trims, never kills
  st.send({ type: 'completion', requestId: 'u1', prompt: 'x', maxTokens: 30 });
  for (let i = 0; i < 10; i++) { st.proc.kill('SIGUSR1'); await sleep(5); }
  const u1 = await st.reply('u1');
  check(u1.success === true, 'request completes across SIGUSR1');
  check(st.proc.exitCode === null, 'SIGUSR1 does not kill');

  // EOF with one request in flight: its reply is still written, then exit 0.
  st.send({ type: 'completion', requestId: 'last', prompt: 'x', maxTokens: 10 });
  st.proc.stdin.end();
  const ex = await st.exited;
  check(ex.code === 0, `EOF exits 0 (${ex.code})`);
  check(st.lines.some((l) => l.requestId === 'last' && l.success), 'in-flight reply delivered before exit');
  check(st.badLines.length === 0, `stdout carries only JSON lines (${st.badLines})`);
  check(!/ERROR|CRITICAL|Traceback|Exception/.test(st.stderr), `no error words on stderr: ${st.stderr}`);
}

// SIGTERM exits 0
{
  const st = startStdio();
  await sleep(100);
  st.proc.kill('SIGTERM');
  const ex = await st.exited;
  check(ex.code === 0, `SIGTERM exits 0 (${ex.code} ${ex.sig})`);
}
done();
