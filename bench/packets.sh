#!/usr/bin/env bash
# Issue 17's figures for tracker packets, cairn and PostgreSQL 15 + PostGIS 3 side by side in
# one run, on 127.0.0.1 only: 10M packets (datasets/generate_records.py --kind packets, 5,000
# senders over the 30 days before 2026-12-01), two queries:
#   last hour  a 1x1 degree box and received_at in [hour - 1 h, hour), newest first, 100;
#   latest     the newest packet of each sender in such a box over [hour - 24 h, hour),
#              newest first, 100 (cairn's "collapse": "sender", SQL's DISTINCT ON);
# with a random box (south-west corner lat in [43, 50), lon in [-4, 7), steps of 0.01) and a
# random hour (2026-12-01T00:00Z minus [0, 24 * 29) hours), the same distributions as
# `colltime DIR packets`.
#
#   bench/packets.sh
#   CAIRN_PACKETS_DOCS=200000 CAIRN_PACKETS_SECONDS=5 bench/packets.sh
#
# Steps: generate the records (NDJSON for cairn, the same as CSV with the position as EWKT for
# PostGIS's COPY; kept for the next run); `cairn import` timed with its peak RSS; `colltime`
# (in-process percentiles of both queries); `cairn serve --cache-bytes 0` driven by wrk
# (bench/packets/query.lua, one run per query); then PostgreSQL 15 + PostGIS 3 from Debian's
# packages in a throwaway cluster, the same records COPYed into a geometry(Point, 4326) column,
# the issue's indexes (a GiST on the position, a btree on received_at), ANALYZE; a sanity step
# that asks both sides the same two queries for one fixed box and hour and fails unless they
# give the same number of matches and the same ids in the same order; pgbench over its own
# protocol (bench/packets/last_hour.pgbench, latest.pgbench) with the same number of clients
# and the same duration; then each query again with a multicolumn GiST (btree_gist) added,
# the one that suits it. The ratio is against the faster PostGIS figure.
#
# Knobs: CAIRN_PACKETS_DOCS (10000000), CAIRN_PACKETS_SECONDS (15), CAIRN_PACKETS_CONNECTIONS
# (16), CAIRN_PACKETS_DIR (target/packets), CAIRN_PACKETS_BUILD=0 (use target/release as is).
# PostgreSQL and PostGIS are benchmark peers only: nothing else in cairn needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${CAIRN_PACKETS_DOCS:-10000000}
secs=${CAIRN_PACKETS_SECONDS:-15}
conns=${CAIRN_PACKETS_CONNECTIONS:-16}
work=$(realpath -m "${CAIRN_PACKETS_DIR:-target/packets}")
bench=packets
# shellcheck source=bench/peers.sh
. bench/peers.sh
started_all=$(date +%s)
need wrk wrk
need curl curl
need bc bc
need_postgres
postgis=/usr/share/postgresql/15/extension/postgis.control
[ -f "$postgis" ] || apt_install postgresql-15-postgis-3
[ -f "$postgis" ] || die "could not install postgresql-15-postgis-3"

if [ "${CAIRN_PACKETS_BUILD:-1}" != 0 ]; then
  cargo build --release -q -p cairn-server -p cairn-bench
fi
cairn=$(pwd)/target/release/cairn
colltime=$(pwd)/target/release/colltime
for bin in "$cairn" "$colltime"; do
  [ -x "$bin" ] || die "no $bin: cargo build --release -p cairn-server -p cairn-bench"
done

# One cleanup for every exit: the server and the cluster, whichever is up.
srv=""
pg_up=0
cleanup() {
  if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; fi
  if [ "$pg_up" = 1 ]; then as_pg "$pgbin/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

mkdir -p "$work"
data=$work/n$n
mkdir -p "$data"
if [ ! -s "$data/packets.ndjson" ] || [ ! -s "$data/packets.csv" ]; then
  log "generating $n packets"
  python3 datasets/generate_records.py --kind packets --count "$n" --out "$data/packets.ndjson.tmp"
  # The generator's CSV has the position as one "lat,lon" column, which no PostGIS type
  # reads; this CSV has it as EWKT, the same doubles (repr round-trips them).
  python3 - "$data/packets.ndjson.tmp" "$data/packets.csv.tmp" <<'PY'
import csv, json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8", newline="") as dst:
    w = csv.writer(dst, lineterminator="\n")
    w.writerow(["id", "sender", "received_at", "position", "temperature", "humidity", "pressure", "battery"])
    for line in src:
        r = json.loads(line)
        p = r["position"]
        w.writerow([r["id"], r["sender"], r["received_at"], f"SRID=4326;POINT({p['lon']!r} {p['lat']!r})",
                    r["temperature"], r["humidity"], r["pressure"], r["battery"]])
PY
  mv "$data/packets.ndjson.tmp" "$data/packets.ndjson"
  mv "$data/packets.csv.tmp" "$data/packets.csv"
fi

log "cairn import"
rm -rf "$data/db"
/usr/bin/time -f "%e %M" -o "$data/import.time" "$cairn" import --data "$data/db" --collection packets \
  --schema datasets/packets.schema.toml "$data/packets.ndjson" >"$data/import.out"
read -r import_s import_kb <"$data/import.time"
cat "$data/import.out"
cairn_mb=$(( $(du -sk "$data/db" | cut -f1) / 1024 ))

log "in-process percentiles (colltime)"
"$colltime" "$data/db" packets 2000 | tee "$data/colltime.out"
# colltime_field NAME-PREFIX FIELD: p50 or p99 (ms) of one of colltime's lines.
colltime_field() {
  awk -v name="$1" -v f="$2" 'index($0, name) == 1 { for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }' "$data/colltime.out"
}
ct_hour_p50=$(colltime_field "bbox 1x1 deg + last hour" p50)
ct_hour_p99=$(colltime_field "bbox 1x1 deg + last hour" p99)
ct_latest_p50=$(colltime_field "latest of each sender" p50)
ct_latest_p99=$(colltime_field "latest of each sender" p99)

# The sanity step's fixed parameters, the same on both sides: the box whose south-west corner
# is (48.50, 2.00), around Paris, and the last hour (day) before 2026-12-01T00:00Z:
# la = 550, lo = 600, h = 0 in the pgbench scripts' terms.
t_end=1796083200
sane_box='"bbox":{"position":{"west":2.00,"south":48.50,"east":3.00,"north":49.50}}'
# sane_body WINDOW-SECONDS MORE: the sanity query's JSON, MORE being its other keys.
sane_body() {
  printf '{"filter":{"and":[{%s},{"range":{"received_at":{"gte":%d,"lt":%d}}}]},"sort":["received_at:desc"],%s}' \
    "$sane_box" $((t_end - $1)) "$t_end" "$2"
}

port=$((20000 + RANDOM % 20000))
log "cairn serve on 127.0.0.1:$port, cache off"
"$cairn" serve --data "$data/db" --listen "127.0.0.1:$port" --cache-bytes 0 >"$data/serve.out" 2>"$data/serve.err" &
srv=$!
for _ in $(seq 1 600); do grep -q listening "$data/serve.out" 2>/dev/null && break; sleep 0.2; done
grep -q listening "$data/serve.out" || die "cairn serve did not start: $(cat "$data/serve.err")"
url="http://127.0.0.1:$port"
for shape in last_hour latest; do
  wrk -t 2 -c "$conns" -d 3s -s bench/packets/query.lua "$url" -- "$shape" >/dev/null
  wrk -t 2 -c "$conns" -d "${secs}s" --latency -s bench/packets/query.lua "$url" -- "$shape" | tee "$data/wrk-$shape.out"
  ! grep -q "Non-2xx" "$data/wrk-$shape.out" || die "cairn answered errors to $shape (see $data/wrk-$shape.out)"
done
# The sanity queries' answers, compared with PostGIS's once it is loaded: the number of
# matches (before collapse) asked apart, as "total" takes another path than the hits alone.
for shape in last_hour latest; do
  if [ "$shape" = latest ]; then window=86400 collapse=',"collapse":"sender"'; else window=3600 collapse=""; fi
  { for more in '"limit":0,"total":true' '"limit":100,"fields":["id"]'"$collapse"; do
      body=$(sane_body "$window" "$more")
      curl -sf -H 'Content-Type: application/json' -d "$body" "$url/collections/packets/query" || die "cairn refused $body"
      echo
    done; } >"$data/sane-cairn-$shape.json"
  python3 -c '
import json, sys
count, ids = (json.loads(line) for line in open(sys.argv[1]))
print(count["total"])
for h in ids["hits"]:
    print(h["id"])' "$data/sane-cairn-$shape.json" >"$data/sane-cairn-$shape.txt"
done
kill "$srv"; wait "$srv" 2>/dev/null || true
srv=""
wrk_field() { # wrk_field SHAPE rps|p50|p99
  case $2 in
    rps) awk '/Requests\/sec/ {print $2}' "$data/wrk-$1.out" ;;
    p50) awk '$1 == "50%" {print $2}' "$data/wrk-$1.out" ;;
    p99) awk '$1 == "99%" {print $2}' "$data/wrk-$1.out" ;;
  esac
}

log "PostgreSQL 15 + PostGIS 3: a throwaway cluster"
pg=$work/pg
rm -rf "$pg"; mkdir -p "$pg"; chown postgres "$pg" "$data"; chmod a+r "$data/packets.csv"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$pgbin/initdb" -D "$pg/data" -A trust -U postgres >/dev/null
pgport=$((port + 1))
# shared_buffers 2 GB: the table and its indexes at 10M (about 3 GB) mostly fit, the rest is in
# the page cache as cairn's files are.
as_pg "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w -o "-p $pgport -k $pg -c listen_addresses=127.0.0.1 -c shared_buffers=2GB -c max_connections=200" start >/dev/null
pg_up=1
psql_() { psql -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
since() { printf '%.2f' "$(echo "$(date +%s.%N) - $1" | bc)"; }
psql_ -c "CREATE EXTENSION postgis" -c "CREATE EXTENSION btree_gist"
started=$(date +%s.%N)
# The indexes of the issue: the primary key as cairn's (id), a GiST on the position for the
# box, a btree on received_at for the window and the order; the planner ANDs their bitmaps.
psql_ <<SQL
CREATE TABLE packets (id text PRIMARY KEY, sender text NOT NULL, received_at timestamptz NOT NULL,
  position geometry(Point, 4326) NOT NULL, temperature float8, humidity float8, pressure float8, battery int);
\copy packets FROM '$data/packets.csv' WITH (FORMAT csv, HEADER true)
CREATE INDEX packets_position ON packets USING gist (position);
CREATE INDEX packets_received_at ON packets (received_at);
ANALYZE packets;
SQL
pg_load_s=$(since "$started")
pg_mb=$(psql_ -At -c "SELECT pg_database_size(current_database()) / 1048576")

# pg_sql SHAPE [exact]: the pgbench script's SQL, its la, lo and h left to psql's -v. With
# "exact", the box test is ST_Intersects instead of &&: && compares float4 boxes rounded
# outwards, so it also takes points up to a float4 step (under 1 m here) outside the box.
pg_sql() {
  if [ "${2:-}" = exact ]; then
    grep -v '^\\set' "bench/packets/$1.pgbench" \
      | sed 's/position && ST_MakeEnvelope(/ST_Intersects(position, ST_MakeEnvelope(/; s/, 4326)/, 4326))/'
  else
    grep -v '^\\set' "bench/packets/$1.pgbench"
  fi
}
# plan SHAPE SETUP: the indexes the prepared (generic) plan of the shape's query scans.
plan() {
  { echo "SET plan_cache_mode = force_generic_plan; PREPARE q(int, int, int) AS"
    # shellcheck disable=SC2016 # $1..$3 are PREPARE's parameters
    pg_sql "$1" | sed 's/:la/$1/g; s/:lo/$2/g; s/:h/$3/g'
    echo "EXPLAIN (COSTS OFF) EXECUTE q(550, 600, 0);"
  } | psql_ -At >"$data/plan-$2-$1.txt"
  grep -oE 'Index (Only )?Scan (using|on) [a-z_]+' "$data/plan-$2-$1.txt" | awk '{print $NF}' | sort -u | paste -sd + -
}

log "sanity: the same fixed queries on both sides"
for shape in last_hour latest; do
  if [ "$shape" = latest ]; then window=86400; else window=3600; fi
  for kind in exact bench; do
    if [ $kind = exact ]; then box="ST_Intersects(position, ST_MakeEnvelope(2, 48.5, 3, 49.5, 4326))"
    else box="position && ST_MakeEnvelope(2, 48.5, 3, 49.5, 4326)"; fi
    # Every match, not only the first 100 (cairn's "total" counts them before collapse).
    { psql_ -At -c "SELECT count(*) FROM packets WHERE $box
        AND received_at >= to_timestamp($((t_end - window))) AND received_at < to_timestamp($t_end)"
      if [ $kind = exact ]; then pg_sql "$shape" exact; else pg_sql "$shape"; fi \
        | psql_ -At -F '|' -v la=550 -v lo=600 -v h=0 | cut -d '|' -f 1; } >"$data/sane-pg-$kind-$shape.txt"
  done
  c_total=$(head -1 "$data/sane-cairn-$shape.txt"); p_total=$(head -1 "$data/sane-pg-exact-$shape.txt")
  c_rows=$(($(wc -l <"$data/sane-cairn-$shape.txt") - 1)); p_rows=$(($(wc -l <"$data/sane-pg-exact-$shape.txt") - 1))
  log "$shape: matches cairn $c_total, PostGIS $p_total; rows returned cairn $c_rows, PostGIS $p_rows"
  cmp -s "$data/sane-cairn-$shape.txt" "$data/sane-pg-exact-$shape.txt" \
    || die "$shape: cairn and PostGIS disagree: diff $data/sane-cairn-$shape.txt $data/sane-pg-exact-$shape.txt"
  [ "$c_rows" -gt 0 ] || log "warning: $shape: no rows at all for the fixed parameters (too few packets?)"
  cmp -s "$data/sane-pg-exact-$shape.txt" "$data/sane-pg-bench-$shape.txt" \
    || log "note: $shape: the benchmarked SQL's && takes points on the box's float4 edge as well: diff $data/sane-pg-exact-$shape.txt $data/sane-pg-bench-$shape.txt"
done

pgb() { # pgb SHAPE SETUP: a 3 s warm-up, then the measured run
  pgbench -h 127.0.0.1 -p "$pgport" -U postgres -n -M prepared --random-seed=42 -c "$conns" -j 2 -T 3 \
    -f "bench/packets/$1.pgbench" postgres >/dev/null
  pgbench -h 127.0.0.1 -p "$pgport" -U postgres -n -M prepared --random-seed=42 -c "$conns" -j 2 -T "$secs" \
    -f "bench/packets/$1.pgbench" postgres | tee "$data/pgbench-$2-$1.out"
}
declare -A uses
for shape in last_hour latest; do
  uses[plain-$shape]=$(plan "$shape" plain)
  log "PostGIS, GiST + btree, $shape (plan: ${uses[plain-$shape]})"
  pgb "$shape" plain
done
# Then each query with the multicolumn GiST (btree_gist) that suits it best, alone beside the
# issue's indexes: (received_at, position) for the last hour, whose window is the narrower
# test, (position, received_at) for the last day, where the box is. (With both at once the
# planner cannot tell them apart and takes one for both queries.)
declare -A built
for shape in last_hour latest; do
  if [ "$shape" = latest ]; then cols="position, received_at"; else cols="received_at, position"; fi
  index=packets_$(echo "$cols" | tr -d ' ' | tr , _)
  started=$(date +%s.%N)
  psql_ -c "CREATE INDEX $index ON packets USING gist ($cols)"
  built[$shape]="GiST ($cols) $(since "$started") s, $(psql_ -At -c "SELECT pg_relation_size('$index') / 1048576") MB"
  uses[tuned-$shape]=$(plan "$shape" tuned)
  log "PostGIS, + GiST ($cols), $shape (plan: ${uses[tuned-$shape]})"
  pgb "$shape" tuned
  psql_ -c "DROP INDEX $index"
done
as_pg "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null
pg_up=0

pg_field() { # pg_field SETUP SHAPE tps|lat
  case $3 in
    tps) awk '/^tps/ {printf "%.0f", $3}' "$data/pgbench-$1-$2.out" ;;
    lat) awk '/latency average/ {print $4}' "$data/pgbench-$1-$2.out" ;;
  esac
}
ratio() { # ratio SHAPE SETUP
  echo "scale=2; $(wrk_field "$1" rps) / $(pg_field "$2" "$1" tps)" | bc
}
row() { # row SHAPE LABEL
  local best=plain
  [ "$(pg_field tuned "$1" tps)" -gt "$(pg_field plain "$1" tps)" ] && best=tuned
  echo "| $2 | $(wrk_field "$1" rps) req/s, p50 $(wrk_field "$1" p50), p99 $(wrk_field "$1" p99)" \
    "| $(pg_field plain "$1" tps) tps, mean latency $(pg_field plain "$1" lat) ms" \
    "| $(pg_field tuned "$1" tps) tps, mean latency $(pg_field tuned "$1" lat) ms (plan: ${uses[tuned-$1]})" \
    "| $(ratio "$1" "$best") x (against the GiST + btree: $(ratio "$1" plain) x) |"
}
cat <<EOF2 | tee "$work/results-$(date +%F)-n$n.md"

| $n packets, $conns clients, ${secs} s | cairn (HTTP, wrk, cache off) | PostgreSQL 15 + PostGIS 3 (pgbench, prepared), GiST (position) + btree (received_at) | the same + the query's multicolumn GiST | cairn / the faster PostGIS |
|---|---|---|---|---|
| load | import ${import_s} s, peak RSS $((import_kb / 1024)) MB | COPY + indexes + ANALYZE ${pg_load_s} s | ${built[last_hour]}; ${built[latest]} | |
| on disk | ${cairn_mb} MB | ${pg_mb} MB | | |
$(row last_hour "1x1 deg box + last hour, newest 100")
$(row latest "latest of each sender, box + last day, 100 (SQL: DISTINCT ON)")
| in process (colltime, 2000 / 500 queries) | last hour p50 ${ct_hour_p50} ms, p99 ${ct_hour_p99}; latest p50 ${ct_latest_p50} ms, p99 ${ct_latest_p99} | | | |
EOF2
log "done in $(( $(date +%s) - started_all )) s"
