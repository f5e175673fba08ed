#!/usr/bin/env python3
"""Writes the request files of bench/load.sh from a BAN NDJSON file.

    python3 bench/load/make_requests.py --source addresses.ndjson --out DIR
        [--seed 42] [--distinct 300000] [--reverse 1200000] [--mix 600000]
        [--pool 100000] [--zipf 1.0] [--sample 300]

Each file holds one request target (path and query string) a line, walked by
bench/load/paths.lua. Same source and arguments, same files.

- search.txt   (a) distinct full-address searches, as people type them: full,
               lower case without accents, no postcode, no city, city first,
               abbreviated street type, one typo; plus 20 % made of very common
               words ("12 rue de la", "rue des Nantes"...). No line repeats, so
               none can be answered by the response cache.
- autocomplete.txt (b) distinct prefixes of full addresses (cut at a random
               point after the 4th character), `autocomplete=1`.
- mix.txt      (c) a realistic mix with repeats: a pool of --pool requests
               (autocomplete prefixes 40 %, full addresses 30 %, street + city
               10 %, city 10 %, reverse 10 %), drawn with Zipf weights
               (rank^-zipf, ranks shuffled over the pool's kinds).
- reverse.txt  (d) distinct /reverse points 0-30 m from random housenumbers.
- typed.txt    autocomplete as typed: every prefix of 3 characters or more of
               --typed full addresses, one request per keystroke, in typing
               order (`autocomplete=1`); short prefixes repeat across
               addresses, as they do for real users. Drawn with its own
               random stream (seed + 1), so the other files do not change.
- warmup.txt   a mix of all kinds, disjoint from the four files above.
- *.sample.txt 300 lines of the same shape as each file, disjoint from it
               (but for typed.sample.txt, whose short prefixes may repeat),
               used to measure response sizes without touching the measured set.

Queries of different files never coincide, so one scenario cannot warm the
response cache for another.
"""

import argparse
import bisect
import itertools
import json
import math
import random
import sys
import unicodedata
import urllib.parse
from collections import Counter

ABBREV = {
    "Avenue": ["av", "ave"], "Boulevard": ["bd", "bld"], "Rue": ["r"], "Place": ["pl"],
    "Chemin": ["ch", "chem"], "Route": ["rte"], "Impasse": ["imp"], "Allée": ["all"],
    "Faubourg": ["fg"], "Square": ["sq"], "Quai": ["qu"], "Cours": ["crs"],
    "Saint": ["st"], "Sainte": ["ste"], "Général": ["gal"], "Docteur": ["dr"],
}
# Street-type phrases that occur in tens of thousands of names: the queries
# that make a plain AND over the index expensive.
COMMON = ["rue de la", "rue du", "rue des", "rue de l", "avenue de la", "avenue du", "place de la",
          "chemin de la", "chemin des", "route de", "allee des", "impasse des", "rue de", "boulevard de la",
          "rue saint", "grande rue", "rue de la gare", "rue de l eglise", "place de l eglise", "rue du moulin"]


def first(v):
    return v[0] if isinstance(v, list) else v


def unaccent(s):
    s = s.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def typo(rng, text):
    words = text.split(" ")
    cands = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not cands:
        return None
    i = rng.choice(cands)
    w = list(words[i])
    j = rng.randrange(1, len(w) - 2)
    op = rng.randrange(3)
    if op == 0:
        w[j], w[j + 1] = w[j + 1], w[j]
    elif op == 1:
        del w[j]
    else:
        w[j] = rng.choice([c for c in "aeioulnrst" if c != w[j].lower()])
    words[i] = "".join(w)
    return " ".join(words)


def search_path(q, extra=""):
    return "/search?q=" + urllib.parse.quote_plus(q, safe="") + extra


def reverse_path(lat, lon):
    return f"/reverse?lat={lat:.6f}&lon={lon:.6f}"


class Data:
    """Streets with their housenumbers, and municipalities, from BAN NDJSON."""

    def __init__(self, path):
        self.streets = []  # (name, postcode, city, [(number, lon, lat)])
        self.cities = []  # (name, postcode)
        with open(path, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                t = d["type"]
                if t == "street" and d.get("housenumbers"):
                    hn = [(k, v["lon"], v["lat"]) for k, v in d["housenumbers"].items()]
                    self.streets.append((d["name"], d["postcode"], first(d["city"]), hn))
                elif t == "municipality":
                    self.cities.append((d["name"], first(d["postcode"])))
        self.weights = list(itertools.accumulate(len(s[3]) for s in self.streets))

    def address(self, rng):
        """A housenumber drawn uniformly over all housenumbers."""
        i = bisect.bisect_right(self.weights, rng.randrange(self.weights[-1]))
        name, pc, city, hn = self.streets[i]
        number, lon, lat = rng.choice(hn)
        return number, name, pc, city, lon, lat


def full_query(rng, data):
    n, name, pc, city, _, _ = data.address(rng)
    form = rng.random()
    if form < 0.45:
        return f"{n} {name} {pc} {city}"
    if form < 0.60:
        return unaccent(f"{n} {name} {pc} {city}").lower()
    if form < 0.70:
        return f"{n} {name} {city}"
    if form < 0.75:
        return f"{n} {name} {pc}"
    if form < 0.80:
        return f"{city} {n} {name}"
    if form < 0.90:
        words = name.split(" ")
        hits = [k for k, w in enumerate(words) if w in ABBREV]
        if not hits:
            return f"{n} {name} {pc} {city}"
        k = rng.choice(hits)
        words[k] = rng.choice(ABBREV[words[k]])
        return f"{n} {' '.join(words)} {pc} {city}"
    return typo(rng, f"{n} {name} {city}") or f"{n} {name} {city}"


def common_query(rng, data):
    phrase = rng.choice(COMMON)
    form = rng.random()
    if form < 0.4:
        return f"{rng.randint(1, 400)} {phrase}"
    _, _, pc, city, _, _ = data.address(rng)
    if form < 0.8:
        return f"{phrase} {city}"
    return f"{rng.randint(1, 200)} {phrase} {pc}"


def prefix_query(rng, data):
    n, name, pc, city, _, _ = data.address(rng)
    full = f"{n} {name} {pc} {city}"
    if rng.random() < 0.3:
        full = unaccent(full).lower()
    cut = rng.randint(4, len(full) - 1)
    q = full[:cut]
    return q if q.strip() == q else None  # a trailing space is the same query to the engine


def reverse_point(rng, data):
    _, _, _, _, lon, lat = data.address(rng)
    r = 30.0 * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(a) / 111_320.0
    dlon = r * math.sin(a) / (111_320.0 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--distinct", type=int, default=300_000, help="lines of search.txt and autocomplete.txt")
    ap.add_argument("--reverse", type=int, default=1_200_000, help="lines of reverse.txt")
    ap.add_argument("--mix", type=int, default=600_000, help="lines of mix.txt")
    ap.add_argument("--pool", type=int, default=100_000, help="distinct requests behind mix.txt")
    ap.add_argument("--zipf", type=float, default=1.0, help="exponent of the mix's rank weights")
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=100_000)
    ap.add_argument("--typed", type=int, default=3_000, help="addresses typed key by key into typed.txt")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    data = Data(a.source)
    print(f"source: {len(data.streets)} streets with numbers, {data.weights[-1]} housenumbers, "
          f"{len(data.cities)} municipalities", file=sys.stderr)

    used = set()  # every line written so far, so that files never share a request

    def distinct(n, make):
        out, tries = [], 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                sys.exit(f"could not make {n} distinct lines (got {len(out)}): too few addresses")
            p = make()
            if p is not None and p not in used:
                used.add(p)
                out.append(p)
        return out

    def write(name, lines):
        with open(f"{a.out}/{name}", "w", encoding="utf-8") as f:
            for p in lines:
                f.write(p + "\n")

    def search_line():
        q = common_query(rng, data) if rng.random() < 0.2 else full_query(rng, data)
        return search_path(q)

    def prefix_line():
        q = prefix_query(rng, data)
        return search_path(q, "&autocomplete=1") if q else None

    def reverse_line():
        return reverse_path(*reverse_point(rng, data))

    # (a), (b), (d) and their samples.
    for name, n, make in [("search", a.distinct, search_line), ("autocomplete", a.distinct, prefix_line),
                          ("reverse", a.reverse, reverse_line)]:
        write(f"{name}.txt", distinct(n, make))
        write(f"{name}.sample.txt", distinct(a.sample, make))

    # (c) a pool of distinct requests of every kind, then Zipf draws over it.
    def mix_line():
        k = rng.random()
        if k < 0.40:
            return prefix_line()
        if k < 0.70:
            return search_path(full_query(rng, data))
        if k < 0.80:
            _, name, _, city, _, _ = data.address(rng)
            return search_path(f"{name} {city}")
        if k < 0.90:
            name, pc = rng.choice(data.cities)
            return search_path(rng.choice([name, unaccent(name).lower(), f"{pc} {name}"]))
        lat, lon = reverse_point(rng, data)
        # Clients near one place send nearby points; 4 decimals (~10 m) lets some coincide.
        return f"/reverse?lat={lat:.4f}&lon={lon:.4f}"

    pool = distinct(a.pool, mix_line)
    rng.shuffle(pool)
    cum = list(itertools.accumulate(1.0 / (r + 1) ** a.zipf for r in range(len(pool))))
    mix = [pool[bisect.bisect_left(cum, rng.random() * cum[-1])] for _ in range(a.mix)]
    write("mix.txt", mix)
    counts = Counter(mix)
    # A sample drawn the same way, for response sizes (it hits the pool, as the mix does).
    write("mix.sample.txt", [pool[bisect.bisect_left(cum, rng.random() * cum[-1])] for _ in range(a.sample)])
    repeats = 1 - len(counts) / len(mix)
    top = counts.most_common(1)[0][1] / len(mix)
    print(f"mix: {len(mix)} lines over {len(counts)} distinct requests (pool {len(pool)}, zipf {a.zipf}): "
          f"{100 * repeats:.1f} % are repeats (the hit ratio of an unbounded cache walking the file once); "
          f"the most frequent request is {100 * top:.2f} % of lines", file=sys.stderr)

    def warm_line():
        k = rng.random()
        return search_line() if k < 0.4 else prefix_line() if k < 0.8 else reverse_line()

    write("warmup.txt", distinct(a.warmup, warm_line))

    typing = random.Random(a.seed + 1)

    def typed_address():
        n, name, pc, city, _, _ = data.address(typing)
        full = f"{n} {name} {pc} {city}"
        return unaccent(full).lower() if typing.random() < 0.3 else full

    def keystrokes(full):
        # A prefix ending in a space is the previous one to the engine.
        return [search_path(full[:i], "&autocomplete=1") for i in range(3, len(full) + 1) if full[i - 1] != " "]

    write("typed.txt", [p for _ in range(a.typed) for p in keystrokes(typed_address())])
    write("typed.sample.txt", [p for _ in range(max(1, a.sample // 30)) for p in keystrokes(typed_address())])
    print(f"wrote {a.out}/{{search,autocomplete,reverse,mix,warmup,typed}}.txt and samples", file=sys.stderr)


if __name__ == "__main__":
    main()
