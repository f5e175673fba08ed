#!/usr/bin/env bash
# Snapshot shipping at scale (issue 5): snapshot size, create and restore
# time, and what a replica's swap costs the clients querying it.
#
#   bench/snapshot.sh [ADDRESSES]        (default 1000000)
#
# Uses the database bench/spine.sh builds (CAIRN_BENCH_DIR, default
# /tmp/cairn-bench-N), making it if missing. Then: `cairn snapshot create`,
# `cairn snapshot restore` into a fresh directory, and a primary + replica
# on 127.0.0.1 where one update is posted to the primary while a client
# queries the replica without pause (bench/snapshot_swap.py); it prints the
# replica's install time and the client's latencies before and during the swap.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-$n}
bin=./target/release/cairn
cargo build --release -p cairn-server
if [ ! -s "$work/db/store.redb" ]; then
  mkdir -p "$work"
  [ -s "$work/addresses.ndjson" ] || python3 datasets/generate.py --addresses "$n" --seed 42 --out "$work/addresses.ndjson"
  $bin import --data "$work/db" "$work/addresses.ndjson"
fi
snap="$work/snapshot.cairn-snapshot"
rm -rf "$snap" "$work/restored" "$work/primary" "$work/replica"
echo "== database: $(du -sh "$work/db" | cut -f1) on disk"
/usr/bin/time -f "   wall %e s, peak RSS %M KB" $bin snapshot create --data "$work/db" --out "$snap"
/usr/bin/time -f "   wall %e s, peak RSS %M KB" $bin snapshot restore "$snap" --data "$work/restored"

# The replica starts from the snapshot file, the primary from the database.
cp -r "$work/db" "$work/primary"
mv "$work/restored" "$work/replica"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
fifo=$(mktemp -u) && mkfifo "$fifo"
$bin serve --data "$work/primary" --listen 127.0.0.1:0 --write-token bench --snapshot-token bench >"$fifo" &
pids+=($!)
primary=$(head -n1 "$fifo" | sed 's|.*http://\([^ ]*\).*|\1|')
$bin serve --data "$work/replica" --listen 127.0.0.1:0 --replica-of "http://$primary" --snapshot-token bench --poll 1s >"$fifo" 2>/dev/null &
pids+=($!)
replica=$(head -n1 "$fifo" | sed 's|.*http://\([^ ]*\).*|\1|')
rm -f "$fifo"
python3 bench/snapshot_swap.py --primary "$primary" --replica "$replica" --token bench
