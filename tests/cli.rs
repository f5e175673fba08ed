//! The `cairn` command line: import, search, reverse, and crash safety.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cairn, enc, fixture, ids, import, repo_file, Server};

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "cairn failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn import_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        cairn(&["import", "--data", &dir.path().display().to_string(), &fixture("small.ndjson").display().to_string()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("imported 16 documents"), "{text}");
    assert!(text.contains("generation 1"), "{text}");
}

#[test]
fn cli_search_and_reverse_print_the_servers_geojson() {
    let server = Server::start(&[&fixture("small.ndjson")]);
    let data = server.dir.path().display().to_string();
    let cli =
        stdout_json(&cairn(&["search", "--data", &data, "--limit", "3", "12", "rue", "de", "la", "paix", "paris"]));
    let (_, http) = server.get_json(&format!("/search?q={}&limit=3", enc("12 rue de la paix paris")));
    assert_eq!(cli, http);
    assert_eq!(ids(&cli)[0], "75102_0001_00012");

    let cli = stdout_json(&cairn(&[
        "search",
        "--data",
        &data,
        "--type",
        "street",
        "--lat",
        "43.3",
        "--lon",
        "5.37",
        "rue de la republique",
    ]));
    let (_, http) = server.get_json("/search?q=rue+de+la+republique&type=street&lat=43.3&lon=5.37");
    assert_eq!(cli, http);

    let cli = stdout_json(&cairn(&["reverse", "--data", &data, "--lat", "45.7631", "--lon", "4.8359"]));
    let (_, http) = server.get_json("/reverse?lat=45.7631&lon=4.8359");
    assert_eq!(cli, http);
    assert_eq!(ids(&cli), vec!["69123_0002_00003"]);
}

#[test]
fn bad_cli_input_is_a_message_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let out = cairn(&["import", "--data", &data, "/no/such/file.ndjson"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    import(dir.path(), &[&fixture("small.ndjson")]);
    let out = cairn(&["reverse", "--data", &data, "--lat", "95", "--lon", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
    let out = cairn(&["search", "--data", &data, &"a".repeat(201)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too long"));
    let out = cairn(&["search", "--data", "/no/such/db", "paris"]);
    assert!(!out.status.success());
}

/// `--memory` takes bytes or a size with a unit; anything else, or too
/// little, is a message naming the option and a non-zero exit, before
/// anything is created.
#[test]
fn import_memory_is_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db").display().to_string();
    let file = fixture("small.ndjson").display().to_string();
    for (bad, says) in [
        ("lots", "not a size"),
        ("12XB", "not a size"),
        ("-5MiB", "not a size"),
        ("1000", "too small"),
        ("", "not a size"),
    ] {
        // One word, or clap takes "-5MiB" for an option of its own.
        let out = cairn(&["import", "--data", &data, &format!("--memory={bad}"), &file]);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "--memory {bad:?} was taken");
        assert!(err.contains("--memory") && err.contains(says), "--memory {bad:?}: {err}");
        assert!(!dir.path().join("db").exists(), "--memory {bad:?} made a database");
    }
    // A budget far above the machine's memory is a bound, not an allocation.
    for good in ["1MiB", "300MB", "1gib", "1048576", "99999GiB", "1TiB"] {
        let out = cairn(&["import", "--data", &data, "--memory", good, &file]);
        assert!(out.status.success(), "--memory {good:?}: {}", stderr_of(&out));
    }
}

#[test]
fn malformed_lines_fail_the_import_or_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    import(dir.path(), &[&fixture("small.ndjson")]);
    let bad = dir.path().join("bad.ndjson");
    let good = r#"{"id": "x1", "type": "street", "name": "Rue Neuve", "citycode": "75056", "city": "Paris", "lat": 48.8, "lon": 2.3}"#;
    std::fs::write(&bad, format!("{good}\n{{not json\n")).unwrap();

    let out = cairn(&["import", "--data", &data, &bad.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    // Nothing of the failed import is visible; the previous generation is.
    let v = stdout_json(&cairn(&["search", "--data", &data, "rue neuve"]));
    assert!(!ids(&v).contains(&"x1".to_owned()));
    assert_eq!(
        ids(&stdout_json(&cairn(&["search", "--data", &data, "12 rue de la paix paris"])))[0],
        "75102_0001_00012"
    );

    let out = cairn(&["import", "--data", &data, "--skip-invalid", &bad.display().to_string()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped line 2"));
    let v = stdout_json(&cairn(&["search", "--data", &data, "rue neuve paris"]));
    assert_eq!(ids(&v)[0], "x1");
}

#[test]
fn ban_csv_and_gzip_imports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    // gzip the CSV fixture with the system's gzip-compatible encoder: flate2 via cairn is what we test.
    let gz = dir.path().join("adresses-49.csv.gz");
    let enc = flate(&std::fs::read(fixture("small.csv")).unwrap());
    std::fs::File::create(&gz).unwrap().write_all(&enc).unwrap();
    import(dir.path(), &[&gz]);
    let v = stdout_json(&cairn(&["search", "--data", &data, "39 bis avenue des bruyeres cholet"]));
    assert_eq!(ids(&v)[0], "49099_0136_00039_bis");
    let v = stdout_json(&cairn(&["search", "--data", &data, "--type", "municipality", "cholet"]));
    assert_eq!(ids(&v), vec!["49099"]);
    let out = cairn(&["import", "--data", &data, "--format", "ban-csv", &fixture("small.csv").display().to_string()]);
    assert!(out.status.success());
}

/// gzip by the `gzip` tool when present, so the test does not depend on our own encoder.
fn flate(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

#[test]
fn a_server_holding_the_database_makes_import_fail_clearly() {
    let server = Server::start(&[&fixture("small.ndjson")]);
    let out = cairn(&[
        "import",
        "--data",
        &server.dir.path().display().to_string(),
        &fixture("small.ndjson").display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Writes a BAN NDJSON file big enough that importing it takes a while.
fn big_file(path: &std::path::Path, streets: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for s in 0..streets {
        let lat = 44.0 + (s % 1000) as f64 * 0.001;
        let lon = 1.0 + (s / 1000) as f64 * 0.01;
        write!(f, r#"{{"id": "big_{s}", "type": "street", "name": "Rue Nombre {s}", "postcode": "31000", "citycode": "31555", "city": "Toulouse", "lat": {lat}, "lon": {lon}, "importance": 0.5, "housenumbers": {{"#).unwrap();
        for n in 1..=40 {
            let sep = if n == 1 { "" } else { ", " };
            write!(f, r#"{sep}"{n}": {{"id": "big_{s}_{n}", "lat": {lat}, "lon": {lon}}}"#).unwrap();
        }
        writeln!(f, "}}}}").unwrap();
    }
}

#[test]
fn killing_an_import_leaves_the_previous_generation_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    import(&data, &[&fixture("small.ndjson")]);
    let big = dir.path().join("big.ndjson");
    big_file(&big, 4000);
    let data_s = data.display().to_string();
    // Kill at several moments: parsing, indexing, writing the generation files.
    for delay_ms in [50u64, 300, 700, 1200, 2000] {
        let mut child = Command::new(common::bin())
            .args(["import", "--data", &data_s, &big.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // A reader sees exactly one consistent generation.
        let v = stdout_json(&cairn(&["search", "--data", &data_s, "12 rue de la paix paris"]));
        assert_eq!(ids(&v)[0], "75102_0001_00012", "after kill at {delay_ms} ms");
        let big_found = ids(&stdout_json(&cairn(&["search", "--data", &data_s, "rue nombre 17 toulouse"])))
            .contains(&"big_17".to_owned());
        if !finished {
            // Reopening read-write recovers and still holds the fixture.
            let db = cairn::Database::open(&data).expect("reopen after kill");
            assert!(db.generation() >= 1);
            assert!(db.get("75102_0001_00012").unwrap().is_some());
            if db.generation() == 1 {
                assert_eq!(db.len(), 16, "generation 1 holds exactly its documents");
                assert!(!big_found);
            } else {
                // The kill came after the commit point: the whole file is there.
                assert_eq!(db.len(), 16 + 4000 * 41);
            }
            assert!(std::fs::read_dir(&data)
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
        }
    }
}

/// A file headed `lat<TAB>lon<TAB>expected_id` is scored on reverse: a
/// point at a housenumber finds it first, a wrong expectation is a miss,
/// and a line that is not a point is an error naming it.
#[test]
fn eval_scores_reverse_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let data = data.display().to_string();
    assert!(cairn(&["import", "--data", &data, &fixture("small.ndjson").display().to_string()]).status.success());
    let file = dir.path().join("reverse.tsv");
    std::fs::write(&file, "lat\tlon\texpected_id\n45.7631\t4.8359\t69123_0002_00003\n45.7631\t4.8359\tnot_there\n")
        .unwrap();
    let out = cairn(&["eval", "--data", &data, &file.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row = text.lines().find(|l| l.starts_with("reverse ")).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..3], ["2", "50.0%"], "{row}");
    std::fs::write(&file, "lat\tlon\texpected_id\n45.7631\tfour\tx\n").unwrap();
    let out = cairn(&["eval", "--data", &data, &file.display().to_string()]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("reverse.tsv:2"), "{}", stderr_of(&out));
}

#[test]
fn bundled_dataset_answers_the_development_queries() {
    // The committed dataset and its generated query set (datasets/make_queries.py):
    // the relevance floor of issue 3, per kind of noise and overall.
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &[&repo_file("datasets/fr-sample/addresses.ndjson.gz")]);
    let db = cairn::Database::open_read_only(dir.path()).unwrap();
    let (kinds, mut right, mut wrong) = top1_by_kind(&db, "datasets/dev-queries.tsv");
    let (n, ok) = kinds.values().fold((0, 0), |a, k| (a.0 + k.0, a.1 + k.1));
    assert!(n >= 2000 && ok * 100 >= n * 97, "top-1 {ok}/{n}");
    // A street name found in 47 towns, with the postcode typed last: the
    // Marseille record, whose two city names make every word of it weigh
    // less, must still be found (the peer study's search.tsv missed it).
    for (q, id) in [
        ("7, Rue du 2ème Régiment de Dragons 13010", "13055_0171_00007"),
        ("Rue du 2ème Régiment de Dragons 13010", "13055_0171"),
    ] {
        let found = db.search(&cairn::SearchQuery::new(q)).unwrap();
        assert_eq!(found.first().and_then(|f| f.prop_str("id")), Some(id), "{q}");
    }
    for (kind, (n, ok)) in &kinds {
        assert!(ok * 100 >= n * 90, "{kind}: top-1 {ok}/{n}");
    }
    right.sort_by(f64::total_cmp);
    assert!(right[right.len() / 2] > 0.9, "right answers score high");
    wrong.sort_by(f64::total_cmp);
    if !wrong.is_empty() {
        assert!(wrong[wrong.len() / 2] < right[right.len() / 2], "scores are calibrated");
    }
    // Every city of 30,000 people or more (datasets/make_city_queries.py),
    // by its name as written or folded: a big city's name is in all of its
    // streets, a common word that must still find the city ("paris" gave
    // a street of Paris until 2026-11-29). Its shortest unshared start
    // ("pari", "stras") is ambiguous at times ("toul" is Toul too).
    let (kinds, _, _) = top1_by_kind(&db, "datasets/city-queries.tsv");
    for (kind, (n, ok)) in &kinds {
        let floor = if kind == "city_prefix" { 80 } else { 100 };
        assert!(*n >= 250 && ok * 100 >= n * floor, "{kind}: top-1 {ok}/{n}");
    }
}

/// Top-1 right answers per kind of a query file (`query<TAB>id<TAB>kind`),
/// and the scores of the right and of the wrong first results.
#[allow(clippy::type_complexity)]
fn top1_by_kind(
    db: &cairn::Database,
    file: &str,
) -> (std::collections::BTreeMap<String, (usize, usize)>, Vec<f64>, Vec<f64>) {
    let queries = std::fs::read_to_string(repo_file(file)).unwrap();
    let mut kinds = std::collections::BTreeMap::<String, (usize, usize)>::default();
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for line in queries.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let found = db.search(&cairn::SearchQuery::new(cols[0])).unwrap();
        let ok = found.first().and_then(|f| f.prop_str("id")) == Some(cols[1]);
        let k = kinds.entry(cols[2].to_owned()).or_default();
        k.0 += 1;
        k.1 += usize::from(ok);
        if let Some(f) = found.first() {
            if ok {
                right.push(f.score);
            } else {
                wrong.push(f.score);
            }
        }
    }
    (kinds, right, wrong)
}

#[test]
fn demo_never_clears_a_directory_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = cairn(&["serve", "--demo", "--data", &dir.path().display().to_string(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cairn demo directory"));
    assert_eq!(std::fs::read_to_string(dir.path().join("precious.txt")).unwrap(), "keep me");
}

#[test]
fn an_id_repeated_in_one_file_keeps_the_last_version() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dup.ndjson");
    let line = |id: &str, name: &str| {
        format!(r#"{{"id": "{id}", "type": "street", "name": "{name}", "city": "Paris", "lat": 48.8, "lon": 2.3}}"#)
    };
    std::fs::write(&f, [line("a", "Rue Alpha"), line("b", "Rue Beta"), line("a", "Rue Gamma")].join("\n")).unwrap();
    let data = dir.path().join("db");
    import(&data, &[&f]);
    let v = stdout_json(&cairn(&["search", "--data", &data.display().to_string(), "rue gamma paris"]));
    assert_eq!(ids(&v)[0], "a");
    let db = cairn::Database::open_read_only(&data).unwrap();
    assert_eq!(db.len(), 2);
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Issue 24, item 2: a command that creates a database says so on stderr,
/// naming it (a mistyped `--data` must not serve an empty database without
/// a word), and a read-only command refuses a directory without one,
/// creating nothing.
#[test]
fn a_new_database_is_said_and_read_only_commands_refuse_none() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("emptydir");
    std::fs::create_dir(&empty).unwrap();
    let e = empty.display().to_string();

    for args in [
        vec!["search", "--data", &e, "paris"],
        vec!["reverse", "--data", &e, "--lat", "48.8", "--lon", "2.3"],
        vec!["batch", "--data", &e, "--input", "-", "--output", "-"],
        vec!["snapshot", "create", "--data", &e, "--out", "/dev/null"],
    ] {
        let out = cairn(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr_of(&out).contains(&e), "{args:?}: {}", stderr_of(&out));
        assert!(entries(&empty).is_empty(), "{args:?} created {:?}", entries(&empty));
    }

    // serve: the note comes before the banner, so it is in the log once
    // the banner is read.
    let log = root.path().join("serve.log");
    let served = tempfile::tempdir().unwrap();
    let server = Server::serve_logged(served, &[], Stdio::from(std::fs::File::create(&log).unwrap()));
    let text = std::fs::read_to_string(&log).unwrap();
    let store = server.dir.path().join("store.redb");
    assert!(text.contains(&format!("created a new, empty one ({})", store.display())), "{text}");
    drop(server);

    let out = cairn(&["import", "--data", &e, &fixture("small.ndjson").display().to_string()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let store = empty.join("store.redb");
    assert!(stderr_of(&out).contains(&format!("created a new one ({})", store.display())), "{}", stderr_of(&out));
    // Once it exists, nothing more is said.
    let out = cairn(&["import", "--data", &e, &fixture("small.csv").display().to_string()]);
    assert!(out.status.success());
    assert!(!stderr_of(&out).contains("note:"), "{}", stderr_of(&out));
}

/// Issue 24, item 3: a setting that cannot be is a usage error (exit 2, as
/// clap's own), whichever of flag, environment or file gives it, found
/// before the directory is opened or created; the docs say so.
#[test]
fn bad_serve_settings_exit_2_before_anything_is_opened() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    let d = data.display().to_string();
    let config = root.path().join("cairn.toml");
    std::fs::write(&config, "access_log = \"xml\"\n").unwrap();
    // (flags, environment, what the message says)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--access-log", "xml"], vec![], "--access-log must be off, text or json"),
        (vec![], vec![("CAIRN_ACCESS_LOG", "xml")], "--access-log must be off, text or json"),
        (vec!["--config", config.to_str().unwrap()], vec![], "--access-log must be off, text or json"),
        (vec!["--replica-of", "https://127.0.0.1:9"], vec![], "--replica-of must be an http:// URL"),
        (vec!["--poll", "soon"], vec![], "--poll"),
    ];
    for (args, env, message) in cases {
        let out = Command::new(common::bin())
            .args(["serve", "--data", &d, "--listen", "127.0.0.1:0"])
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(message), "{args:?}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty(), "{args:?}: it served");
        assert!(!data.exists(), "{args:?}: the directory was created");
    }
    let out = Command::new(common::bin()).arg("serve").env_remove("CAIRN_DATA").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

/// Issue 24, item 4: a CSV split by another character imports; a header
/// that lacks columns names them all and the columns found; a failed
/// import into a directory without a database leaves it as it was; an
/// import of nothing says so.
#[test]
fn csv_import_errors_say_what_is_wrong_and_leave_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(fixture("small.csv")).unwrap();
    let comma = root.path().join("comma.csv");
    std::fs::write(&comma, csv.replace(';', ",")).unwrap();
    let db = root.path().join("db");
    let out = cairn(&["import", "--data", &db.display().to_string(), &comma.display().to_string()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 6 documents"));

    let bad = root.path().join("bad.csv");
    std::fs::write(&bad, "id;numero;voie;code_postal;lat\n1;2;x;49300;47\n").unwrap();
    // A directory that did not exist, and one that holds a file of the user's.
    let fresh = root.path().join("fresh");
    let kept = root.path().join("kept");
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(kept.join("notes.txt"), "mine").unwrap();
    for dir in [&fresh, &kept] {
        let out = cairn(&["import", "--data", &dir.display().to_string(), &bad.display().to_string()]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(
            err.contains("missing columns nom_voie, code_insee, nom_commune, lon (the header, split by ';', has 5 columns: id, numero, voie, code_postal, lat)"),
            "{err}"
        );
        assert!(err.contains("nothing was created"), "{err}");
    }
    assert!(!fresh.exists(), "{:?}", entries(&fresh));
    assert_eq!(entries(&kept), ["notes.txt"]);

    // A header and no rows: imported, and said.
    let header_only = root.path().join("header.csv");
    std::fs::write(&header_only, csv.lines().next().unwrap()).unwrap();
    let out = cairn(&["import", "--data", &db.display().to_string(), &header_only.display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr_of(&out).contains("warning: no documents imported: the input holds no records"),
        "{}",
        stderr_of(&out)
    );
}

/// Issue 24, item 6: `search` and `reverse` print a table for a person
/// (`--table`, the default on a terminal) and the server's `GeoJSON` for
/// programs (`--json`, the default when stdout is a pipe, as here).
#[test]
fn search_and_reverse_print_a_table_for_people_and_json_for_programs() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &[&fixture("small.ndjson")]);
    let data = dir.path().display().to_string();
    let out = cairn(&["search", "--data", &data, "--table", "--limit", "2", "rue de la republique"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["#", "score", "type", "label", "id"]);
    assert!(lines[1].starts_with("1  0.967  street  Rue de la République 13001 Marseille  13055_0003"), "{text}");
    // Columns line up, counted in characters (the accents are two bytes).
    let at = |l: &str, s: &str| l[..l.find(s).unwrap()].chars().count();
    assert_eq!(at(lines[1], "13055_0003"), at(lines[0], "id"), "{text}");
    assert_eq!(at(lines[2], "69123_0002"), at(lines[0], "id"), "{text}");

    let out = cairn(&["reverse", "--data", &data, "--table", "--lat", "45.7631", "--lon", "4.8359", "--limit", "2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().next().unwrap().ends_with("distance"), "{text}");
    assert!(text.contains("3 Rue de la République 69002 Lyon  69123_0002_00003"), "{text}");
    assert!(text.lines().nth(1).unwrap().ends_with(" 0 m"), "{text}");

    for flags in [vec![], vec!["--json"]] {
        let mut args = vec!["search", "--data", &data, "--limit", "1"];
        args.extend(flags);
        args.push("paris");
        let v = stdout_json(&cairn(&args));
        assert_eq!(v["type"], "FeatureCollection");
    }
    let out = cairn(&["search", "--data", &data, "--json", "--table", "paris"]);
    assert_eq!(out.status.code(), Some(2), "the two exclude each other");
}
