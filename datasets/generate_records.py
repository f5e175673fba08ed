#!/usr/bin/env python3
"""Deterministic generator of collection records for cairn's worked examples.

No real personal data: every id, name and value is invented from the seed.

Kinds:
  verifications  business verifications / classifications (docs/EXAMPLE-VERIFICATIONS.md):
                 id, business_id, status, created_at (RFC 3339), confidence,
                 classification (a NAF-like code), source, note (text).
  packets        tracker packets (docs/EXAMPLE-PACKETS.md): id, sender, received_at
                 (RFC 3339), position (lat/lon over metropolitan France),
                 temperature, humidity, pressure, battery.

Usage:
  python3 datasets/generate_records.py --kind verifications --count 1000000 \
      --seed 42 [--format ndjson|csv] [--out FILE|-]

Same arguments -> byte-identical output (Python 3.11, standard library only).
An --out name ending in .gz is gzipped deterministically. The schemas are
datasets/verifications.schema.toml and datasets/packets.schema.toml.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import sys
from datetime import datetime, timedelta, timezone

# Records are dated up to this instant, so that runs on any day agree.
END = datetime(2026, 12, 1, tzinfo=timezone.utc)

STATUSES = [("verified", 55), ("pending", 25), ("rejected", 12), ("expired", 8)]
SOURCES = ["registry", "manual", "partner", "import"]
WORDS = ("address checked phone email website registry match mismatch closed moved "
         "renamed duplicate owner director capital branch office warehouse shop").split()


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def weighted(rng: random.Random, choices):
    total = sum(w for _, w in choices)
    x = rng.uniform(0, total)
    for value, w in choices:
        x -= w
        if x <= 0:
            return value
    return choices[-1][0]


def verifications(rng: random.Random, n: int):
    start = END - timedelta(days=700)
    span = int((END - start).total_seconds())
    codes = [f"{rng.randint(1, 99):02d}.{rng.randint(0, 99):02d}{chr(65 + rng.randint(0, 25))}" for _ in range(700)]
    for i in range(n):
        yield {
            "id": f"v{i:08d}",
            "business_id": f"b{rng.randint(0, 199_999):06d}",
            "status": weighted(rng, STATUSES),
            "created_at": rfc3339(start + timedelta(seconds=rng.randrange(span))),
            "confidence": round(rng.random(), 3),
            "classification": codes[min(int(rng.expovariate(1 / 80)), len(codes) - 1)],
            "source": SOURCES[rng.randrange(len(SOURCES))],
            "note": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))),
        }


def packets(rng: random.Random, n: int):
    start = END - timedelta(days=30)
    span = int((END - start).total_seconds())
    senders = 5000
    # Each sender drifts around a home point.
    homes = [(rng.uniform(42.5, 51.0), rng.uniform(-4.5, 7.8)) for _ in range(senders)]
    for i in range(n):
        s = rng.randrange(senders)
        lat, lon = homes[s]
        yield {
            "id": f"p{i:09d}",
            "sender": f"tracker-{s:05d}",
            "received_at": rfc3339(start + timedelta(seconds=rng.randrange(span))),
            "position": {"lat": round(lat + rng.gauss(0, 0.05), 6), "lon": round(lon + rng.gauss(0, 0.05), 6)},
            "temperature": round(rng.gauss(14, 7), 1),
            "humidity": round(min(100.0, max(0.0, rng.gauss(70, 15))), 1),
            "pressure": round(rng.gauss(1013, 8), 1),
            "battery": rng.randint(0, 100),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["verifications", "packets"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    records = (verifications if a.kind == "verifications" else packets)(rng, a.count)
    if a.out == "-":
        out = sys.stdout
    elif a.out.endswith(".gz"):
        raw = gzip.GzipFile(filename="", mode="wb", fileobj=open(a.out, "wb"), mtime=0)
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    else:
        out = open(a.out, "w", encoding="utf-8", newline="")
    if a.format == "ndjson":
        for r in records:
            out.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
    else:
        w = None
        for r in records:
            if "position" in r:
                r = dict(r, position=f"{r['position']['lat']},{r['position']['lon']}")
            if w is None:
                w = csv.DictWriter(out, fieldnames=list(r), lineterminator="\n")
                w.writeheader()
            w.writerow(r)
    out.flush()
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
