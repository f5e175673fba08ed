#!/usr/bin/env python3
"""Small HTTP helpers for bench/load.sh (127.0.0.1 only, standard library).

    probe.py wait   URL SECONDS   wait until URL/health answers 200 (exit 1 on timeout)
    probe.py health URL           print the response cache counters: hits misses evictions entries bytes
    probe.py sizes  URL FILE      GET every line of FILE on one keep-alive connection (no
                                  Accept-Encoding, as wrk sends) and print
                                  "median=B p10=B p90=B requests=N non2xx=K" and, on stderr,
                                  the first failing requests with their status and body
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse


def conn(url):
    u = urllib.parse.urlsplit(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to send traffic to {u.hostname}: the load bench stays on loopback")
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "wait":
        deadline = time.monotonic() + float(sys.argv[3])
        while time.monotonic() < deadline:
            try:
                if get(conn(url), "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"{url}/health did not answer 200 within {sys.argv[3]} s")
    elif cmd == "health":
        status, body = get(conn(url), "/health")
        cache = json.loads(body).get("cache", {}) if status == 200 else {}
        print(" ".join(str(cache.get(k, 0)) for k in ("hits", "misses", "evictions", "entries", "bytes")))
    elif cmd == "sizes":
        c = conn(url)
        sizes, bad = [], []
        with open(sys.argv[3], encoding="utf-8") as f:
            for line in f:
                path = line.rstrip("\n")
                if not path:
                    continue
                status, body = get(c, path)
                sizes.append(len(body))
                if not 200 <= status < 300:
                    bad.append((path, status, body[:300]))
        for path, status, body in bad[:5]:
            print(f"  {status} GET {path} -> {body.decode('utf-8', 'replace')}", file=sys.stderr)
        q = statistics.quantiles(sizes, n=10) if len(sizes) > 1 else sizes * 9
        print(f"median={int(statistics.median(sizes))} p10={int(q[0])} p90={int(q[-1])} "
              f"requests={len(sizes)} non2xx={len(bad)}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
