#!/usr/bin/env python3
"""Long run under mixed load (issue 7): a primary taking updates and a replica
following it, both on 127.0.0.1, queried without pause for a bounded time.

Load (all keep-alive, stdlib only):
  - searches (full addresses and autocomplete prefixes from the bundled query
    files, made distinct by a counter half of the time so the cache both hits
    and misses), on the primary and on the replica;
  - reverse lookups at the bundled points, jittered;
  - a CSV batch (POST /search/csv) every few seconds;
  - one update (POST /documents, a new street) on the primary every few seconds,
    which the replica follows.

Every interval it records per-interval request counts, errors, p50/p99 latency
and both servers' resident memory (/proc/PID/status). At the end it prints the
series and a verdict: zero errors, the replica converged, and memory flat once
the cache is full (the last third's median within --rss-slack of the middle third's).
"""
import argparse
import csv
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []
        self.n = 0
        self.errors = []

    def add(self, seconds, ok, what):
        with self.lock:
            self.n += 1
            self.lat.append(seconds)
            if not ok:
                self.errors.append(what)

    def take(self):
        with self.lock:
            lat, n, errors = self.lat, self.n, self.errors
            self.lat, self.n, self.errors = [], 0, []
        return lat, n, errors


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


class Client:
    def __init__(self, addr, stats):
        self.addr, self.stats = addr, stats
        self.conn = http.client.HTTPConnection(addr, timeout=30)

    def call(self, method, path, body=None, headers=None, expect=(200,)):
        t = time.perf_counter()
        ok, what = False, f"{method} {path[:80]}"
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
            ok = r.status in expect
            if not ok:
                what += f" -> {r.status} {data[:200]!r}"
        except Exception as e:  # a failed request is a result, counted
            what += f" -> {e!r}"
            self.conn = http.client.HTTPConnection(self.addr, timeout=30)
            data = b""
        self.stats.add(time.perf_counter() - t, ok, what)
        return ok, data


def load_queries(root):
    qs = []
    for name in ("search.tsv", "autocomplete.tsv"):
        with open(f"{root}/datasets/fr-sample/{name}", encoding="utf-8") as f:
            qs += [row[0] for i, row in enumerate(csv.reader(f, delimiter="\t")) if i and row]
    with open(f"{root}/datasets/fr-sample/reverse.tsv", encoding="utf-8") as f:
        pts = [(float(r[0]), float(r[1])) for i, r in enumerate(csv.reader(f, delimiter="\t")) if i and r]
    return qs, pts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--primary", required=True)
    ap.add_argument("--replica", required=True)
    ap.add_argument("--primary-pid", type=int, required=True)
    ap.add_argument("--replica-pid", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--interval", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--update-every", type=float, default=20.0)
    ap.add_argument("--csv-every", type=float, default=5.0)
    ap.add_argument("--rss-slack", type=float, default=0.10)
    ap.add_argument("--root", default=".")
    a = ap.parse_args()

    queries, points = load_queries(a.root)
    stats = {k: Stats() for k in ("search", "reverse", "csv", "update")}
    stop = threading.Event()
    deadline = time.time() + a.seconds

    def searcher(seed, addr):
        rnd = random.Random(seed)
        c = Client(addr, stats["search"])
        r = Client(addr, stats["reverse"])
        i = 0
        while not stop.is_set():
            i += 1
            q = rnd.choice(queries)
            if rnd.random() < 0.5:
                q = f"{q} {seed}x{i}"  # distinct: a cache miss
            c.call("GET", "/search?" + urllib.parse.urlencode({"q": q, "limit": 5}))
            lat, lon = rnd.choice(points)
            lat += rnd.uniform(-0.001, 0.001)
            lon += rnd.uniform(-0.001, 0.001)
            r.call("GET", f"/reverse?lat={lat:.6f}&lon={lon:.6f}")

    def batcher():
        c = Client(a.replica, stats["csv"])
        rnd = random.Random(7)
        while not stop.wait(a.csv_every):
            rows = "\n".join(f'"{q}"' for q in rnd.sample(queries, 50))
            body, boundary = [], "soakboundary"
            body.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"q.csv\"\r\n\r\nq\n{rows}\n\r\n")
            body.append(f"--{boundary}--\r\n")
            c.call("POST", "/search/csv", body="".join(body).encode(),
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    updates = []

    def updater():
        c = Client(a.primary, stats["update"])
        k = 0
        while not stop.wait(a.update_every):
            k += 1
            doc = {"id": f"soak_{k}", "type": "street", "name": f"Rue du Soak {k}", "postcode": "75001",
                   "citycode": "75056", "city": "Paris", "lon": 2.34, "lat": 48.86, "importance": 0.5}
            ok, data = c.call("POST", "/documents", body=json.dumps(doc) + "\n",
                              headers={"Authorization": f"Bearer {a.token}", "Content-Type": "application/x-ndjson"})
            if ok:
                updates.append(json.loads(data)["generation"])

    threads = [threading.Thread(target=searcher, args=(s, a.primary if s % 2 else a.replica))
               for s in range(1, a.clients + 1)]
    threads += [threading.Thread(target=batcher), threading.Thread(target=updater)]
    for t in threads:
        t.start()

    rows = []
    all_errors = []
    t0 = time.time()
    print(f"{'t (s)':>6} {'search/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'reverse/s':>9} {'p99 ms':>7} "
          f"{'csv':>4} {'upd':>4} {'errors':>6} {'primary RSS MB':>15} {'replica RSS MB':>15}", flush=True)
    while time.time() < deadline:
        time.sleep(min(a.interval, max(0, deadline - time.time())))
        snap = {k: s.take() for k, s in stats.items()}
        errors = sum((v[2] for v in snap.values()), [])
        all_errors += errors
        row = {
            "t": round(time.time() - t0),
            "search": len(snap["search"][0]) / a.interval, "search_p50": pct(snap["search"][0], .5),
            "search_p99": pct(snap["search"][0], .99),
            "reverse": len(snap["reverse"][0]) / a.interval, "reverse_p99": pct(snap["reverse"][0], .99),
            "csv": snap["csv"][1], "updates": snap["update"][1], "errors": len(errors),
            "primary_rss": rss_kb(a.primary_pid) / 1024, "replica_rss": rss_kb(a.replica_pid) / 1024,
        }
        rows.append(row)
        print(f"{row['t']:>6} {row['search']:>9.0f} {row['search_p50']:>7.2f} {row['search_p99']:>7.2f} "
              f"{row['reverse']:>9.0f} {row['reverse_p99']:>7.2f} {row['csv']:>4} {row['updates']:>4} "
              f"{row['errors']:>6} {row['primary_rss']:>15.1f} {row['replica_rss']:>15.1f}", flush=True)
    stop.set()
    for t in threads:
        t.join()
    for k, s in stats.items():
        all_errors += s.take()[2]

    # The replica converges to the last update.
    conv = None
    if updates:
        want = max(updates)
        c = http.client.HTTPConnection(a.replica, timeout=10)
        end = time.time() + 60
        while time.time() < end:
            c.request("GET", "/health/ready")
            v = json.loads(c.getresponse().read())
            if v.get("generation") == want:
                conv = want
                break
            time.sleep(0.5)

    third = max(1, len(rows) // 3)
    verdict = True
    print(f"\nrequests with errors: {len(all_errors)}")
    for e in all_errors[:10]:
        print("  ", e)
    verdict &= not all_errors
    print(f"updates committed on the primary: {len(updates)}; replica converged to generation "
          f"{conv if conv is not None else 'NOT REACHED'}")
    verdict &= (not updates) or conv is not None
    # Medians of the middle and last thirds: one sample taken while a
    # replica installs a generation (two generations mapped for a moment)
    # is a peak, not a trend.
    for who in ("primary_rss", "replica_rss"):
        mid_rows = rows[third:2 * third] if len(rows) >= 3 else rows[:1]
        last_rows = rows[2 * third:] if len(rows) >= 3 else rows[-1:]
        mid = statistics.median(r[who] for r in mid_rows)
        last = statistics.median(r[who] for r in last_rows)
        peak = max(r[who] for r in rows)
        flat = last <= mid * (1 + a.rss_slack)
        print(f"{who}: median {mid:.1f} MB in the middle third, {last:.1f} MB in the last third "
              f"(peak {peak:.1f} MB): {'flat' if flat else 'GROWING'}")
        verdict &= flat
    print("verdict:", "PASS" if verdict else "FAIL")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
