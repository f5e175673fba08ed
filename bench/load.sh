#!/usr/bin/env bash
# End-to-end load bench (issue 4): cairn over HTTP on 127.0.0.1, driven by wrk, against a bare
# hyper server returning a body of the same size as the ceiling of this machine.
#
#   bench/load.sh                                  1M addresses, 15 s per scenario
#   CAIRN_LOAD_DOCS=100000 CAIRN_LOAD_SECONDS=5 bench/load.sh
#
# Scenarios: (a) search: distinct full-address queries, never a cache hit; (b) autocomplete:
# distinct prefixes; (c) mix: a Zipf-distributed mix with repeats (cache hits); (d) reverse:
# distinct points near addresses; then bare: src/bin/bare.rs with the median body size of (a).
# Prints a table and writes it to $CAIRN_LOAD_DIR/results-<date>.md. See bench/load/README.md.
#
# Knobs (environment): CAIRN_LOAD_DOCS (1000000), CAIRN_LOAD_SECONDS (15), CAIRN_LOAD_WARMUP
# (5, seconds of warm-up traffic), CAIRN_LOAD_WRK_THREADS (2), CAIRN_LOAD_CONNECTIONS (64),
# CAIRN_LOAD_SERVER_THREADS (number of cores), CAIRN_LOAD_LATENCY_CONNECTIONS (16; 0 skips the
# second run of (a) at that concurrency, for its latency), CAIRN_LOAD_SCENARIOS ("search autocomplete mix
# reverse"), CAIRN_LOAD_DIR (target/load), CAIRN_LOAD_REIMPORT=1 (import again),
# CAIRN_LOAD_SERVE_ARGS (extra `cairn serve` flags), CAIRN_LOAD_SEED (42), CAIRN_LOAD_BUILD=0
# (use the binaries already in target/release), CAIRN_LOAD_POOL (100000) and CAIRN_LOAD_ZIPF (1.0):
# the distinct requests behind the mix and the exponent of their Zipf weights,
# CAIRN_LOAD_PREPARE_ONLY=1 (generate, import and write the request files, then stop),
# CAIRN_LOAD_BIN_DIR (target/release; with CAIRN_LOAD_BUILD=0, the cairn and bare binaries of
# another build, to compare two builds in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

n=${CAIRN_LOAD_DOCS:-1000000}
secs=${CAIRN_LOAD_SECONDS:-15}
warm=${CAIRN_LOAD_WARMUP:-5}
wrk_threads=${CAIRN_LOAD_WRK_THREADS:-2}
conns=${CAIRN_LOAD_CONNECTIONS:-64}
lat_conns=${CAIRN_LOAD_LATENCY_CONNECTIONS:-16}
[[ "$lat_conns" =~ ^[0-9]+$ ]] || { echo "CAIRN_LOAD_LATENCY_CONNECTIONS must be a number" >&2; exit 2; }
# wrk needs at least one connection per thread.
if [ "$lat_conns" -gt 0 ] && [ "$lat_conns" -lt "$wrk_threads" ]; then lat_conns=$wrk_threads; fi
srv_threads=${CAIRN_LOAD_SERVER_THREADS:-$(nproc)}
scenarios=${CAIRN_LOAD_SCENARIOS:-search autocomplete mix reverse}
seed=${CAIRN_LOAD_SEED:-42}
work=${CAIRN_LOAD_DIR:-target/load}
serve_args=${CAIRN_LOAD_SERVE_ARGS:-}
pool=${CAIRN_LOAD_POOL:-100000}
zipf=${CAIRN_LOAD_ZIPF:-1.0}
mkdir -p "$work" && work=$(cd "$work" && pwd)

log() { printf '[load] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- stop everything we started, whatever happens ------------------------------------------
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. tools and binaries -----------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt)"
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null; }
  command -v wrk >/dev/null || die "could not install wrk"
fi
command -v python3 >/dev/null || die "python3 is needed"
# /usr/bin/time (import and wrk CPU) and pgrep (wrk's own CPU) are not in every Debian image.
for pkg in time:/usr/bin/time procps:pgrep; do
  if ! command -v "${pkg#*:}" >/dev/null; then
    log "installing ${pkg%%:*} (apt)"
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkg%%:*}"; } >/dev/null ||
      die "could not install ${pkg%%:*}"
  fi
done
command -v stdbuf >/dev/null || die "stdbuf (coreutils) is needed"
if [ "${CAIRN_LOAD_BUILD:-1}" != 0 ]; then
  log "building (cargo build --release -p cairn-server -p cairn-bench)"
  cargo build --release -q -p cairn-server -p cairn-bench
fi
# Copies, so that a build running beside the bench cannot swap a binary in the middle of it.
mkdir -p "$work/bin"
bindir=${CAIRN_LOAD_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
for b in cairn bare; do
  [ -x "$bindir/$b" ] || die "no $bindir/$b: build it first"
  cp -f "$bindir/$b" "$work/bin/$b.tmp" && mv -f "$work/bin/$b.tmp" "$work/bin/$b"
done
cairn=$work/bin/cairn
bare=$work/bin/bare

# --- 2. data: generate and import once per size --------------------------------------------
data=$work/n$n
mkdir -p "$data"
src=$data/addresses.ndjson
db=$data/db
if [ ! -s "$src" ] || [ "$(cat "$data/addresses.stamp" 2>/dev/null)" != "n=$n seed=$seed" ]; then
  log "generating $n addresses"
  python3 datasets/generate.py --addresses "$n" --seed "$seed" --out "$src.tmp"
  mv "$src.tmp" "$src"
  echo "n=$n seed=$seed" >"$data/addresses.stamp"
  rm -f "$data/db.stamp"
fi
import_db() {
  log "importing into $db"
  rm -rf "$db" "$data/db.stamp"
  /usr/bin/time -f "import: wall %e s, peak RSS %M KB" "$cairn" import --data "$db" "$src" 2>&1 | tail -n 3 >&2
  echo "n=$n seed=$seed" >"$data/db.stamp"
}
if [ -n "${CAIRN_LOAD_REIMPORT:-}" ] || [ "$(cat "$data/db.stamp" 2>/dev/null)" != "n=$n seed=$seed" ]; then
  import_db
fi

# --- 3. request files ------------------------------------------------------------------------
# (a) and (b) need a distinct line for every request: 20,000 req/s of margin per second.
distinct=$((secs * 20000 > 50000 ? secs * 20000 : 50000))
reverse_lines=$((secs * 80000 > 200000 ? secs * 80000 : 200000))
gen_hash=$(cat bench/load/make_requests.py | sha1sum | cut -c1-10)
req=$data/requests-$secs-p$pool-z$zipf-$gen_hash
if [ ! -s "$req/warmup.txt" ]; then
  log "writing request files into $req"
  rm -rf "$req.tmp" && mkdir -p "$req.tmp"
  python3 bench/load/make_requests.py --source "$src" --out "$req.tmp" --seed "$seed" \
    --distinct "$distinct" --reverse "$reverse_lines" --pool "$pool" --zipf "$zipf" 2>&1 | tee "$req.tmp/make_requests.log" >&2
  mv "$req.tmp" "$req"
fi

if [ -n "${CAIRN_LOAD_PREPARE_ONLY:-}" ]; then
  log "data, database and request files ready in $data"
  exit 0
fi

# --- helpers ---------------------------------------------------------------------------------
# start_server NAME CMD...: runs CMD in the background, waits for its "listening on" line,
# sets $url and $server_pid.
start_server() {
  local name=$1 out=$data/$1.stdout
  shift
  : >"$out"
  "$@" >"$out" 2>"$data/$name.stderr" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 600); do
    grep -q 'listening on http://' "$out" && break
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  url=$(sed -n '1s/.*listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$out")
  [ -n "$url" ] || return 1
  python3 bench/load/probe.py wait "$url" 30
}
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
child() { [ -n "$1" ] && pgrep -x -P "$1" "$2" | head -n1; return 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

# run_wrk LABEL FILE SECONDS [CONNECTIONS]: one wrk run (at $conns connections unless given);
# leaves the RESULT line in $result and the wrk CPU seconds in $wrk_cpu, and the server CPU
# seconds in $srv_cpu.
run_wrk() {
  local label=$1 file=$2 d=$3 c=${4:-$conns} out=$data/wrk-$1.out t0 t1 w0= wpid wp
  t0=$(cpu_ticks "$server_pid")
  # stdbuf: wrk writes "Running" through stdio, which holds it until exit
  # when stdout is a file; line buffering lets the loop below see it.
  timeout $((d + 60)) /usr/bin/time -f "%U %S" -o "$data/wrk-$label.time" \
    stdbuf -oL wrk -t "$wrk_threads" -c "$c" -d "${d}s" --timeout 5s -s bench/load/paths.lua "$url" \
    -- "$file" "$wrk_threads" >"$out" 2>&1 &
  wpid=$!
  pids+=("$wpid")
  # wrk prints "Running" once every thread has loaded the file: its CPU until then is not
  # part of the measured run.
  for _ in $(seq 1 1200); do
    if grep -q '^Running' "$out" 2>/dev/null; then
      wp=$(child "$(child "$wpid" time)" wrk)
      [ -z "$wp" ] || w0=$(cpu_ticks "$wp" 2>/dev/null || true)
      break
    fi
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.05
  done
  wait "$wpid" || { cat "$out" >&2; die "wrk failed ($label)"; }
  t1=$(cpu_ticks "$server_pid")
  result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "no RESULT from wrk ($label)"; }
  wrk_cpu=$(awk -v w0="${w0:-0}" -v t="$tck" '{printf "%.2f", $1 + $2 - w0 / t}' "$data/wrk-$label.time")
  srv_cpu=$(awk -v a="$t0" -v b="$t1" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}')
  kill -0 "$server_pid" 2>/dev/null || die "the server died during $label (see $data/*.stderr)"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $result"; }

declare -A row_rps row_p50 row_p99 row_p999 row_err row_non2xx row_hit row_srv row_wrk row_wrap
record() { # record NAME HITS_BEFORE MISSES_BEFORE HITS_AFTER MISSES_AFTER
  local name=$1 req_n
  req_n=$(field requests)
  row_rps[$name]=$(field rps)
  row_p50[$name]=$(awk -v v="$(field p50_us)" 'BEGIN{printf "%.2f", v / 1000}')
  row_p99[$name]=$(awk -v v="$(field p99_us)" 'BEGIN{printf "%.2f", v / 1000}')
  row_p999[$name]=$(awk -v v="$(field p999_us)" 'BEGIN{printf "%.2f", v / 1000}')
  row_err[$name]=$(($(field connect) + $(field read) + $(field write) + $(field timeout)))
  row_non2xx[$name]=$(field status)
  row_wrap[$name]=$(field wrapped)
  if [ $(($4 + $5 - $2 - $3)) -gt 0 ]; then
    row_hit[$name]=$(awk -v h=$(($4 - $2)) -v m=$(($5 - $3)) 'BEGIN{printf "%.1f %%", 100 * h / (h + m)}')
  else
    row_hit[$name]="-"
  fi
  row_srv[$name]=$(awk -v c="$srv_cpu" -v r="$req_n" 'BEGIN{printf "%.1f", r ? c * 1e6 / r : 0}')
  row_wrk[$name]=$(awk -v c="$wrk_cpu" -v r="$req_n" 'BEGIN{printf "%.1f", r ? c * 1e6 / r : 0}')
}

# --- 4. cairn ----------------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date '+%Y-%m-%d %H:%M:%S %Z')
serve() {
  # shellcheck disable=SC2086
  start_server cairn "$cairn" serve --data "$db" --listen 127.0.0.1:0 --threads "$srv_threads" $serve_args
}
if ! serve; then
  log "cairn did not start:"; sed 's/^/  /' "$data/cairn.stderr" >&2
  log "importing again (the database may come from an older build) and retrying"
  stop_server; import_db; serve || { sed 's/^/  /' "$data/cairn.stderr" >&2; die "cairn did not start"; }
fi
log "cairn: $(head -n1 "$data/cairn.stdout")"

declare -A size
for s in $scenarios; do
  [ -s "$req/$s.txt" ] || die "unknown scenario $s (have: search autocomplete mix reverse typed)"
  line=$(python3 bench/load/probe.py sizes "$url" "$req/$s.sample.txt")
  size[$s]=$line
  log "response sizes, $s: $line"
done
size_a=$(sed -n 's/^median=\([0-9]*\).*/\1/p' <<<"${size[search]:-median=300}")

if [ "$warm" -gt 0 ]; then
  log "warm-up: ${warm} s of distinct mixed requests"
  run_wrk warmup "$req/warmup.txt" "$warm"
  log "warm-up: $(field rps) req/s"
fi

for s in $scenarios; do
  read -r h0 m0 _ < <(python3 bench/load/probe.py health "$url")
  log "$s: ${secs} s, wrk -t$wrk_threads -c$conns, server --threads $srv_threads"
  run_wrk "$s" "$req/$s.txt" "$secs"
  read -r h1 m1 _ < <(python3 bench/load/probe.py health "$url")
  record "$s" "$h0" "$m0" "$h1" "$m1"
  log "$s: $(field rps) req/s, p50 ${row_p50[$s]} ms, p99 ${row_p99[$s]} ms, hits ${row_hit[$s]}"
done
cache_final=$(python3 bench/load/probe.py health "$url")
rss_after=$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status")
stop_server

# --- 4b. (a) again at fewer connections, for its latency ---------------------------------------
# A closed loop keeps every connection waiting on one request: at saturation the mean latency is
# connections / throughput (64 / 10,000 req/s = 6.4 ms), so a p99 target has to be read at a
# stated, lower concurrency. A fresh server (empty cache) and the same warm-up as the first run.
extra=
if [ "$lat_conns" -gt 0 ] && [[ " $scenarios " == *" search "* ]]; then
  serve || { sed 's/^/  /' "$data/cairn.stderr" >&2; die "cairn did not start again"; }
  [ "$warm" -gt 0 ] && run_wrk warmup-latency "$req/warmup.txt" "$warm"
  read -r h0 m0 _ < <(python3 bench/load/probe.py health "$url")
  log "search-latency: ${secs} s, wrk -t$wrk_threads -c$lat_conns"
  run_wrk search-latency "$req/search.txt" "$secs" "$lat_conns"
  read -r h1 m1 _ < <(python3 bench/load/probe.py health "$url")
  record search-latency "$h0" "$m0" "$h1" "$m1"
  log "search-latency: $(field rps) req/s, p50 ${row_p50[search-latency]} ms, p99 ${row_p99[search-latency]} ms"
  stop_server
  extra=search-latency
fi

# --- 5. bare hyper, same wrk settings, body of (a)'s median size ------------------------------
start_server bare "$bare" --body-bytes "$size_a" --threads "$srv_threads" --listen 127.0.0.1:0 ||
  { cat "$data/bare.stderr" >&2; die "bare did not start"; }
log "bare: $(head -n1 "$data/bare.stdout")"
# The same file as the mix, so that the client does the same work per request.
bare_file=$req/mix.txt
[ "$warm" -gt 0 ] && run_wrk bare-warmup "$bare_file" "$(((warm + 1) / 2))"
run_wrk bare "$bare_file" "$secs"
record bare 0 0 0 0
row_wrap[bare]=0
# The machine's own latency floor at the second (a) row's concurrency: wrk and the server share
# the cores, and the scheduler alone gives a server that does nothing a p99 of several ms.
bare_extra=
if [ -n "$extra" ]; then
  run_wrk bare-latency "$bare_file" "$secs" "$lat_conns"
  record bare-latency 0 0 0 0
  row_wrap[bare-latency]=0
  bare_extra=bare-latency
fi
stop_server
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 6. table ----------------------------------------------------------------------------------
ceiling=${row_rps[bare]}
target() {
  case $1 in
    search) echo ">= 10,000 req/s, p99 < 5 ms" ;;
    typed) echo ">= 10,000 req/s, p99 < 5 ms" ;;
    search-latency) echo "p99 < 5 ms" ;;
    mix) echo ">= 70 % of bare" ;;
    reverse) echo ">= 50,000 req/s" ;;
    *) echo "" ;;
  esac
}
label() {
  case $1 in
    search) echo "(a) search, distinct" ;;
    search-latency) echo "(a) search, distinct, $lat_conns connections" ;;
    autocomplete) echo "(b) autocomplete, distinct" ;;
    typed) echo "(e) autocomplete as typed, every prefix" ;;
    mix) echo "(c) mix with repeats" ;;
    reverse) echo "(d) reverse, distinct" ;;
    bare) echo "bare hyper (ceiling)" ;;
    bare-latency) echo "bare hyper, $lat_conns connections (latency floor)" ;;
  esac
}
thousands() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- engine server 2>/dev/null | grep -q . && echo " (engine/server modified)" || true)
stamp=$(date '+%Y-%m-%d-%H%M%S')
results=$work/results-$stamp.md
{
  echo "### Load bench, $started"
  echo
  echo "\`bench/load.sh\` at commit $commit$dirty: $n generated addresses (seed $seed), ${secs} s per"
  echo "scenario after ${warm} s of warm-up; wrk $(wrk -v 2>&1 | head -n1 | cut -d' ' -f2) \`-t$wrk_threads -c$conns\`, server and"
  echo "bare \`--threads $srv_threads\`, all on this machine ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))."
  echo "Load average before the run $load_before, after $load_after."
  echo
  if [ -n "$extra" ]; then
    echo "Connections: $conns, and $lat_conns for the second (a) row (see bench/load/README.md)."
    echo
  fi
  echo "| scenario | req/s | p50 ms | p99 ms | p99.9 ms | errors / non-2xx | cache hits | server CPU µs/req | wrk CPU µs/req | vs bare | target |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for s in $scenarios $extra bare $bare_extra; do
    ratio=$(awk -v a="${row_rps[$s]}" -v b="$ceiling" 'BEGIN{printf "%.1f %%", (b > 0 ? 100 * a / b : 0)}')
    note=
    [ "${row_wrap[$s]}" = 1 ] && [ "$s" != mix ] && note=" (file wrapped: some repeats)"
    printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s |\n' "$(label "$s")$note" \
      "$(thousands "${row_rps[$s]}")" "${row_p50[$s]}" "${row_p99[$s]}" "${row_p999[$s]}" \
      "${row_err[$s]}" "${row_non2xx[$s]}" "${row_hit[$s]}" "${row_srv[$s]}" "${row_wrk[$s]}" "$ratio" "$(target "$s")"
  done
  echo
  echo "Server RSS after the scenarios: ${rss_after} MB."
  echo
  echo "Median response sizes (bytes, uncompressed; samples disjoint from the measured files, but for"
  echo "typed, whose short prefixes repeat across addresses):"
  for s in $scenarios; do echo "- $(label "$s"): ${size[$s]}"; done
  echo "- bare: $size_a (the median of (a))"
  echo
  echo "Cache at the end (hits misses evictions entries bytes): $cache_final."
  sed -n 's/^mix: /Mix file: /p' "$req/make_requests.log"
} >"$results"
echo
cat "$results"
echo
log "written to $results"
