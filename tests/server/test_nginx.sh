#!/usr/bin/env bash
# Scale-out behind nginx (deploy/nginx.conf, ports rewritten): two lfmd replicas (@test model,
# slow tokens) and nginx run as the current user on free loopback ports; 8 clients send chat
# completions (half streaming) for 6 s; one replica is SIGKILLed after 2 s. Checks: only
# requests in flight at the kill may fail, every request started after it succeeds, the
# survivor serves all of those, and both replicas served traffic before the kill.
# Skips when nginx is not installed (Debian: apt install nginx-light).
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${LFMD_BIN:-$src/build/src/lfmd}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
    echo "SKIP: nginx not installed (apt install nginx-light)"
    exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ports=($(/usr/bin/python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
p1=${ports[0]} p2=${ports[1]} pn=${ports[2]}
for p in $p1 $p2; do
    LFMD_TEST_TOKEN_MS=15 "$bin" serve -m @test --port "$p" --parallel 4 --preload 2>"$tmp/lfmd-$p.log" &
    pids+=($!)
done
victim=${pids[0]}
# deploy/nginx.conf with the test's ports, plus a header naming the replica that answered.
sed -e "s/127.0.0.1:8081/127.0.0.1:$p1/; s/127.0.0.1:8082/127.0.0.1:$p2/" \
    -e "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$pn;\n    add_header X-Upstream \$upstream_addr always;/" \
    "$src/deploy/nginx.conf" >"$tmp/lfmd.conf"
mkdir -p "$tmp/t"
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
user $(id -un);
events { worker_connections 512; }
http {
    access_log $tmp/access.log;
    client_body_temp_path $tmp/t/body;
    proxy_temp_path $tmp/t/proxy;
    fastcgi_temp_path $tmp/t/fcgi;
    uwsgi_temp_path $tmp/t/uwsgi;
    scgi_temp_path $tmp/t/scgi;
    include $tmp/lfmd.conf;
}
CONF
"$nginx" -t -q -p "$tmp" -c "$tmp/nginx.conf" 2>&1 | grep -v "user\" directive makes sense" || true
"$nginx" -p "$tmp" -c "$tmp/nginx.conf" 2>>"$tmp/error.log" &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$p1/health" >/dev/null && curl -sf "http://127.0.0.1:$p2/health" >/dev/null &&
        curl -sf "http://127.0.0.1:$pn/health" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$pn/health" >/dev/null || { echo "FAIL: nginx/lfmd did not come up" >&2; cat "$tmp/error.log" >&2; exit 1; }

summary=$(URL="http://127.0.0.1:$pn" C=8 DURATION=6000 KILL_AT=2000 VICTIM=$victim \
    timeout 60 node "$src/tests/server/nginx-load.mjs")
echo "$summary" | P1=$p1 P2=$p2 /usr/bin/python3 -c '
import json, os, sys
d = json.load(sys.stdin)
k, rs = d["killedAt"], d["results"]
p1, p2 = os.environ["P1"], os.environ["P2"]
fails = [r for r in rs if not r["ok"]]
inflight = [r for r in rs if r["start"] <= k < r["end"]]
after = [r for r in rs if r["start"] > k + 50]
before = [r for r in rs if r["end"] < k and r["ok"]]
served_before = {r["up"].split(", ")[-1].rsplit(":", 1)[-1] for r in before}
for r in inflight: print("  in flight:", json.dumps(r))
print(f"requests {len(rs)}, failed {len(fails)}, in flight at the kill ({k} ms) {len(inflight)}, "
      f"after the kill {len(after)}")
bad = 0
def check(cond, what):
    global bad
    print(("ok: " if cond else "FAIL: ") + what)
    bad += not cond
check(len(rs) >= 40, f"enough traffic ({len(rs)} requests)")
check(served_before == {p1, p2}, f"both replicas served before the kill ({sorted(served_before)})")
check(all(r["start"] <= k < r["end"] for r in fails),
      "only requests in flight at the kill failed: " + json.dumps(fails[:5]))
check(len(fails) <= len(inflight), f"failures {len(fails)} <= in flight {len(inflight)}")
check(len(after) >= 20 and all(r["ok"] for r in after), f"every request after the kill succeeded ({len(after)})")
last = [r["up"].split(", ")[-1].rsplit(":", 1)[-1] for r in after]
check(all(p == p2 for p in last), f"the survivor carried the load after the kill ({set(last)})")
sys.exit(1 if bad else 0)
'
