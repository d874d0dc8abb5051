// The official `ollama` JS client against lfmd's /api routes, unmodified: generate and chat
// (streaming and not), options, ps/list/show/version, keep_alive (0 unloads after the request,
// a duration sets expires_at, -1 outlives --idle-unload, empty prompt + 0 unloads now), abort,
// errors. SPDX-License-Identifier: MIT
import { Ollama } from 'ollama';
import { check, done, startServer, stopServer, metrics, sleep, waitFor, MODEL } from './harness.mjs';

const FAKE = MODEL === '@test';

{
  const s = await startServer(['--idle-unload', '3s'], { LFMD_TEST_TOKEN_MS: '5' });
  const ol = new Ollama({ host: s.url });

  // generate, not streaming
  const g = await ol.generate({ model: 'lfmd', prompt: 'Say hi', options: { temperature: 0, num_predict: 12 } });
  check(typeof g.response === 'string' && g.response.length > 0, `generate response text (${JSON.stringify(g.response)})`);
  check(g.done === true && ['stop', 'length'].includes(g.done_reason), `done + done_reason (${g.done_reason})`);
  check(g.model === 'lfmd', 'model echoed');
  check(!Number.isNaN(Date.parse(g.created_at)), `created_at is a date (${g.created_at})`);
  check(g.eval_count > 0 && g.eval_count <= 12, `eval_count within num_predict (${g.eval_count})`);
  check(g.prompt_eval_count > 0, `prompt_eval_count (${g.prompt_eval_count})`);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    check(Number.isInteger(g[k]) && g[k] >= 0, `${k} is integer ns (${g[k]})`);
  check(g.total_duration >= g.eval_duration, 'total_duration >= eval_duration');
  if (FAKE) check(g.done_reason === 'length' && g.eval_count === 12, 'fake model fills num_predict');

  // generate, streaming: same text with the same greedy settings
  const it = await ol.generate({ model: 'lfmd', prompt: 'Say hi', stream: true, options: { temperature: 0, num_predict: 12 } });
  let text = '', parts = 0, last = null;
  for await (const p of it) {
    if (!p.done) { text += p.response; parts++; } else last = p;
  }
  check(parts >= 2, `streamed in several parts (${parts})`);
  check(text === g.response, 'streamed text equals non-streamed text (greedy)');
  check(last && last.done && last.eval_count === g.eval_count, 'final stream object carries counts');

  // chat, both ways
  const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }];
  const c = await ol.chat({ model: 'lfmd', messages: msgs, options: { temperature: 0, num_predict: 8, seed: 7 } });
  check(c.message && c.message.role === 'assistant' && c.message.content.length > 0, 'chat message');
  check(c.done && c.eval_count > 0, 'chat done with eval_count');
  const cs = await ol.chat({ model: 'lfmd', messages: msgs, stream: true, options: { temperature: 0, num_predict: 8 } });
  let ctext = '';
  let clast = null;
  for await (const p of cs) { if (p.done) clast = p; else ctext += p.message.content; }
  check(ctext === c.message.content, 'chat stream equals non-stream');
  check(clast && clast.done_reason && clast.message.content === '', 'chat final object');

  // stop option
  if (FAKE) {
    const st = await ol.generate({ model: 'lfmd', prompt: 'x', options: { temperature: 0, num_predict: 40, stop: ['lfmd'] } });
    check(st.done_reason === 'stop' && !st.response.includes('lfmd'), `stop string honoured (${JSON.stringify(st.response)})`);
  }

  // ps / list / show / version
  const ps = await ol.ps();
  check(ps.models.length === 1 && ps.models[0].size > 0 && ps.models[0].size_vram === 0, 'ps lists the loaded model');
  const exp = Date.parse(ps.models[0].expires_at) - Date.now();
  check(exp > 0 && exp <= 3500, `expires_at follows --idle-unload 3s (${exp} ms)`);
  const tags = await ol.list();
  check(tags.models.length === 1 && typeof tags.models[0].name === 'string', 'list (tags)');
  const sh = await ol.show({ model: tags.models[0].name });
  check(sh.details && Array.isArray(sh.capabilities), 'show');
  const v = await ol.version();
  check(/^\d+\.\d+\.\d+/.test(v.version), `version (${v.version})`);

  // keep_alive as a duration sets expires_at; -1 outlives --idle-unload
  await ol.generate({ model: 'lfmd', prompt: 'a', keep_alive: '20m', options: { num_predict: 2 } });
  const e20 = Date.parse((await ol.ps()).models[0].expires_at) - Date.now();
  check(e20 > 19 * 60e3 && e20 <= 20 * 60e3 + 1000, `keep_alive "20m" -> expires in ~20 min (${e20})`);
  await ol.generate({ model: 'lfmd', prompt: 'a', keep_alive: -1, options: { num_predict: 2 } });
  const eInf = Date.parse((await ol.ps()).models[0].expires_at);
  check(eInf > Date.now() + 100 * 365 * 86400e3, 'keep_alive -1 -> expires far in the future');
  await sleep(3500);
  check((await metrics(s)).state !== 'unloaded', 'keep_alive -1 outlives --idle-unload 3s');

  // keep_alive 0: unloads right after this request
  const z = await ol.generate({ model: 'lfmd', prompt: 'a', keep_alive: 0, options: { num_predict: 2 } });
  check(z.done, 'keep_alive 0 request still answered');
  check(await waitFor(async () => (await ol.ps()).models.length === 0, 2000), 'keep_alive 0 unloads after the request');
  const m0 = await metrics(s);
  check(m0.state === 'unloaded' && m0['lfmd_memory_bytes{category="weights"}'] === 0, 'unloaded: no weights budgeted');

  // chat with keep_alive "1s": reload, then idle unload after ~1 s (not 3 s)
  await ol.chat({ model: 'lfmd', messages: [{ role: 'user', content: 'x' }], keep_alive: '1s', options: { num_predict: 2 } });
  check((await ol.ps()).models.length === 1, 'reloaded by the next request');
  const t0 = Date.now();
  check(await waitFor(async () => (await metrics(s)).state === 'unloaded', 2500), 'keep_alive "1s" unloads after ~1 s');
  check(Date.now() - t0 < 2600, `before --idle-unload 3s (${Date.now() - t0} ms)`);

  // empty prompt + keep_alive 0 unloads now; empty prompt alone answers done_reason load
  await ol.generate({ model: 'lfmd', prompt: 'a', keep_alive: '10m', options: { num_predict: 2 } });
  check((await ol.ps()).models.length === 1, 'loaded again');
  const u = await ol.generate({ model: 'lfmd', prompt: '', keep_alive: 0 });
  check(u.done && u.done_reason === 'unload', `empty prompt + keep_alive 0 -> done_reason unload (${u.done_reason})`);
  check(await waitFor(async () => (await ol.ps()).models.length === 0, 2000), 'empty prompt + keep_alive 0 unloads now');
  const cu = await ol.chat({ model: 'lfmd', messages: [], keep_alive: 0 });
  check(cu.done && cu.done_reason === 'unload', 'chat with no messages + keep_alive 0 -> unload');

  // errors reach the client as ResponseError with the server's message
  let err = null;
  try { await ol.generate({ model: 'lfmd', prompt: 'x', options: { temperature: 'hot' } }); } catch (e) { err = e; }
  check(err && err.status_code === 400 && /temperature/.test(err.error), `bad option -> 400 naming it (${err && err.error})`);
  err = null;
  try { await ol.generate({ model: 'lfmd', prompt: 'x', keep_alive: 'soon' }); } catch (e) { err = e; }
  check(err && err.status_code === 400 && /keep_alive/.test(err.error), 'bad keep_alive -> 400');
  err = null;
  let fj = null;
  try { fj = await ol.generate({ model: 'lfmd', prompt: 'x', format: 'json', options: { num_predict: 16 } }); } catch (e) { err = e; }
  check((err && err.status_code === 400 && /format/.test(err.error)) || (fj && fj.done),
    'format: json is either constrained or refused with 400 (never ignored silently)');

  // abort a stream: the server cancels the sequence
  const before = (await metrics(s))['lfmd_requests_total{outcome="canceled"}'];
  const long = await ol.generate({ model: 'lfmd', prompt: 'long', stream: true, options: { num_predict: 2000 } });
  let n = 0;
  try { for await (const p of long) { if (++n === 3) long.abort(); } } catch { /* AbortError */ }
  check(await waitFor(async () => (await metrics(s))['lfmd_requests_total{outcome="canceled"}'] > before, 3000),
    'aborted stream cancels the request');

  await stopServer(s);
}

done();
