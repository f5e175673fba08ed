#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from
real inputs: tests/fixtures/, datasets/ query files, the fr-sample addresses
(../shared/datasets/fr-sample, when present) and a real snapshot file.

The seeds are committed; run this again only to change them:

    python3 fuzz/make_corpus.py [path/to/snapshot-binary]

The snapshot seed is written by the `snapshot` fuzz target itself
(CAIRN_FUZZ_WRITE_SNAPSHOT, which calls Database::create_snapshot_file on
the fixture database); pass the built binary to refresh it.
"""

import gzip
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
SEEDS = os.path.join(FUZZ, "corpus")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "fr-sample", "addresses.ndjson")


def write(target, data, name=None):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path, mode="rb"):
    with open(os.path.join(ROOT, path), mode) as f:
        return f.read()


def tsv_queries(path, n):
    lines = read(path, "r").splitlines()[1:]
    # Evenly spread over the file, so every kind of query is there.
    step = max(1, len(lines) // n)
    return [l.split("\t") for l in lines[::step][:n]]


def sample_ndjson():
    """Lines of each type from the fr-sample addresses (or the bundled
    dataset), streets cut to a few housenumbers to keep seeds small."""
    out = {"municipality": [], "street": [], "locality": []}
    if os.path.exists(SHARED):
        f = open(SHARED, "rb")
    else:
        f = gzip.open(os.path.join(ROOT, "datasets/fr-sample/addresses.ndjson.gz"), "rb")
    with f:
        for line in itertools.islice(f, 3000):
            rec = json.loads(line)
            kind = rec.get("type")
            if kind in out and len(out[kind]) < 6:
                if "housenumbers" in rec:
                    rec["housenumbers"] = dict(itertools.islice(rec["housenumbers"].items(), 3))
                out[kind].append(json.dumps(rec, ensure_ascii=False))
    return out


def query_seeds():
    queries = [q for q, *_ in tsv_queries("datasets/fr-sample/search.tsv", 16)]
    queries += [q for q, *_ in tsv_queries("datasets/fr-sample/autocomplete.tsv", 8)]
    queries += [q for q, *_ in tsv_queries("datasets/dev-queries.tsv", 8)]
    queries += ["12 bis rue de la paix paris", "3 bd henri matisse marseil", "12b av. J. Jaurès", "cholet", "75002"]
    for i, q in enumerate(queries):
        # flags: limit in the low 6 bits, bit 6 autocomplete, bit 7 near (b1, b2)
        flags = [0x05, 0x45, 0x8A, 0xCA][i % 4]
        write("query", bytes([flags, 0x80 + 47, 0x80 + 2]) + q.encode())


def import_seeds(nd):
    small = read("tests/fixtures/small.ndjson")
    write("import_ndjson", small, "small.ndjson")
    for kind, lines in nd.items():
        write("import_ndjson", "\n".join(lines[:3]) + "\n", f"fr-sample-{kind}")
    write("import_ndjson", small.replace(b"\n", b"\r\n"), "small-crlf")
    write("import_ndjson", b'{"id": "x", "type": "street", "name": "Rue", "lon": 1, "lat": 2}\n{bad\n', "one-bad-line")

    csv = read("tests/fixtures/small.csv")
    write("import_csv", csv, "small.csv")
    head, *rows = csv.split(b"\n")
    for i, row in enumerate(r for r in rows if r):
        write("import_csv", head + b"\n" + row + b"\n", f"small-row{i}")
    write("import_csv", b"\xef\xbb\xbf" + csv.replace(b"\n", b"\r\n"), "small-bom-crlf")
    write("import_csv", csv.decode().encode("latin-1", "replace"), "small-latin1")


def batch_seeds():
    # a: bit 0 NDJSON, bits 1-2 encoding, bits 3-5 delimiter; b: column
    # choices; c: min_score / delimiter byte (see batch_csv.rs).
    rows = [("1", "12 rue de la paix", "75002", "Paris"), ("2", "8 avenue victor hugo", "", "Lyon"),
            ("3", "nulle part du tout", "", "zzz"), ("4", "37 av des bruyeres", "49300", "Cholet")]
    for sep, a in [(",", 0x20), (";", 0x18), ("\t", 0x28), ("|", 0x30)]:
        text = sep.join(["id", "adresse", "postcode", "ville"]) + "\n"
        text += "".join(sep.join(r) + "\n" for r in rows)
        write("batch_csv", bytes([a, 0x13, 0x40]) + text.encode())
    text = "q,lat,lon\n" + "".join(f"{r[1]} {r[3]},47.08,-0.88\n" for r in rows)
    write("batch_csv", bytes([0x00, 0x21, 0x00]) + text.encode())  # reverse
    write("batch_csv", bytes([0x00, 0x81, 0x02]) + ("q\n" + "".join(f'"{r[1]}, {r[3]}"\n' for r in rows)).encode())
    nd = "".join(json.dumps({"q": f"{r[1]} {r[2]} {r[3]}", "postcode": r[2]}) + "\n" for r in rows)
    write("batch_csv", bytes([0x01, 0x11, 0x00]) + nd.encode())
    write("batch_csv", bytes([0x04, 0x03, 0x00]) + "adresse\n12 rue de la paix\n".encode("latin-1"))


def http_get_seeds():
    # sel: bits 0-2 route (search, reverse, get, health, ready, metrics),
    # bits 3-4 coding, bit 5 no query string.
    for q, *_ in tsv_queries("datasets/fr-sample/search.tsv", 6):
        write("http_get", bytes([0x00]) + ("q=" + q.replace(" ", "+")).encode())
    for q in ["q=rue+de+la+paix&limit=3&autocomplete=0", "q=cholet&type=municipality",
              "q=paris&lat=48.85&lon=2.35&limit=20", "q=13001&postcode=13001", "q=%FF%FE", "q=paris&limit=101"]:
        write("http_get", bytes([0x08]) + q.encode())
    for lat, lon, *_ in tsv_queries("datasets/fr-sample/reverse.tsv", 4):
        write("http_get", bytes([0x01]) + f"lat={lat}&lon={lon}&limit=2".encode())
    write("http_get", bytes([0x02]) + b"75102_0001_00012")
    write("http_get", bytes([0x12]) + b"75102%5F0001_00012/")
    for sel in (0x23, 0x24, 0x25, 0x35):
        write("http_get", bytes([sel]))


def multipart(target, parts, boundary="fuzzb"):
    body = b""
    for name, fname, content in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if fname:
            body += f'; filename="{fname}"\r\nContent-Type: text/csv'.encode()
        body += b"\r\n\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def http_seeds(nd):
    get = lambda t, extra="": f"GET {t} HTTP/1.1\r\nHost: fuzz\r\n{extra}\r\n".encode()
    for q, *_ in tsv_queries("datasets/fr-sample/search.tsv", 4):
        write("http", get("/search?q=" + q.replace(" ", "+").replace("&", "%26")))
    write("http", get("/search?q=paris&limit=3&lat=48.8&lon=2.3", "Accept-Encoding: gzip\r\n"))
    write("http", get("/search/?q=rue+de+la+paix&autocomplete=1&type=street", "Accept-Encoding: br\r\n"))
    write("http", get("/reverse?lat=47.083629&lon=-0.879374"))
    write("http", get("/get/75102_0001_00012") + get("/health") + get("/health/ready") + get("/metrics"))
    write("http", get("/snapshot/latest") + get("/snapshot/1"))
    write("http", b"HEAD /search?q=lyon HTTP/1.1\r\nHost: fuzz\r\n\r\n" + get("/search?q=lyon"))
    write("http", b"GET /search?q=marseille HTTP/1.0\r\n\r\n")
    write("http", b"POST /search?q=paris HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 0\r\n\r\n")
    write("http", b"GET /nowhere HTTP/1.1\r\nHost: fuzz\r\n\r\n")
    csv = b"id,adresse,postcode,ville\n1,12 rue de la paix,75002,Paris\n2,8 avenue victor hugo,,Lyon\n"
    write("http", multipart("/search/csv", [("data", "a.csv", csv), ("columns", None, b"adresse"),
                                            ("columns", None, b"ville"), ("postcode", None, b"postcode")]))
    write("http", multipart("/search/csv?delimiter=%3B&encoding=latin1",
                            [("data", "b.csv", csv.replace(b",", b";")), ("result_columns", None, b"result_label")]))
    write("http", multipart("/reverse/csv", [("data", "r.csv", b"lat,lon\n47.08,-0.88\n48.85,2.35\n")]))
    body = read("tests/fixtures/small.ndjson").split(b"\n")[0] + b"\n" + nd["street"][0].encode() + b"\n"
    write("http", (f"POST /documents HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer fuzz\r\n"
                   f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    csv = read("tests/fixtures/small.csv")
    csv = b"\n".join(csv.split(b"\n")[:2]) + b"\n"
    write("http", (f"POST /documents HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer fuzz\r\n"
                   f"Content-Type: text/csv\r\nContent-Length: {len(csv)}\r\n\r\n").encode() + csv)
    write("http", b"DELETE /documents/75102_0001_00012 HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer fuzz\r\n\r\n")
    write("http", b"DELETE /documents/x HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer nope\r\n\r\n")
    chunked = b"POST /documents HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer fuzz\r\nTransfer-Encoding: chunked\r\n\r\n"
    line = read("tests/fixtures/small.ndjson").split(b"\n")[1] + b"\n"
    chunked += f"{len(line):x}\r\n".encode() + line + b"\r\n0\r\n\r\n"
    write("http", chunked)
    # HTTP/2 with prior knowledge: preface, empty SETTINGS, HEADERS for
    # GET /health (HPACK literal, no Huffman).
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    block = b"\x82\x86\x44\x07/health\x41\x04fuzz"  # :method GET, :scheme http, :path, :authority
    headers = len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + block
    write("http", preface + headers)


def path_and_repeat_seeds():
    """Ids in the path with `+`, `&` and broken escapes, and parameters
    given twice (issue 25): for http_get (sel 0x02: /get/; sel 0x40 | route,
    then the index of the repeated parameter in REPEATED, then
    "query\nvalue\nvalue") and for http."""
    for raw in [b"75102_0001_00012&zzz", b"75102_0001_00012%26zzz", b"75102%5F0001%5F00012", b"a+b%20c",
                b"%ff", b"%zz75056", b"75056%4", b"75056%", b"%C3%A9", b"%+f"]:
        write("http_get", bytes([0x02]) + raw)
    # REPEATED: q limit autocomplete lat lon lng long latitude longitude type postcode citycode
    for route, index, text in [(0x40, 0, "limit=1\nlyon\nparis"), (0x40, 1, "q=rue\n1\n3"),
                               (0x40, 2, "q=republ\n0\n1"),
                               (0x40, 3, "q=rue+de+la+republique&lon=4.83\n45.76\n43.30"),
                               (0x48, 5, "q=rue+de+la+republique&latitude=45.76\n4.83\n5.37"),
                               (0x40, 9, "q=lyon\nstreet\nmunicipality"), (0x40, 11, "q=rue\n13055\n69123"),
                               (0x41, 3, "lon=2.33156\n48.86906\n45.7580"),
                               (0x41, 1, "lat=48.86906&lon=2.33156\n1\n3")]:
        write("http_get", bytes([route, index]) + text.encode())
    get = lambda t: f"GET {t} HTTP/1.1\r\nHost: fuzz\r\n\r\n".encode()
    write("http", get("/search?q=lyon&q=paris&limit=1") + get("/search?q=paris&q=lyon&limit=1"))
    write("http", get("/search?q=rue&lat=45.76&lon=4.83&lat=43.3&lng=5.37") + get("/search?q=rue&lat=43.3&lon=4.83&lat=45.76"))
    write("http", get("/reverse?lat=48.86906&lon=2.33156&limit=1&limit=3") + get("/reverse?limit=3&limit=1&lon=2.33156&lat=48.86906"))
    write("http", get("/get/75102_0001_00012&zzz") + get("/get/a+b%20c") + get("/get/%ff") + get("/get/%zz"))
    delete = lambda t: f"DELETE {t} HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer fuzz\r\n\r\n".encode()
    write("http", delete("/documents/75102_0001_00012&not-this-id") + delete("/documents/%ff") + delete("/documents/a+b"))
    # More headers than max_headers (64): hyper's own 431.
    write("http", b"GET /health HTTP/1.1\r\nHost: fuzz\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(70)) + b"\r\n")


def snapshot_seeds(binary):
    d = os.path.join(SEEDS, "snapshot")
    path = os.path.join(d, "small.snapshot")
    if binary:
        os.makedirs(d, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            snap = os.path.join(tmp, "small.cairn-snapshot")
            subprocess.run([binary, "-runs=0"], env=dict(os.environ, CAIRN_FUZZ_WRITE_SNAPSHOT=snap, TMPDIR=tmp),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            snap = open(snap, "rb").read()
        # The first byte is the mode (see snapshot.rs): as is, checksums
        # fixed, read 7 bytes at a time.
        write("snapshot", b"\x00" + snap, "small-as-is")
        write("snapshot", b"\x01" + snap, "small-fixed")
        write("snapshot", b"\x1b" + snap, "small-fixed-trickle")
        write("snapshot", b"\x01" + snap[: 20 + int.from_bytes(snap[12:16], "little")], "header-only")
        write("snapshot", b"\x00" + snap[:-1], "truncated")


def main():
    nd = sample_ndjson()
    query_seeds()
    import_seeds(nd)
    batch_seeds()
    http_get_seeds()
    http_seeds(nd)
    path_and_repeat_seeds()
    snapshot_seeds(sys.argv[1] if len(sys.argv) > 1 else None)
    for t in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, t))
        size = sum(os.path.getsize(os.path.join(SEEDS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
