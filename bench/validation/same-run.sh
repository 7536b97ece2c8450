#!/usr/bin/env bash
# Same-run check of the generator: the shared bench-peer's Node generator (load.js) and chatroom-bench,
# taking turns against a fresh copy of the shared peer (server.js) for each run, server on CPU 0 and
# generator on CPU 1, both at real-time priority, as the suite runs them. Prints one line per run.
#   SHARED=../shared/bench-peer NODE_PATH=/tmp/peer-node/node_modules bench/validation/same-run.sh
# (NODE_PATH: socket.io 4.8, socket.io-client and ws, as that folder's README installs them.)
set -u
cd "$(dirname "$0")/../.."
SHARED="${SHARED:-../shared/bench-peer}"
export NODE_PATH="${NODE_PATH:-/tmp/peer-node/node_modules}"
ulimit -n 20000
run() { # $1 = gen (js|rs), rest = args
  local gen=$1; shift
  PORT=38990 taskset -c 0 chrt -r 1 node "$SHARED/server.js" >/dev/null 2>&1 &
  local spid=$!
  for i in $(seq 1 50); do curl -fs http://127.0.0.1:38990/health >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$gen" = js ]; then
    out=$(taskset -c 1 chrt -r 1 node "$SHARED/load.js" --url http://127.0.0.1:38990 --srv-pid $spid "$@" 2>/dev/null | tail -1)
    echo "$out" | python3 -c "import json,sys; j=json.load(sys.stdin); print('js', sys.argv[1:], 'p50', j['latencyMs']['p50'], 'p99', j['latencyMs']['p99'], 'dlv%', j['deliveredPct'], 'us/dlv', (j.get('win') or {}).get('srv_us_per_delivery'), 'srv', (j.get('win') or {}).get('srv_cores'), 'gen', j['genCpuCores'], 'foreign', (j.get('win') or {}).get('foreign_cores'))" "$@"
  else
    out=$(taskset -c 1 chrt -r 1 target/release/chatroom-bench load --url http://127.0.0.1:38990 "$@" 2>/dev/null | tail -1)
    echo "$out" | python3 -c "import json,sys; s=json.load(sys.stdin)['summary']['steps'][0]; print('rs', sys.argv[1:], 'p50', s['latency_ms']['p50'], 'p99', s['latency_ms']['p99'], 'dlv%', s['delivered_pct'], 'gen', s['gen_cores'])" "$@"
  fi
  kill $spid; wait $spid 2>/dev/null
}
for cfg in "--clients 1000 --senders 10 --rate 25" "--clients 1000 --senders 10 --rate 50" "--clients 1000 --senders 10 --rate 100" "--clients 1000 --rooms 50 --senders 100 --rate 2000"; do
  for gen in js rs js rs; do
    run $gen $cfg --warmup 3 --duration 10
  done
done
