// Shared helpers for the server tests: start the real lfmd binary on a free loopback port,
// read metrics and RSS, tiny assertion helpers. SPDX-License-Identifier: MIT
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const BIN = process.env.LFMD_BIN || `${process.env.LFMD_BUILD || 'build'}/src/lfmd`;
export const MODEL = process.env.LFMD_TEST_MODEL || '@test';

let failures = 0, checks = 0;
export function check(cond, what) {
  checks++;
  if (!cond) { failures++; console.error(`FAIL: ${what}`); } else if (process.env.VERBOSE) console.error(`ok: ${what}`);
}
export function done() {
  console.error(`${checks} checks, ${failures} failures`);
  process.exit(failures ? 1 : 0);
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts `lfmd serve` with args; resolves {proc, port, url, log(), exited} once it listens.
export function startServer(args = [], env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve', '-m', MODEL, '--port', '0', ...args], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log}`)), 10000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/([\d.]+):(\d+)/.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        const port = Number(m[2]);
        resolve({ proc, port, url: `http://127.0.0.1:${port}`, log: () => log, exited });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${log}`)); });
  });
}

export async function stopServer(s) {
  s.proc.kill('SIGTERM');
  return s.exited;
}

export async function metrics(s) {
  const t = await (await fetch(`${s.url}/metrics`)).text();
  const m = {};
  for (const line of t.split('\n')) {
    if (!line || line[0] === '#') continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  m.state = ['unloaded', 'loading', 'ready', 'trimmed', 'unloading'].find((x) => m[`lfmd_model_state{state="${x}"}`] === 1);
  return m;
}

// Resident memory of a process in bytes, from /proc/PID/status (VmRSS).
export function rssOf(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(s)[1]) * 1024;
}

export async function postJson(s, path, body, opts = {}) {
  const r = await fetch(`${s.url}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body), ...opts,
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

export async function waitFor(fn, ms, step = 50) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > until) return v;
    await sleep(step);
  }
}
