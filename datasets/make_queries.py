#!/usr/bin/env python3
"""Builds the development query set from the bundled dataset.

    python3 datasets/make_queries.py [--seed 42] [--per-kind 150] [--out datasets/dev-queries.tsv]

Each line is `query<TAB>expected_id<TAB>kind`. Kinds are the ways people
really type addresses: lower case without accents, abbreviations, one or two
typos, missing postcode or city, city first, bis/ter spellings, punctuation,
a prefix being typed, a street without number, a city or a postcode alone.
Only unambiguous targets are used (a street name unique in its city, a city
name unique in France, a postcode of one commune), so the expected id is the
one right answer. Same seed, same file.
"""

import argparse
import gzip
import json
import random
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

ABBREV = {
    "Avenue": ["av", "ave", "Av."], "Boulevard": ["bd", "bld", "boul"], "Rue": ["r", "R."],
    "Place": ["pl", "Pl."], "Chemin": ["ch", "chem"], "Route": ["rte"], "Impasse": ["imp"],
    "Allée": ["all"], "Faubourg": ["fg", "fbg"], "Square": ["sq"], "Quai": ["qu"],
    "Cours": ["crs"], "Saint": ["st", "St"], "Sainte": ["ste", "Ste"],
    "Général": ["gal", "Gal"], "Docteur": ["dr", "Dr"], "Maréchal": ["mal"],
}
SUFFIX_FORMS = {"bis": ["{n}bis", "{n} b", "{n}b", "{n} BIS"], "ter": ["{n}ter", "{n} t", "{n} TER"]}


def first(v):
    return v[0] if isinstance(v, list) else v


def unaccent(s):
    s = s.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def fold(s):
    return " ".join("".join(c if c.isalnum() else " " for c in unaccent(s).lower()).split())


def typo(rng, word, edits):
    w = list(word)
    for _ in range(edits):
        op = rng.choice(["swap", "delete", "insert", "substitute"])
        i = rng.randrange(1, len(w) - 1)
        if op == "swap":
            w[i], w[i + 1] = w[i + 1], w[i]
        elif op == "delete":
            del w[i]
        elif op == "insert":
            w.insert(i, rng.choice("aeioulnrst"))
        else:
            w[i] = rng.choice([c for c in "aeioulnrst" if c != w[i].lower()])
    return "".join(w)


def typo_query(rng, text, min_len, edits):
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= min_len and w.isalpha()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    words[i] = typo(rng, words[i], edits)
    return " ".join(words)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--per-kind", type=int, default=150)
    ap.add_argument("--source", default=str(HERE / "fr-sample" / "addresses.ndjson.gz"))
    ap.add_argument("--out", default=str(HERE / "dev-queries.tsv"))
    a = ap.parse_args()
    rng = random.Random(a.seed)

    streets, cities = [], []
    with gzip.open(a.source, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["type"] == "street" and d.get("housenumbers"):
                streets.append(d)
            elif d["type"] == "municipality":
                cities.append(d)
    city_names = Counter(fold(c["name"]) for c in cities)
    postcode_owners = defaultdict(set)
    for c in cities:
        for p in c["postcode"] if isinstance(c["postcode"], list) else [c["postcode"]]:
            postcode_owners[p].add(c["id"])
    street_keys = Counter((fold(s["name"]), fold(first(s["city"]))) for s in streets)
    street_pc = Counter((fold(s["name"]), s["postcode"]) for s in streets)
    streets = [s for s in streets if street_keys[(fold(s["name"]), fold(first(s["city"])))] == 1
               and street_pc[(fold(s["name"]), s["postcode"])] == 1]
    streets.sort(key=lambda s: s["id"])
    rng.shuffle(streets)
    unique_cities = sorted((c for c in cities if city_names[fold(c["name"])] == 1), key=lambda c: c["id"])
    single_pc = sorted(p for p, owners in postcode_owners.items() if len(owners) == 1)

    def address(s):
        number = rng.choice(sorted(s["housenumbers"]))
        return number, s["housenumbers"][number]["id"], s["name"], s["postcode"], first(s["city"])

    rows = []

    def add(kind, make):
        made, tries = 0, 0
        while made < a.per_kind and tries < a.per_kind * 50:
            tries += 1
            r = make()
            if r and r[0]:
                rows.append((r[0], r[1], kind))
                made += 1

    it = iter(streets * 20)

    def street():
        return next(it)

    add("full", lambda: (lambda n, i, nm, pc, c: (f"{n} {nm} {pc} {c}", i))(*address(street())))
    add("lower_noaccent", lambda: (lambda n, i, nm, pc, c: (unaccent(f"{n} {nm} {pc} {c}").lower(), i))(*address(street())))

    def abbrev():
        n, i, nm, pc, c = address(street())
        words = nm.split(" ")
        hits = [k for k, w in enumerate(words) if w in ABBREV]
        if not hits:
            return None
        k = rng.choice(hits)
        words[k] = rng.choice(ABBREV[words[k]])
        return f"{n} {' '.join(words)} {pc} {c}", i
    add("abbrev", abbrev)

    def typo1():
        n, i, nm, pc, c = address(street())
        q = typo_query(rng, f"{nm} {c}", 4, 1)
        return (f"{n} {q}", i) if q else None
    add("typo1", typo1)

    def typo2():
        n, i, nm, pc, c = address(street())
        q = typo_query(rng, f"{nm} {c}", 8, 2)
        return (f"{n} {q}", i) if q else None
    add("typo2", typo2)

    add("no_postcode", lambda: (lambda n, i, nm, pc, c: (f"{n} {nm} {c}", i))(*address(street())))
    add("no_city", lambda: (lambda n, i, nm, pc, c: (f"{n} {nm} {pc}", i))(*address(street())))
    add("city_first", lambda: (lambda n, i, nm, pc, c: (f"{c} {n} {nm}", i))(*address(street())))

    def suffix():
        s = street()
        numbers = [k for k in sorted(s["housenumbers"]) if k.split(" ")[-1] in SUFFIX_FORMS]
        if not numbers:
            return None
        k = rng.choice(numbers)
        n, suf = k.split(" ")
        form = rng.choice(SUFFIX_FORMS[suf]).format(n=n)
        return f"{form} {s['name']} {s['postcode']} {first(s['city'])}", s["housenumbers"][k]["id"]
    add("bis_ter", suffix)

    def punctuation():
        n, i, nm, pc, c = address(street())
        q = f"{n}, {nm.replace(' ', rng.choice([' ', '  ', '-']))} - {pc} {c.replace('-', ' ')}"
        return q.replace("'", rng.choice(["'", "’", " "])), i
    add("punctuation", punctuation)

    def prefix():
        n, i, nm, pc, c = address(street())
        full = f"{n} {nm} {pc} {c}"
        # Stop in the middle of the city name: what was typed is unambiguous.
        cut = len(full) - len(c) + max(2, int(len(c) * rng.uniform(0.4, 0.8)))
        return full[:cut], i
    add("prefix", prefix)

    add("street_only", lambda: (lambda s: (f"{s['name']} {first(s['city'])}", s["id"]))(street()))
    add("city_only", lambda: (lambda c: (rng.choice([c["name"], fold(c["name"])]), c["id"]))(rng.choice(unique_cities)))
    add("postcode_only", lambda: (lambda p: (p, next(iter(postcode_owners[p]))))(rng.choice(single_pc)))

    with open(a.out, "w", encoding="utf-8") as out:
        out.write("query\texpected_id\tkind\n")
        for q, i, k in rows:
            out.write(f"{q}\t{i}\t{k}\n")
    print(f"{len(rows)} queries, {len(set(k for _, _, k in rows))} kinds -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
