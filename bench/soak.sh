#!/usr/bin/env bash
# A server under mixed queries for a long time, and its memory along the way (issue 18: "serving
# RSS under 2.5 GB after an hour of mixed queries").
#
#   bench/soak.sh 26000000           an hour on the database bench/scale.sh made at that size
#   CAIRN_SOAK_MINUTES=5 bench/soak.sh 1000000
#
# Needs bench/scale.sh (or bench/load.sh) to have run at that size first: it reuses its database
# and request files (CAIRN_SOAK_DIR, default target/scale, laid out as theirs). The server runs
# as a user would start it (default settings: response cache on); wrk sends the request files of
# the load bench interleaved (distinct searches, autocomplete, every prefix as typed, reverse, and
# the mix with repeats), one thread, CAIRN_SOAK_CONNECTIONS (8) connections, to 127.0.0.1 only.
# Every minute the server's RSS (anonymous and file pages) is sampled; one table is printed and
# written to $CAIRN_SOAK_DIR/soak-DATE-nN.md.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || { echo "usage: bench/soak.sh [ADDRESSES]" >&2; exit 2; }
minutes=${CAIRN_SOAK_MINUTES:-60}
conns=${CAIRN_SOAK_CONNECTIONS:-8}
work=$(realpath -m "${CAIRN_SOAK_DIR:-target/scale}")
bench=soak
# shellcheck source=bench/peers.sh
. bench/peers.sh
need wrk wrk
need curl curl

data=$work/n$n
db=$data/db
cairn=$work/bin/cairn
[ -x "$cairn" ] && [ -d "$db" ] || die "no database at $db: run bench/scale.sh $n first"
req=$(find "$data" -maxdepth 1 -type d -name 'requests-*' | sort | head -1)
[ -n "$req" ] || die "no request files in $data: run bench/scale.sh $n first"

# One file, the scenarios interleaved line by line.
mixed=$data/soak-requests.txt
python3 - "$req" "$mixed" <<'EOF'
import sys
req, out = sys.argv[1], sys.argv[2]
files = [open(f"{req}/{name}.txt") for name in ("search", "autocomplete", "typed", "reverse", "mix")]
with open(out, "w") as o:
    live = list(files)
    while live:
        for f in list(live):
            line = f.readline()
            if line:
                o.write(line)
            else:
                live.remove(f)
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$cairn" serve --data "$db" --listen "127.0.0.1:$port" >"$data/soak-server.out" 2>"$data/soak-server.err" &
srv=$!
trap 'kill $srv 2>/dev/null || true; kill $wpid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
  kill -0 $srv 2>/dev/null || die "cairn serve stopped: $(cat "$data/soak-server.err")"
  sleep 0.1
done
rss() { awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{printf "%d %d %d\n", r/1024, a/1024, f/1024}' "/proc/$srv/status"; }

log "soak: $minutes min, $conns connections, $(wc -l <"$mixed") request lines, server pid $srv"
wrk -t 1 -c "$conns" -d "$((minutes * 60))s" --timeout 5s -s bench/load/paths.lua "http://127.0.0.1:$port" \
  -- "$mixed" 1 >"$data/soak-wrk.out" 2>&1 &
wpid=$!
rows=()
peak=0
for m in $(seq 1 "$minutes"); do
  sleep 60
  read -r r a f < <(rss)
  [ "$r" -gt "$peak" ] && peak=$r
  rows+=("| $m | $r | $a | $f |")
  log "minute $m: RSS $r MB (anonymous $a, file pages $f)"
done
wait $wpid || die "wrk failed: $(cat "$data/soak-wrk.out")"
result=$(grep '^RESULT ' "$data/soak-wrk.out" || true)
health=$(curl -s "http://127.0.0.1:$port/health")

out=$work/soak-$(date -u +%Y-%m-%d-%H%M%S)-n$n.md
{
  echo "### Soak, $n addresses, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  echo "\`bench/soak.sh $n\` at commit $(git rev-parse --short HEAD), $minutes minutes, wrk -t1 -c$conns over"
  echo "$(wc -l <"$mixed") request lines (search, autocomplete, typed, reverse, mix, interleaved);"
  echo "server with default settings (response cache on); $(nproc) cores; wrk on the same cores."
  echo
  echo "wrk: ${result:-no RESULT line}"
  echo
  echo "health after: $health"
  echo
  echo "Peak RSS sampled: $peak MB"
  echo
  echo "| minute | RSS MB | anonymous MB | file pages MB |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$out"
log "written to $out"
