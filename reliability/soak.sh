#!/usr/bin/env bash
# Long run (issue 7): a primary and a replica on 127.0.0.1 serving the bundled
# fr-sample dataset (137k records) under a mixed load of searches, reverse
# lookups, CSV batches and updates, for a bounded time; prints errors, latency
# and memory over time and a PASS/FAIL verdict (see soak.py).
#
#   reliability/soak.sh [SECONDS]          (default 600)
#   CAIRN_SOAK_CACHE=16777216 CAIRN_SOAK_CLIENTS=4 reliability/soak.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
cache=${CAIRN_SOAK_CACHE:-16777216}
clients=${CAIRN_SOAK_CLIENTS:-4}
interval=${CAIRN_SOAK_INTERVAL:-$(( secs >= 300 ? 30 : 10 ))}
cargo build --release -q -p cairn-server
bin=$(pwd)/target/release/cairn
work=$(mktemp -d /tmp/cairn-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
$bin import --data "$work/primary" datasets/fr-sample/addresses.ndjson.gz >&2

# start NAME ARGS...: serves in the background, sets $addr and $pid.
start() {
  local name=$1; shift
  $bin serve --listen 127.0.0.1:0 --cache-bytes "$cache" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    grep -q 'listening on' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  addr=$(sed -n '1s|.*http://\([^ ]*\).*|\1|p' "$work/$name.out")
  [ -n "$addr" ] || { cat "$work/$name.err" >&2; exit 1; }
}
start primary --data "$work/primary" --write-token soak --snapshot-token soak
primary=$addr primary_pid=$pid
start replica --data "$work/replica" --replica-of "http://$primary" --snapshot-token soak --poll 2s
replica=$addr replica_pid=$pid
for _ in $(seq 1 300); do
  curl -fs "http://$replica/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "soak: $secs s, primary $primary (pid $primary_pid), replica $replica (pid $replica_pid), cache $cache bytes, $clients clients" >&2
python3 reliability/soak.py --primary "$primary" --replica "$replica" --primary-pid "$primary_pid" \
  --replica-pid "$replica_pid" --token soak --seconds "$secs" --interval "$interval" --clients "$clients"
