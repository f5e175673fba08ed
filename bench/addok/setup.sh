#!/usr/bin/env bash
# Runs the peer geocoder, Addok 1.3.2 + addok-fr + addok-france with the Base Adresse
# Nationale (BAN) configuration, on 127.0.0.1 with a private Redis, loaded with a BAN NDJSON
# file, so that `cairn eval --url http://127.0.0.1:7880 ...` can score it beside cairn.
#
#   bench/addok/setup.sh [FILE.ndjson[.gz]]   (default: datasets/fr-sample/addresses.ndjson.gz)
#   bench/addok/stop.sh                        stops gunicorn and redis
#
# Environment: ADDOK_DIR (default /tmp/addok: venv, config, redis dir, logs, pid files),
# ADDOK_PORT (default 7880), ADDOK_REDIS_PORT (default 6390), ADDOK_WORKERS (default 2),
# ADDOK_BATCH_WORKERS (import processes, default 2), ADDOK_FORCE_IMPORT=1 (re-import even if
# the same file and config are already loaded).
# Everything comes from PyPI (pip) and Debian (apt-get); no Addok code lives in this repository.
# Safe to run again: reuses the venv and a live redis, re-imports only when the data or the
# config changed (or redis lost them), and always restarts gunicorn.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${ADDOK_DIR:-/tmp/addok}
port=${ADDOK_PORT:-7880}
rport=${ADDOK_REDIS_PORT:-6390}
workers=${ADDOK_WORKERS:-2}
data=${1:-$here/../../datasets/fr-sample/addresses.ndjson.gz}
# Versions measured in /work/shared/peer/addok-observed.md (Python 3.11). addok 1.3.2 itself
# pins falcon 4.0.2, redis 6.4.0, editdistance 0.8.1, ngram 4.0.3, python-geohash 0.8.5, ...
pins=(addok==1.3.2 addok-fr==1.1.0 addok-france==1.2.0 gunicorn==27.0.1)

log() { printf '[addok-setup] %s\n' "$*" >&2; }
[ -r "$data" ] || { log "no such data file: $data"; exit 2; }
data=$(cd "$(dirname "$data")" && pwd)/$(basename "$data")
mkdir -p "$dir/redis" "$dir/logs"

# --- (a) Redis: Debian package, private instance on 127.0.0.1:$rport -----------------------
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "installing redis-server (apt)"
  apt_install redis-server
fi
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
if [ "$(rcli ping 2>/dev/null)" != PONG ]; then
  log "starting redis-server on 127.0.0.1:$rport"
  redis-server --bind 127.0.0.1 --port "$rport" --dir "$dir/redis" --daemonize yes \
    --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" \
    --save "" --appendonly no --protected-mode yes
  for _ in $(seq 1 50); do [ "$(rcli ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  [ "$(rcli ping 2>/dev/null)" = PONG ] || { log "redis did not start (see $dir/redis/redis.log)"; exit 1; }
fi

# --- (b) Python venv with the pinned packages ------------------------------------------------
venv_ok() {
  [ -x "$dir/venv/bin/addok" ] && [ -x "$dir/venv/bin/gunicorn" ] || return 1
  local frozen; frozen=$("$dir/venv/bin/pip" freeze 2>/dev/null | tr 'A-Z_' 'a-z-')
  for p in "${pins[@]}"; do grep -qx "$(tr 'A-Z_' 'a-z-' <<<"$p")" <<<"$frozen" || return 1; done
}
if ! venv_ok; then
  log "creating venv $dir/venv and installing ${pins[*]}"
  python3 -m venv "$dir/venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$dir/venv"; }
  # python-geohash is an sdist with a C extension: it needs a C compiler and Python headers.
  command -v gcc >/dev/null || apt_install gcc python3-dev
  "$dir/venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  venv_ok || { log "pip install did not give the pinned versions"; exit 1; }
fi

# --- (c) addok.conf: BAN production configuration (our own file, written from the notes) -----
conf=$dir/addok.conf
cat > "$conf.tmp" <<EOF
# Written by bench/addok/setup.sh: the Base Adresse Nationale configuration of Addok
# (attribution, licence, extra fields, filters and processors), Redis on 127.0.0.1:$rport.
REDIS = {
    "host": "127.0.0.1",
    "port": $rport,
    "unix_socket_path": None,
    "indexes": {"db": 0},
    "documents": {"db": 1},
}
ATTRIBUTION = "BAN"
LICENCE = "ODbL 1.0"
EXTRA_FIELDS = [
    {"key": "citycode"},
    {"key": "oldcitycode"},
    {"key": "oldcity"},
]
FILTERS = ["type", "citycode", "postcode"]
QUERY_PROCESSORS_PYPATHS = [
    "addok.helpers.text.check_query_length",
    "addok_france.extract_address",
    "addok_france.clean_query",
    "addok_france.remove_leading_zeros",
]
PROCESSORS_PYPATHS = [
    "addok.helpers.text.tokenize",
    "addok.helpers.text.normalize",
    "addok_france.glue_ordinal",
    "addok_france.fold_ordinal",
    "addok_france.flag_housenumber",
    "addok.helpers.text.synonymize",
    "addok_fr.phonemicize",
]
# As in production: no addok.helpers.results.adjust_scores (which the 1.3 defaults have).
SEARCH_RESULT_PROCESSORS_PYPATHS = [
    "addok.helpers.results.match_housenumber",
    "addok_france.make_labels",
    "addok.helpers.results.score_by_importance",
    "addok.helpers.results.score_by_autocomplete_distance",
    "addok.helpers.results.score_by_ngram_distance",
    "addok.helpers.results.score_by_geo_distance",
]
LOG_DIR = "$dir/logs"
EOF
mv "$conf.tmp" "$conf"
export ADDOK_CONFIG_MODULE=$conf
addok=$dir/venv/bin/addok

# --- (d) import: reset --force, batch, ngrams (skipped when this file + config are loaded) ----
stamp="$(sha256sum "$conf" | cut -c1-16) $(stat -c '%n %s %Y' "$data")"
loaded=$(rcli -n 2 get cairn:loaded 2>/dev/null || true)
if [ "${ADDOK_FORCE_IMPORT:-0}" != 1 ] && [ "$loaded" = "$stamp" ] \
   && [ "$(rcli -n 1 dbsize)" -gt 0 ]; then
  log "already loaded: $data ($(rcli -n 1 dbsize) documents)"
else
  rcli -n 2 del cairn:loaded >/dev/null
  log "importing $data"
  "$addok" reset --force
  # A file, not stdin: `addok batch FILE` leaves edge n-grams to `addok ngrams`, stdin does not.
  case "$data" in
    *.gz) zcat "$data" > "$dir/data.ndjson"; file=$dir/data.ndjson ;;
    *)    file=$data ;;
  esac
  t0=$(date +%s.%N)
  ADDOK_BATCH_WORKERS=${ADDOK_BATCH_WORKERS:-2} "$addok" batch "$file"
  t1=$(date +%s.%N)
  "$addok" ngrams
  t2=$(date +%s.%N)
  log "$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$(rcli -n 1 dbsize)" \
      'BEGIN { printf "batch %.1f s, ngrams %.1f s, %d documents", b - a, c - b, n }')"
  rcli -n 2 set cairn:loaded "$stamp" >/dev/null
fi

# --- (e) gunicorn on 127.0.0.1:$port, in the background --------------------------------------
pidf=$dir/gunicorn.pid
if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  log "stopping the previous gunicorn (pid $(cat "$pidf"))"
  kill "$(cat "$pidf")"
  for _ in $(seq 1 100); do kill -0 "$(cat "$pidf" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$pidf"
if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
  log "port $port is taken by another process"; exit 1
fi
"$dir/venv/bin/gunicorn" -w "$workers" -b "127.0.0.1:$port" --no-control-socket \
  --daemon --pid "$pidf" --error-logfile "$dir/logs/gunicorn.log" --capture-output \
  addok.http.wsgi
for _ in $(seq 1 300); do
  if curl -sf -o /dev/null "http://127.0.0.1:$port/search?q=paris"; then
    log "addok answers on http://127.0.0.1:$port (gunicorn pid $(cat "$pidf"))"
    exit 0
  fi
  sleep 0.2
done
log "addok did not answer on port $port (see $dir/logs/gunicorn.log)"; exit 1
