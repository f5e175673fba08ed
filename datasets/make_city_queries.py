#!/usr/bin/env python3
"""Builds the big-city query set from the bundled dataset.

    python3 datasets/make_city_queries.py [--min-population 30000] [--out datasets/city-queries.tsv]

A big city's name is a common word of the index (it is in every street of
the city), which a search must still read as the city. For every
municipality of at least --min-population inhabitants, three queries whose
right answer is that municipality:

- city_name     its name as written ("Saint-Étienne");
- city_folded   lower case, no accents, spaces for hyphens ("saint etienne");
- city_prefix   the shortest start of the folded name, 4 letters or more,
                that no more populous municipality shares ("pari" for Paris,
                "stras" for Strasbourg): what autocomplete has seen when the
                city should come first. Skipped when there is none.

Each line is `query<TAB>expected_id<TAB>kind`, as datasets/dev-queries.tsv.
No randomness: same dataset, same file.
"""

import argparse
import gzip
import json
import re
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fold(s):
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=HERE / "fr-sample" / "addresses.ndjson.gz")
    ap.add_argument("--min-population", type=int, default=30_000)
    ap.add_argument("--out", default=HERE / "city-queries.tsv")
    a = ap.parse_args()

    towns = []
    with gzip.open(a.source, "rt", encoding="utf-8") as f:
        for line in f:
            if '"municipality"' not in line:
                continue
            d = json.loads(line)
            if d.get("type") == "municipality":
                towns.append((d["id"], d["name"], fold(d["name"]), d.get("population") or 0))
    rows = []
    for tid, name, folded, pop in sorted(towns, key=lambda t: (-t[3], t[0])):
        if pop < a.min_population:
            continue
        rows.append((name, tid, "city_name"))
        rows.append((folded, tid, "city_folded"))
        for n in range(4, len(folded) + 1):
            p = folded[:n]
            if p.endswith(" "):
                continue
            if not any(f.startswith(p) and (q > pop or (q == pop and o < tid)) for o, _, f, q in towns if o != tid):
                rows.append((p, tid, "city_prefix"))
                break
    with open(a.out, "w", encoding="utf-8") as out:
        out.write("query\texpected_id\tkind\n")
        for r in rows:
            out.write("\t".join(r) + "\n")
    print(f"{a.out}: {len(rows)} queries from {sum(1 for t in towns if t[3] >= a.min_population)} municipalities")


if __name__ == "__main__":
    main()
