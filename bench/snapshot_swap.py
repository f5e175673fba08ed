#!/usr/bin/env python3
"""What a replica's swap costs its clients (bench/snapshot.sh runs this).

A client queries the replica without pause over one keep-alive connection
(distinct queries, so no cache hits), first for a baseline, then while one
update is posted to the primary and the replica downloads, verifies and
swaps in the new generation. Prints latency percentiles of both windows,
failed requests, and the replica's own install time from /metrics.
Traffic goes to 127.0.0.1 only and stops after the swap (at most 120 s).
"""
import argparse
import http.client
import json
import threading
import time

WORDS = ["rue", "avenue", "chemin", "place", "boulevard", "impasse", "allee", "route"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--primary", required=True)
    ap.add_argument("--replica", required=True)
    ap.add_argument("--token", required=True)
    a = ap.parse_args()

    def get(conn, path):
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    def generation():
        c = http.client.HTTPConnection(a.replica, timeout=10)
        return json.loads(get(c, "/health/ready")[1])["generation"]

    start_gen = generation()
    samples = []  # (time, latency, ok)
    stop = threading.Event()

    def client():
        conn = http.client.HTTPConnection(a.replica, timeout=10)
        i = 0
        while not stop.is_set():
            i += 1
            q = f"{i % 200 + 1} {WORDS[i % len(WORDS)]} {i}"
            t = time.perf_counter()
            try:
                status, _ = get(conn, "/search?q=" + q.replace(" ", "+"))
                ok = status == 200
            except Exception:
                ok = False
                conn = http.client.HTTPConnection(a.replica, timeout=10)
            samples.append((t, time.perf_counter() - t, ok))

    th = threading.Thread(target=client)
    th.start()
    time.sleep(5)
    t_post = time.perf_counter()
    body = json.dumps({"id": "bench_swap_1", "type": "street", "name": "Rue du Banc d'Essai",
                       "postcode": "75001", "citycode": "75056", "city": "Paris",
                       "lon": 2.34, "lat": 48.86, "importance": 0.5}) + "\n"
    c = http.client.HTTPConnection(a.primary, timeout=120)
    c.request("POST", "/documents", body=body, headers={
        "Authorization": f"Bearer {a.token}", "Content-Type": "application/x-ndjson"})
    r = c.getresponse()
    print(f"== primary commit of one document: {(time.perf_counter() - t_post):.2f} s, {r.status} {r.read()[:120]!r}")
    deadline = time.time() + 120
    while generation() == start_gen and time.time() < deadline:
        time.sleep(0.05)
    t_swapped = time.perf_counter()
    time.sleep(1)
    stop.set()
    th.join()
    before = [l for t, l, _ in samples if t < t_post]
    during = [l for t, l, _ in samples if t_post <= t <= t_swapped]
    failed = sum(1 for *_, ok in samples if not ok)
    metrics = get(http.client.HTTPConnection(a.replica, timeout=10), "/metrics")[1].decode()
    install = next((l.split()[1] for l in metrics.splitlines()
                    if l.startswith("cairn_replica_last_install_seconds ")), "?")
    print(f"== replica: generation {start_gen} -> {generation()} in {(t_swapped - t_post):.2f} s after the POST "
          f"(poll 1 s, download, verify, install {float(install):.2f} s)")
    print(f"   client: {len(samples)} requests, {failed} failed")
    print(f"   before the update: {len(before)} requests, p50 {pct(before, .5):.2f} ms, p99 {pct(before, .99):.2f} ms, max {max(before) * 1000:.1f} ms")
    if during:
        print(f"   during the update: {len(during)} requests, p50 {pct(during, .5):.2f} ms, p99 {pct(during, .99):.2f} ms, max {max(during) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
