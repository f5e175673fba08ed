#!/usr/bin/env bash
# Stops what setup.sh started.
dir=${ADDOK_DIR:-/tmp/addok}
[ -f "$dir/gunicorn.pid" ] && kill "$(cat "$dir/gunicorn.pid")" 2>/dev/null
redis-cli -p 6390 shutdown nosave 2>/dev/null
true
