#!/usr/bin/env bash
# The whole sequence at one size, in one table (issue 18): generate, import, sizes on disk,
# start, uncached search / autocomplete as typed / reverse over HTTP, memory.
#
#   bench/scale.sh                       1M addresses
#   bench/scale.sh 26000000              the full BAN's size (the table in docs/PERFORMANCE.md)
#   CAIRN_SCALE_SECONDS=3 bench/scale.sh 100000     what CI runs
#
# Steps:
#   1. datasets/generate.py --addresses N --seed 42 (kept between runs);
#   2. `cairn import`, timed, with its peak RSS;
#   3. sizes of the store and of each serving file;
#   4. `cairn serve` started twice: with the page cache dropped first (when run as root; the
#      row says which) and with it warm; each time, how long until the first answer and the
#      server's RSS (anonymous and file pages) right after it;
#   5. with the files read once into the page cache (steady state, not a cold disk),
#      bench/load.sh on the same data, response cache off, 16 connections: (a) distinct
#      full-address searches, (e) autocomplete as typed (every prefix of 3 characters or more
#      of 3,000 addresses, one request per keystroke), (d) reverse; the server's RSS after;
#   6. one table, printed and written to $CAIRN_SCALE_DIR/results-DATE-nN.md.
#
# Knobs: CAIRN_SCALE_SECONDS (15 per scenario), CAIRN_SCALE_DIR (target/scale),
# CAIRN_SCALE_BUILD=0 (use the binaries of target/release, or of $CARGO_TARGET_DIR/release, as
# they are), CAIRN_SCALE_REIMPORT=1 (import again; it does anyway when the binary changed).
# The data directory is laid out as bench/load.sh's (CAIRN_LOAD_DIR=$CAIRN_SCALE_DIR), so the
# load bench reuses the addresses and the database this script made.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || { echo "usage: bench/scale.sh [ADDRESSES]" >&2; exit 2; }
secs=${CAIRN_SCALE_SECONDS:-15}
seed=42
work=$(realpath -m "${CAIRN_SCALE_DIR:-target/scale}")
bench=scale
# shellcheck source=bench/peers.sh
. bench/peers.sh
need wrk wrk
need curl curl
need python3 python3
need /usr/bin/time time
need pgrep procps

if [ "${CAIRN_SCALE_BUILD:-1}" != 0 ]; then
  log "building (cargo build --release -p cairn-server -p cairn-bench)"
  cargo build --release -q -p cairn-server -p cairn-bench
fi
mkdir -p "$work/bin"
# A copy, so that a build beside the bench cannot swap the binary in the middle of it.
release=${CARGO_TARGET_DIR:-target}/release
cp -f "$release/cairn" "$work/bin/cairn.tmp" && mv -f "$work/bin/cairn.tmp" "$work/bin/cairn"
cairn=$work/bin/cairn

data=$work/n$n
src=$data/addresses.ndjson
db=$data/db
mkdir -p "$data"

# --- 1. data --------------------------------------------------------------------------------
if [ ! -s "$src" ] || [ "$(cat "$data/addresses.stamp" 2>/dev/null)" != "n=$n seed=$seed" ]; then
  log "generating $n addresses"
  python3 datasets/generate.py --addresses "$n" --seed "$seed" --out "$src.tmp"
  mv "$src.tmp" "$src"
  echo "n=$n seed=$seed" >"$data/addresses.stamp"
  rm -f "$data/db.stamp" "$data/import.time"
fi
src_bytes=$(stat -c %s "$src")

# --- 2. import ------------------------------------------------------------------------------
# Again whenever the binary changed: another build may lay its files out otherwise, and its
# import is part of what is measured. (db.stamp is bench/load.sh's, which reuses the database.)
build=$(sha1sum <"$cairn" | cut -c1-16)
if [ -n "${CAIRN_SCALE_REIMPORT:-}" ] || [ ! -s "$data/import.time" ] ||
  [ "$(cat "$data/db.stamp" 2>/dev/null)" != "n=$n seed=$seed" ] ||
  [ "$(cat "$data/import.build" 2>/dev/null)" != "$build" ]; then
  log "importing into $db"
  rm -rf "$db" "$data/db.stamp" "$data/import.build"
  /usr/bin/time -f "%e %M" -o "$data/import.time" "$cairn" import --data "$db" "$src" >"$data/import.out"
  echo "n=$n seed=$seed" >"$data/db.stamp"
  echo "$build" >"$data/import.build"
fi
read -r import_s import_kb <"$data/import.time"
documents=$(sed -n 's/.*generation [0-9]*, \([0-9]*\) documents in total.*/\1/p' "$data/import.out" | tail -n1)

# --- 3. disk --------------------------------------------------------------------------------
mb() { awk -v b="$1" 'BEGIN{printf "%.0f", b / 1048576}'; }
bytes() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
gen=$(find "$db" -maxdepth 1 -name 'gen-*' -type d | sort -V | tail -n1)
[ -n "$gen" ] || die "no generation in $db"
store_b=$(bytes "$db/store.redb")
serving_b=$(bytes "$gen")
parts=$(for f in "$gen"/*; do [ -f "$f" ] || [ -d "$f" ] || continue; printf '%s %s MB, ' "$(basename "$f")" "$(mb "$(bytes "$f")")"; done)
parts=${parts%, }

# --- 4. start: time to the first answer, RSS right after ----------------------------------------
port=$((20000 + RANDOM % 20000))
first_query="/search?q=$(python3 -c 'import json,sys,urllib.parse
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    if d.get("type") == "street":
        print(urllib.parse.quote_plus(d["name"] + " " + str(d.get("city", "")))); break' "$src")"
srv=
trap '[ -z "$srv" ] || kill "$srv" 2>/dev/null || true' EXIT
# start_once LABEL: starts the server, waits for an answer to $first_query, leaves the seconds
# it took in $took and "RSS total / anonymous / file" in MB in $rss; stops it.
start_once() {
  local t0 t1 code=
  t0=$(date +%s.%N)
  "$cairn" serve --data "$db" --listen "127.0.0.1:$port" --cache-bytes 0 >"$data/start-$1.out" 2>"$data/start-$1.err" &
  srv=$!
  for _ in $(seq 1 6000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$first_query" || true)
    [ "$code" = 200 ] && break
    kill -0 "$srv" 2>/dev/null || die "cairn serve stopped: $(cat "$data/start-$1.err")"
    sleep 0.01
  done
  [ "$code" = 200 ] || die "no answer from cairn serve after 60 s"
  t1=$(date +%s.%N)
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
  rss=$(awk '/^VmRSS/ {t = $2} /^RssAnon/ {a = $2} /^RssFile/ {f = $2}
    END {printf "%.0f MB (anonymous %.0f, file pages %.0f)", t / 1024, a / 1024, f / 1024}' "/proc/$srv/status")
  kill "$srv"; wait "$srv" 2>/dev/null || true
  srv=
}
cold="page cache warm (could not drop it)"
sync
# Root may still be refused (a container): then the start is measured warm, and says so.
if [ "$(id -u)" = 0 ] && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
  cold="page cache dropped"
fi
log "start, $cold"
start_once cold
cold_took=$took cold_rss=$rss
log "start, page cache warm"
start_once warm
warm_took=$took warm_rss=$rss

# --- 5. HTTP, cache off -------------------------------------------------------------------------
# The files in the page cache first (not in the server: it maps them later), so that the figures
# are those of a server running for a while, not of one reading its first pages from disk; and a
# warm-up twice as long as a scenario, since the server maps and checks each 4 KiB block of its
# files the first time a query reads it (with a 4 s warm-up at 26M, search's p99 was 28 ms
# instead of 5).
cat "$db/store.redb" "$gen/docs" "$gen/geo" "$gen"/text/* >/dev/null 2>&1 || true
log "bench/load.sh: search, typed, reverse; cache off; 16 connections; ${secs} s each"
CAIRN_LOAD_DIR=$work CAIRN_LOAD_DOCS=$n CAIRN_LOAD_SEED=$seed CAIRN_LOAD_BUILD=0 CAIRN_LOAD_BIN_DIR="$release" \
  CAIRN_LOAD_SECONDS=$secs CAIRN_LOAD_WARMUP=$((secs * 2)) CAIRN_LOAD_CONNECTIONS=16 \
  CAIRN_LOAD_LATENCY_CONNECTIONS=0 CAIRN_LOAD_SCENARIOS="search typed reverse" \
  CAIRN_LOAD_SERVE_ARGS="--cache-bytes 0" bench/load.sh >"$data/load.out" 2>"$data/load.err" ||
  { tail -n 20 "$data/load.err" >&2; die "bench/load.sh failed"; }
load_table=$(sed -n '/^| scenario/,/^$/p' "$data/load.out")
rss_after=$(sed -n 's/^Server RSS after the scenarios: \(.*\)\.$/\1/p' "$data/load.out")

# --- 6. table -----------------------------------------------------------------------------------
results=$work/results-$(date +%F-%H%M%S)-n$n.md
{
  echo "### Scale bench, $n addresses, $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "\`bench/scale.sh $n\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown),"
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); wrk on the same cores."
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| source | ${documents:-?} documents, $(mb "$src_bytes") MB of NDJSON |"
  echo "| import, wall | ${import_s} s |"
  echo "| import, peak RSS | $((import_kb / 1024)) MB |"
  echo "| on disk: store | $(mb "$store_b") MB |"
  echo "| on disk: serving files | $(mb "$serving_b") MB ($parts) |"
  echo "| on disk: store + serving files | $(mb $((store_b + serving_b))) MB |"
  echo "| first answer after start, $cold | ${cold_took} s; RSS then $cold_rss |"
  echo "| first answer after start, page cache warm | ${warm_took} s; RSS then $warm_rss |"
  echo "| server RSS after the HTTP scenarios | $rss_after |"
  echo
  echo "HTTP, response cache off, wrk -c16 (bench/load.sh):"
  echo
  echo "$load_table"
} >"$results"
echo
cat "$results"
log "written to $results"
