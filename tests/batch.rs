//! Batch geocoding: `cairn batch` and `POST /search/csv`, `/reverse/csv`.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{bin, fixture, import, post_multipart, Server};

fn db() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &[&fixture("small.ndjson")]);
    dir
}

/// Runs `cairn batch` on `input` bytes through stdin/stdout; returns (stdout, stderr).
fn batch(data: &Path, input: &[u8], args: &[&str]) -> (String, String) {
    let mut child = Command::new(bin())
        .args(["batch", "--data", &data.display().to_string(), "--input", "-", "--output", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from another thread: output comes while input goes in.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "batch failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).expect("output is UTF-8"), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn rows(out: &str, delimiter: u8) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(out.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn column(rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]));
    rows[1..].iter().map(|r| r[i].clone()).collect()
}

const ADDRESSES: [(&str, &str, &str, &str); 3] = [
    ("1", "12 rue de la paix", "75002", "Paris"),
    ("2", "8 avenue victor hugo", "", "Lyon"),
    ("3", "nulle part du tout", "", "zzz"),
];

#[test]
fn delimiters_are_detected_and_kept() {
    let dir = db();
    for d in [b',', b';', b'\t', b'|'] {
        let sep = (d as char).to_string();
        let mut input = ["id", "adresse", "cp", "ville"].join(&sep) + "\n";
        for (id, a, cp, v) in ADDRESSES {
            input += &[id, a, cp, v].join(&sep);
            input += "\n";
        }
        let (out, err) = batch(dir.path(), input.as_bytes(), &["--columns", "adresse,cp,ville"]);
        let r = rows(&out, d);
        assert_eq!(r[0][..4], ["id", "adresse", "cp", "ville"], "delimiter {sep:?}");
        assert_eq!(column(&r, "result_id"), vec!["75102_0001_00012", "69123_0004_00008", ""], "delimiter {sep:?}");
        assert_eq!(column(&r, "result_status"), vec!["ok", "ok", "not-found"]);
        assert!(err.contains("3 rows: 2 matched, 1 unmatched"), "{err}");
    }
}

#[test]
fn result_columns_are_written_as_addok_csv_writes_them() {
    let dir = db();
    let input = "q\n12 rue de la paix 75002 paris\nrue de la paix paris\n";
    let (out, _) = batch(dir.path(), input.as_bytes(), &[]);
    let r = rows(&out, b',');
    // A housenumber's result_name is its street's name, without the number
    // (the JSON `name` has it); a street's is its name.
    assert_eq!(column(&r, "result_type"), vec!["housenumber", "street"]);
    assert_eq!(column(&r, "result_name"), vec!["Rue de la Paix", "Rue de la Paix"]);
    assert_eq!(column(&r, "result_label")[0], "12 Rue de la Paix 75002 Paris");
}

#[test]
fn quoting_bom_and_latin1() {
    let dir = db();
    // Quoted fields with the delimiter and quotes inside survive unchanged.
    let input = "\u{feff}id;adresse;ville\n1;\"12, rue de la paix\";Paris\n2;\"le \"\"grand\"\" bois\";Lyon\n";
    let (out, _) = batch(dir.path(), input.as_bytes(), &["--columns", "adresse,ville"]);
    let r = rows(&out, b';');
    assert_eq!(r[0][0], "id", "the BOM is not part of the first column");
    assert_eq!(r[1][1], "12, rue de la paix");
    assert_eq!(r[2][1], "le \"grand\" bois");
    assert_eq!(column(&r, "result_id"), vec!["75102_0001_00012", "69123_b001"]);
    // Windows-1252 input (é = 0xE9) is read as such and written as UTF-8.
    let latin1 = b"id;adresse;ville\n1;rue de la r\xe9publique;Marseille\n";
    let (out, _) = batch(dir.path(), latin1, &["--columns", "adresse,ville"]);
    let r = rows(&out, b';');
    assert_eq!(r[1][1], "rue de la république");
    assert_eq!(column(&r, "result_id"), vec!["13055_0003"]);
    assert_eq!(column(&r, "result_city"), vec!["Marseille"]);
}

#[test]
fn order_is_kept_across_chunks_and_threads() {
    let dir = db();
    let mut input = String::from("n,adresse\n");
    let queries = [
        "12 rue de la paix paris",
        "3 rue de la republique marseille",
        "nowhere zzz",
        "lyon",
        "8 avenue victor hugo lyon",
    ];
    let expected = ["75102_0001_00012", "13055_0003_00003", "", "69123", "69123_0004_00008"];
    let n = 10_000;
    for i in 0..n {
        input += &format!("{i},{}\n", queries[i % queries.len()]);
    }
    let (out, err) = batch(dir.path(), input.as_bytes(), &["--columns", "adresse", "--threads", "3"]);
    let r = rows(&out, b',');
    assert_eq!(r.len(), n + 1);
    for (i, row) in r[1..].iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        assert_eq!(column(&[r[0].clone(), row.clone()], "result_id")[0], expected[i % queries.len()], "row {i}");
    }
    assert!(err.contains(&format!("{n} rows")), "{err}");
}

#[test]
fn filters_by_column_and_type() {
    let dir = db();
    let input = "q;cp\nrue de la republique;13001\nrue de la republique;69002\n";
    let (out, _) = batch(dir.path(), input.as_bytes(), &["--columns", "q", "--postcode", "cp"]);
    assert_eq!(column(&rows(&out, b';'), "result_id"), vec!["13055_0003", "69123_0002"]);
    let (out, _) = batch(dir.path(), b"q\nlyon\n", &["--type", "street", "--min-score", "0"]);
    assert_eq!(column(&rows(&out, b','), "result_type"), vec!["street"]);
}

#[test]
fn malformed_rows_are_reported_and_kept_in_place() {
    let dir = db();
    let input = "id;adresse\n1;12 rue de la paix paris\n2;too;many;fields\n3;lyon\n";
    let (out, err) = batch(dir.path(), input.as_bytes(), &["--columns", "adresse"]);
    let r = rows(&out, b';');
    assert_eq!((r[1].last().unwrap().as_str(), r[3].last().unwrap().as_str()), ("ok", "ok"));
    // A row with more cells than the header keeps all of them, its
    // (empty) result cells after them (issue 25's review: they were cut).
    assert_eq!(r[2][..4], ["2", "too", "many", "fields"]);
    assert_eq!(r[2].len(), 4 + r[0].len() - 2);
    assert_eq!(r[2].last().unwrap(), "malformed");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn reverse_batch() {
    let dir = db();
    let input = "name,lat,lon\na,48.86906,2.33156\nb,not,anumber\nc,43.2996,5.3702\n";
    let (out, _) = batch(dir.path(), input.as_bytes(), &["--reverse", "--lat", "lat", "--lon", "lon"]);
    let r = rows(&out, b',');
    assert_eq!(column(&r, "result_id"), vec!["75102_0001_00012", "", "13055_0003_00003"]);
    assert_eq!(column(&r, "result_status"), vec!["ok", "skipped", "ok"]);
    assert!(column(&r, "result_distance")[0].parse::<u32>().unwrap() <= 2);
}

#[test]
fn ndjson_in_and_out() {
    let dir = db();
    let input = "{\"q\": \"12 rue de la paix paris\", \"ref\": 7}\nnot json\n{\"q\": \"nowhere zzz\"}\n";
    let (out, err) = batch(dir.path(), input.as_bytes(), &["--format", "ndjson"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["ref"], 7);
    assert_eq!(lines[0]["result"]["id"], "75102_0001_00012");
    assert!(lines[0]["result"]["score"].as_f64().unwrap() > 0.9);
    assert_eq!(lines[1]["result"]["status"], "malformed");
    assert_eq!(lines[2]["result"]["status"], "not-found");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn http_csv_matches_the_cli_byte_for_byte() {
    let server = Server::start(&[&fixture("small.ndjson")]);
    let input =
        b"id;adresse;cp;ville\n1;12 rue de la paix;75002;Paris\n2;8 av victor hugo;;Lyon\n3;nowhere;;zzz\n4;bad\n";
    let (status, head, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[
            ("data", Some("in.csv"), input),
            ("columns", None, b"adresse"),
            ("columns", None, b"ville"),
            ("postcode", None, b"cp"),
        ],
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/csv"));
    assert!(head.contains("in.geocoded.csv"));
    let (cli, _) = batch(server.dir.path(), input, &["--columns", "adresse,ville", "--postcode", "cp"]);
    // The same bytes but for the line ends: addok-csv's `\r\n` over HTTP.
    let body = String::from_utf8(body).unwrap();
    assert_eq!(body.matches("\r\n").count(), body.matches('\n').count(), "{body:?}");
    assert_eq!(body.replace("\r\n", "\n"), cli);
    // Trailing slash and reverse.
    let (status, _, body) =
        post_multipart(&server.addr, "/reverse/csv/", &[("data", Some("p.csv"), b"lat,lon\n48.86906,2.33156\n")]);
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().contains("75102_0001_00012"));
}

#[test]
fn http_csv_errors() {
    let dir = db();
    let server = Server::serve_with(dir, &["--max-upload", "1000"]);
    let (status, _, body) = post_multipart(&server.addr, "/search/csv", &[("columns", None, b"a")]);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("Missing file"));
    let (status, _, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[("data", Some("x.csv"), b"a,b\n1,2\n"), ("columns", None, b"nope")],
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("nope"));
    // Reverse: named latitude and longitude columns that the file lacks.
    for (lat, lon, missing) in [("nope", "lon", "nope"), ("lat", "x", "x")] {
        let (status, _, body) = post_multipart(
            &server.addr,
            "/reverse/csv",
            &[
                ("data", Some("p.csv"), b"lat,lon\n48.86906,2.33156\n"),
                ("lat", None, lat.as_bytes()),
                ("lon", None, lon.as_bytes()),
            ],
        );
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(&format!("Cannot found column '{missing}'")), "{body}");
    }
    let big = vec![b'a'; 5000];
    let (status, _, body) = post_multipart(&server.addr, "/search/csv", &[("data", Some("x.csv"), &big)]);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (status, _) = server.request("GET", "/search/csv");
    assert_eq!(status, 405);
    // Still serving.
    assert_eq!(server.get_json("/search?q=paris").0, 200);
}

#[test]
fn result_columns_select_and_order_the_added_columns() {
    let server = Server::start(&[&fixture("small.ndjson")]);
    let input = b"q\n12 rue de la paix paris\n";
    let (out, _) = batch(server.dir.path(), input, &["--result-columns", "result_id,result_score"]);
    let r = rows(&out, b',');
    assert_eq!(r[0], vec!["q", "result_id", "result_score"]);
    assert_eq!(r[1][1], "75102_0001_00012");
    let (status, _, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[
            ("data", Some("in.csv"), input),
            ("result_columns", None, b"result_id"),
            ("result_columns", None, b"result_score"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), out.replace('\n', "\r\n"));
    let (status, _, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[("data", Some("in.csv"), input), ("result_columns", None, b"nope")],
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn http_tab_delimiter_spelled_out() {
    let server = Server::start(&[&fixture("small.ndjson")]);
    let input = b"id\tadresse\n1\t12 rue de la paix paris\n";
    for d in [&b"tab"[..], &b"\\t"[..]] {
        let (status, _, body) = post_multipart(
            &server.addr,
            "/search/csv",
            &[("data", Some("in.tsv"), input), ("columns", None, b"adresse"), ("delimiter", None, d)],
        );
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("75102_0001_00012"), "{body}");
    }
}

/// Issue 25, defects 4 and 5: an encoding is decided row by row, on the
/// whole input, not on its first 64 KiB; a byte order mark is dropped in
/// every encoding; nothing is replaced without a word.
#[test]
fn encodings_are_read_row_by_row_and_a_bom_goes_in_every_encoding() {
    let dir = db();
    // 4,001 ASCII rows, then a Windows-1252 one: past the first 64 KiB.
    let mut input = b"id;adresse;ville\n".to_vec();
    for i in 0..4_001 {
        input.extend_from_slice(format!("{i};{};Lyon\n", "x".repeat(12)).as_bytes());
    }
    input.extend_from_slice(b"last;3 rue de la r\xe9publique;Marseille\n");
    assert!(input.len() > 65_536);
    let (out, err) = batch(dir.path(), &input, &["--columns", "adresse,ville"]);
    let r = rows(&out, b';');
    let last = r.last().unwrap();
    assert_eq!(last[1], "3 rue de la république", "the row is read as Windows-1252, not replaced");
    assert_eq!(column(&[r[0].clone(), last.clone()], "result_id"), ["13055_0003_00003"]);
    assert!(err.contains("line 4003 is not UTF-8"), "{err}");
    // A UTF-8 BOM, then Windows-1252 bytes.
    let (out, err) = batch(dir.path(), b"\xef\xbb\xbfid;adresse\n1;3 rue de la r\xe9publique marseille\n", &[]);
    let r = rows(&out, b';');
    assert_eq!((r[0][0].as_str(), r[1][1].as_str()), ("id", "3 rue de la république marseille"));
    assert!(err.contains("line 2 is not UTF-8"), "{err}");
    // UTF-8 only, asked for: the row is malformed and comes back as it was.
    let o = Command::new(bin())
        .args(["batch", "--data", &dir.path().display().to_string(), "--input", "-", "--output", "-"])
        .args(["--encoding", "utf-8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut o = o;
    o.stdin.take().unwrap().write_all(b"id;adresse\n1;r\xe9publique\n").unwrap();
    let o = o.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(o.stdout.windows(9).any(|w| w == b"r\xe9publiqu"), "{:?}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("malformed"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2: not valid UTF-8"));

    // Over HTTP: a BOM with encoding=latin1 (was a 200 with an empty body),
    // and the mixed file, said so in a header.
    let server = Server::serve(dir);
    let (status, head, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[
            ("data", Some("in.csv"), b"\xef\xbb\xbfid;adresse;ville\n1;3 rue de la r\xe9publique;Marseille\n"),
            ("columns", None, b"adresse"),
            ("columns", None, b"ville"),
            ("encoding", None, b"latin1"),
        ],
    );
    assert_eq!(status, 200, "{head}");
    let r = rows(&String::from_utf8(body).unwrap(), b';');
    assert_eq!(r[0][0], "id");
    assert_eq!(column(&r, "result_id"), ["13055_0003_00003"]);
    assert!(head.to_ascii_lowercase().contains("x-cairn-input-encoding: windows-1252"), "{head}");
    let (status, head, body) = post_multipart(
        &server.addr,
        "/search/csv",
        &[("data", Some("in.csv"), &input), ("columns", None, b"adresse"), ("columns", None, b"ville")],
    );
    assert_eq!(status, 200, "{head}");
    // Every row that is not ASCII is Windows-1252: so the file is.
    assert!(head.to_ascii_lowercase().contains("x-cairn-input-encoding: windows-1252"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("last;3 rue de la république;Marseille;"), "{}", &body[body.len() - 300..]);
    // Rows of both: mixed, each read as it is.
    let both = "id;adresse;ville\n1;3 rue de la république;Marseille\n".as_bytes().to_vec();
    let both = [both, b"2;3 rue de la r\xe9publique;Marseille\n".to_vec()].concat();
    let (status, head, body) = post_multipart(&server.addr, "/search/csv", &[("data", Some("in.csv"), &both)]);
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("x-cairn-input-encoding: mixed"), "{head}");
    let r = rows(&String::from_utf8(body).unwrap(), b';');
    assert_eq!((r[1][1].as_str(), r[2][1].as_str()), ("3 rue de la république", "3 rue de la république"));
}

/// Issue 24, item 5: an encoding forced on a file it does not fit is said
/// once, with the first line: Windows-1252 bytes under `--encoding utf-8`,
/// UTF-8 text under `--encoding latin1` (which decodes, into mojibake).
#[test]
fn a_forced_encoding_that_does_not_fit_is_said_with_its_first_line() {
    let dir = db();
    let run = |input: &[u8], encoding: &str| {
        let mut child = Command::new(bin())
            .args(["batch", "--data", &dir.path().display().to_string(), "--input", "-", "--output", "-"])
            .args(["--encoding", encoding, "--columns", "adresse"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let cp1252 = b"id;adresse\n1;3 rue de la republique marseille\n2;3 all\xe9e du march\xe9\n3;r\xe9publique\n";
    let (_, err) = run(cp1252, "utf-8");
    assert!(err.contains("warning: --encoding utf-8 does not decode line 3 (2 rows in all)"), "{err}");
    let utf8 = "id;adresse\n1;3 rue de la republique marseille\n2;3 rue de la république marseille\n";
    let (out, err) = run(utf8.as_bytes(), "latin1");
    assert!(out.contains("rÃ©publique"), "read as asked: {out}");
    assert!(err.contains("warning: line 3 is UTF-8 read as Windows-1252 as --encoding latin1 says"), "{err}");
    // The right encoding says nothing.
    let (_, err) = run(utf8.as_bytes(), "utf-8");
    assert!(!err.contains("warning"), "{err}");
    let (_, err) = run(cp1252, "latin1");
    assert!(!err.contains("warning"), "{err}");
}

/// Issue 24, item 7: `/search/csv` ends its lines with `\r\n` as addok-csv
/// does (the command line keeps `\n`), and a result column named like an
/// input column is no second column of that name: as in addok-csv, the
/// result fills the input's column when the row has one.
#[test]
fn csv_answers_end_lines_as_addok_csv_and_never_repeat_a_column_name() {
    let dir = db();
    let input =
        b"id,adresse,latitude,result_label\n1,12 rue de la paix paris,1.5,mine\n2,nulle part zzz,2.5,mine too\n";
    let (out, _) = batch(dir.path(), input, &["--columns", "adresse"]);
    assert!(!out.contains('\r'), "the command line writes \\n: {out:?}");
    let r = rows(&out, b',');
    let mut names = r[0].clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), r[0].len(), "a column name twice: {:?}", r[0]);
    assert_eq!(&r[0][..4], ["id", "adresse", "latitude", "result_label"]);
    assert_eq!(r[0][4], "longitude", "{:?}", r[0]);
    assert_eq!(column(&r, "latitude"), ["48.86905", "2.5"], "found: the result's; not found: the input's");
    assert_eq!(column(&r, "result_label"), ["12 Rue de la Paix 75002 Paris", "mine too"]);
    assert_eq!(column(&r, "result_status"), ["ok", "not-found"]);

    let server = Server::serve(dir);
    let (status, head, body) =
        post_multipart(&server.addr, "/search/csv", &[("data", Some("in.csv"), input), ("columns", None, b"adresse")]);
    assert_eq!(status, 200, "{head}");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(body.matches("\r\n").count(), 3, "{body:?}");
    assert_eq!(body.matches('\n').count(), 3, "every line ends with \\r\\n: {body:?}");
    let r = rows(&body, b',');
    assert_eq!(r[0].len(), 4 + 14 - 2, "two result columns went into the input's: {:?}", r[0]);
    assert_eq!(column(&r, "latitude"), ["48.86905", "2.5"]);
}
