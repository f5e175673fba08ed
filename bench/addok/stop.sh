#!/usr/bin/env bash
# Stops what bench/addok/setup.sh started: gunicorn (by its pid file) and the private redis.
# Keeps $ADDOK_DIR (venv, config): setup.sh then only restarts and re-imports.
dir=${ADDOK_DIR:-/tmp/addok}
rport=${ADDOK_REDIS_PORT:-6390}
pidf=$dir/gunicorn.pid
if [ -f "$pidf" ] && pid=$(cat "$pidf") && kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "gunicorn $pid stopped"
fi
rm -f "$pidf"
if [ "$(redis-cli -h 127.0.0.1 -p "$rport" ping 2>/dev/null)" = PONG ]; then
  redis-cli -h 127.0.0.1 -p "$rport" shutdown nosave >/dev/null 2>&1
  echo "redis on port $rport stopped"
fi
true
