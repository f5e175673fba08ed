#!/usr/bin/env bash
# Import time, on-disk size and single-thread search latency at scale.
#   bench/spine.sh [ADDRESSES]   (default 1000000)
# Generates BAN-like NDJSON with the committed generator (seed 42), imports
# it with the release binary, then runs the criterion benches against it.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-$n}
mkdir -p "$work"
cargo build --release -p cairn-server
if [ ! -s "$work/addresses.ndjson" ]; then
  python3 datasets/generate.py --addresses "$n" --seed 42 --out "$work/addresses.ndjson"
fi
rm -rf "$work/db"
/usr/bin/time -f "import wall %e s, peak RSS %M KB" ./target/release/cairn import --data "$work/db" "$work/addresses.ndjson"
du -sh "$work/addresses.ndjson" "$work/db" "$work"/db/store.redb "$work"/db/gen-*/*
CAIRN_BENCH_DATA="$work/db" CAIRN_BENCH_SOURCE="$work/addresses.ndjson" cargo bench -p cairn-bench
