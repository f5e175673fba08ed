#!/usr/bin/env python3
"""Live writes over HTTP (issue 19), against a real `cairn serve` on 127.0.0.1.

    bench/live_http.py CAIRN DATA full|live WRITERS SECONDS

Starts `CAIRN serve --data DATA` on a free port (with `--live-writes true`
for `live`), then WRITERS threads each POST one new street with one
housenumber at a time for SECONDS; after each answer, the writer searches
for what it wrote until the search finds it. Prints `RESULT` lines: writes
a second, POST latency (durable when answered), and the time from the
answer until a search finds the write. Traffic goes to 127.0.0.1 only and
stops after SECONDS; the server is stopped at the end. DATA is written to:
use a copy.
"""

import http.client
import json
import re
import subprocess
import sys
import threading
import time


def pct(v, q):
    v = sorted(v)
    return v[round((len(v) - 1) * q)] if v else float("nan")


def writer(addr, w, until, out):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    i = 0
    while time.monotonic() < until:
        name = f"Rue Httplive Zorbec {w} {i}"
        rid = f"httplive_{w}_{i}"
        body = json.dumps(
            {
                "id": rid,
                "type": "street",
                "name": name,
                "postcode": "99000",
                "citycode": "99999",
                "city": "Livetown",
                "lon": 2.5 + w * 0.01,
                "lat": 46.5 + i * 1e-4,
                "importance": 0.5,
                "housenumbers": {"1": {"lon": 2.5001 + w * 0.01, "lat": 46.5 + i * 1e-4}},
            }
        )
        t0 = time.perf_counter()
        c.request("POST", "/documents", body, {"Authorization": "Bearer t", "Content-Type": "application/x-ndjson"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            out["failed"] += 1
            continue
        t1 = time.perf_counter()
        q = "/search?q=" + ("1 " + name + " livetown").replace(" ", "+")
        while True:
            c.request("GET", q)
            r = c.getresponse()
            d = json.loads(r.read())
            if d["features"] and d["features"][0]["properties"]["id"].startswith(rid):
                break
        t2 = time.perf_counter()
        out["writes"].append((t1 - t0) * 1e3)
        out["visible"].append((t2 - t1) * 1e3)
        i += 1


def main():
    binary, data, mode, writers, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    args = [binary, "serve", "--data", data, "--listen", "127.0.0.1:0", "--write-token", "t"]
    if mode == "live":
        args += ["--live-writes", "true"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = None
        for line in p.stdout:
            m = re.search(r"http://([0-9.]+:[0-9]+)", line)
            if m:
                addr = m.group(1)
                break
        if addr is None:
            sys.exit("the server did not start")
        out = {"writes": [], "visible": [], "failed": 0}
        start = time.monotonic()
        until = start + seconds
        threads = [threading.Thread(target=writer, args=(addr, w, until, out)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
    finally:
        p.terminate()
        p.wait()
    w, v = out["writes"], out["visible"]
    print(f"RESULT http.{mode}.writers {writers} writes {len(w)} failed {out['failed']} per_s {len(w) / took:.0f}")
    print(f"RESULT http.{mode}.post p50={pct(w, .5):.1f}ms p99={pct(w, .99):.1f}ms max={max(w, default=0):.1f}ms")
    print(
        f"RESULT http.{mode}.visible_after_response p50={pct(v, .5):.2f}ms p99={pct(v, .99):.2f}ms "
        f"max={max(v, default=0):.2f}ms"
    )


if __name__ == "__main__":
    main()
