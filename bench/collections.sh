#!/usr/bin/env bash
# Issue 17's figures for collections, cairn and PostgreSQL 15 side by side in one run, on
# 127.0.0.1 only: 1M business verifications (datasets/generate_records.py --kind
# verifications), the query "status = X and created_at in [t1, t1 + 7 days) order by
# created_at desc limit 50" with a random status and window.
#
#   bench/collections.sh
#   CAIRN_COLL_DOCS=100000 CAIRN_COLL_SECONDS=5 bench/collections.sh
#
# Steps: generate the records (NDJSON for cairn, the same as CSV for PostgreSQL's COPY);
# `cairn import` timed with its peak RSS; `colltime` (in-process percentiles of the query
# kinds); `cairn serve --cache-bytes 0` driven by wrk (bench/collections/query.lua); then
# PostgreSQL 15 from Debian's packages in a throwaway cluster, the same records COPYed, a
# composite index (status, created_at), driven by pgbench over its own protocol with the same
# query mix (bench/collections/query.pgbench) and the same number of clients.
#
# Knobs: CAIRN_COLL_DOCS (1000000), CAIRN_COLL_SECONDS (15), CAIRN_COLL_CONNECTIONS (16),
# CAIRN_COLL_DIR (target/collections), CAIRN_COLL_BUILD=0 (use target/release as is).
# PostgreSQL is a benchmark peer only: nothing else in cairn needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${CAIRN_COLL_DOCS:-1000000}
secs=${CAIRN_COLL_SECONDS:-15}
conns=${CAIRN_COLL_CONNECTIONS:-16}
work=$(realpath -m "${CAIRN_COLL_DIR:-target/collections}")
bench=collections
# shellcheck source=bench/peers.sh
. bench/peers.sh
need wrk wrk
need_postgres

if [ "${CAIRN_COLL_BUILD:-1}" != 0 ]; then
  cargo build --release -q -p cairn-server -p cairn-bench
fi
cairn=$(pwd)/target/release/cairn
colltime=$(pwd)/target/release/colltime

mkdir -p "$work"
data=$work/n$n
mkdir -p "$data"
if [ ! -s "$data/checks.ndjson" ]; then
  log "generating $n records"
  python3 datasets/generate_records.py --kind verifications --count "$n" --out "$data/checks.ndjson"
  python3 datasets/generate_records.py --kind verifications --count "$n" --format csv --out "$data/checks.csv"
fi

log "cairn import"
rm -rf "$data/db"
/usr/bin/time -f "%e %M" -o "$data/import.time" "$cairn" import --data "$data/db" --collection checks \
  --schema datasets/verifications.schema.toml "$data/checks.ndjson" >"$data/import.out"
read -r import_s import_kb <"$data/import.time"
cat "$data/import.out"

log "in-process percentiles (colltime)"
"$colltime" "$data/db" verifications 2000 | tee "$data/colltime.out"

port=$((20000 + RANDOM % 20000))
# serve_wrk OUT [serve flags...]: one server, a 3 s warm-up, then the measured run.
serve_wrk() {
  local out=$1; shift
  "$cairn" serve --data "$data/db" --listen "127.0.0.1:$port" "$@" >"$data/serve.out" 2>"$data/serve.err" &
  srv=$!
  trap 'kill $srv 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do grep -q listening "$data/serve.out" 2>/dev/null && break; sleep 0.2; done
  grep -q listening "$data/serve.out" || die "cairn serve did not start: $(cat "$data/serve.err")"
  wrk -t 2 -c "$conns" -d 3s -s bench/collections/query.lua "http://127.0.0.1:$port" >/dev/null
  wrk -t 2 -c "$conns" -d "${secs}s" --latency -s bench/collections/query.lua "http://127.0.0.1:$port" | tee "$out"
  kill $srv; wait $srv 2>/dev/null || true
  trap - EXIT
}
log "cairn serve on 127.0.0.1:$port, cache off"
serve_wrk "$data/wrk.out" --cache-bytes 0
# The same with the answer cache as shipped: the mix has 4 x 690 distinct queries, so after
# the warm-up most are answered from the cache. Shown apart; the comparison is cache off.
log "cairn serve on 127.0.0.1:$port, default cache"
serve_wrk "$data/wrk-cache.out"
cairn_rps=$(awk '/Requests\/sec/ {print $2}' "$data/wrk.out")
cairn_p50=$(awk '$1 == "50%" {print $2}' "$data/wrk.out")
cairn_p99=$(awk '$1 == "99%" {print $2}' "$data/wrk.out")
cached_rps=$(awk '/Requests\/sec/ {print $2}' "$data/wrk-cache.out")
cached_p99=$(awk '$1 == "99%" {print $2}' "$data/wrk-cache.out")

log "PostgreSQL 15: a throwaway cluster"
pg=$work/pg
rm -rf "$pg"; mkdir -p "$pg"; chown postgres "$pg" "$data"; chmod a+r "$data/checks.csv"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$pgbin/initdb" -D "$pg/data" -A trust -U postgres >/dev/null
pgport=$((port + 1))
as_pg "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w -o "-p $pgport -k $pg -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_connections=200" start >/dev/null
trap 'as_pg "$pgbin/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
psql_() { psql -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
started=$(date +%s.%N)
psql_ <<SQL
CREATE TABLE checks (id text PRIMARY KEY, business_id text, status text, created_at timestamptz,
  confidence float8, classification text, source text, note text);
\copy checks FROM '$data/checks.csv' WITH (FORMAT csv, HEADER true)
CREATE INDEX checks_status_created ON checks (status, created_at);
ANALYZE checks;
SQL
pg_load_s=$(echo "$(date +%s.%N) - $started" | bc)
pgbench -h 127.0.0.1 -p "$pgport" -U postgres -n -M prepared -c "$conns" -j 2 -T 3 -f bench/collections/query.pgbench postgres >/dev/null
pgbench -h 127.0.0.1 -p "$pgport" -U postgres -n -M prepared -c "$conns" -j 2 -T "$secs" -f bench/collections/query.pgbench postgres | tee "$data/pgbench.out"
pg_tps=$(awk '/^tps/ {print $3}' "$data/pgbench.out")
pg_lat=$(awk '/latency average/ {print $4}' "$data/pgbench.out")
as_pg "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null
trap - EXIT

ratio=$(echo "scale=2; $cairn_rps / $pg_tps" | bc)
cat <<EOF2 | tee "$work/results-$(date +%F)-n$n.md"

| $n verifications, $conns clients, ${secs} s | cairn (HTTP, wrk, cache off) | PostgreSQL 15 (pgbench, prepared) |
|---|---|---|
| load | import ${import_s} s, peak RSS $((import_kb / 1024)) MB | COPY + index + ANALYZE ${pg_load_s} s |
| status + week, newest 50 | ${cairn_rps} req/s, p50 ${cairn_p50}, p99 ${cairn_p99} | ${pg_tps} tps, mean latency ${pg_lat} ms |
| ratio | ${ratio} x | 1 x |
| same, cairn's default answer cache on | ${cached_rps} req/s, p99 ${cached_p99} | |
EOF2
