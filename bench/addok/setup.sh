#!/usr/bin/env bash
# Runs the peer, Addok 1.3.2 with Redis, on 127.0.0.1 with the BAN
# configuration, loaded with a BAN NDJSON file, so that `cairn eval --url`
# scores both engines on the same queries and data.
#   bench/addok/setup.sh [FILE.ndjson[.gz]]     (default: the bundled dataset)
#   ADDOK_DIR (default /tmp/addok), ADDOK_PORT (default 7880); stop with bench/addok/stop.sh
# Installs from PyPI and Debian only; no Addok code is kept in this repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${ADDOK_DIR:-/tmp/addok}
port=${ADDOK_PORT:-7880}
data=${1:-$here/../../datasets/fr-sample/addresses.ndjson.gz}
mkdir -p "$dir/redis"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
[ -x "$dir/venv/bin/addok" ] || {
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q addok==1.3.2 addok-fr==1.1.0 addok-france==1.2.0 gunicorn==27.0.1
}
redis-cli -p 6390 ping >/dev/null 2>&1 ||
  redis-server --port 6390 --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes --save "" --appendonly no
cp "$here/addok.conf" "$dir/addok.conf"
export ADDOK_CONFIG_MODULE="$dir/addok.conf"
"$dir/venv/bin/addok" reset --force
case "$data" in *.gz) zcat "$data" > "$dir/data.ndjson" ;; *) cp "$data" "$dir/data.ndjson" ;; esac
ADDOK_BATCH_WORKERS=2 "$dir/venv/bin/addok" batch "$dir/data.ndjson"
"$dir/venv/bin/addok" ngrams
"$dir/venv/bin/gunicorn" -w 2 -b "127.0.0.1:$port" --no-control-socket --daemon --pid "$dir/gunicorn.pid" addok.http.wsgi
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/search?q=paris" >/dev/null && { echo "addok on http://127.0.0.1:$port"; exit 0; }
  sleep 0.2
done
echo "addok did not answer" >&2; exit 1
