//! What an import does to the records already in a database (issue 25,
//! defects 8, 9, 10 and 12), through the library's public API.

use std::io::Write;
use std::path::{Path, PathBuf};

use cairn::{Database, Error, ImportOptions, OnError, Point, ReverseQuery, SearchQuery};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn import(db: &Database, files: &[PathBuf], on_error: OnError) -> cairn::Result<cairn::ImportReport> {
    db.import(files, &ImportOptions { format: None, on_error }, &mut |_| {})
}

fn label(db: &Database, id: &str) -> Option<String> {
    db.get(id).unwrap().and_then(|f| f.prop_str("label").map(str::to_owned))
}

fn street(id: &str, name: &str, numbers: &[(&str, Option<&str>, f64)]) -> String {
    let numbers: Vec<String> = numbers
        .iter()
        .map(|(n, hid, lat)| match hid {
            Some(h) => format!(r#""{n}": {{"id": "{h}", "lat": {lat}, "lon": 5.0}}"#),
            None => format!(r#""{n}": {{"lat": {lat}, "lon": 5.0}}"#),
        })
        .collect();
    format!(
        r#"{{"id": "{id}", "type": "street", "name": "{name}", "postcode": "38000", "citycode": "38185", "city": "Grenoble", "lat": 45.0, "lon": 5.0, "importance": 0.5, "housenumbers": {{{}}}}}"#,
        numbers.join(", ")
    ) + "\n"
}

/// Defect 9: a street imported again with fewer numbers loses the others;
/// they do not stay behind relabelled with the new street's name.
#[test]
fn a_replaced_street_replaces_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let old =
        write(dir.path(), "old.ndjson", &street("st", "Rue Ancienne", &[("1", None, 45.001), ("2", None, 45.002)]));
    import(&db, &[old], OnError::Fail).unwrap();
    assert_eq!(label(&db, "st_2").as_deref(), Some("2 Rue Ancienne 38000 Grenoble"));
    let new = write(dir.path(), "new.ndjson", &street("st", "Rue Nouvelle", &[("1", None, 45.0011)]));
    let report = import(&db, &[new], OnError::Fail).unwrap();
    assert_eq!(label(&db, "st_1").as_deref(), Some("1 Rue Nouvelle 38000 Grenoble"));
    assert_eq!(label(&db, "st_2"), None, "the number the new street lacks is gone");
    assert_eq!(report.commit.total, 2);
    // Reverse near the old number's point finds no ghost of it.
    let near = db.reverse(&ReverseQuery { at: Point { lat: 45.002, lon: 5.0 }, limit: 5, filters: vec![] }).unwrap();
    assert!(near.iter().all(|f| f.prop_str("id") != Some("st_2")));
}

/// The same street twice in one import, or in two files of one import:
/// the last statement of it wins; a number another record adds after it
/// stays.
#[test]
fn the_last_statement_of_a_street_in_one_import_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let a = write(dir.path(), "a.ndjson", &street("st", "Rue A", &[("1", None, 45.001), ("2", None, 45.002)]));
    let b = write(
        dir.path(),
        "b.ndjson",
        &(street("st", "Rue B", &[("3", None, 45.003)])
            + r#"{"id": "st_9", "type": "housenumber", "parent": "st", "name": "x", "housenumber": "9", "lat": 45.009, "lon": 5.0}"#
            + "\n"),
    );
    import(&db, &[a, b], OnError::Fail).unwrap();
    let mut ids: Vec<String> = ["st_1", "st_2", "st_3", "st_9"]
        .iter()
        .filter(|id| db.get(id).unwrap().is_some())
        .map(|id| (*id).to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["st_3", "st_9"]);
    // A street without a housenumbers key says nothing of its numbers.
    let c = write(
        dir.path(),
        "c.ndjson",
        r#"{"id": "st", "type": "street", "name": "Rue C", "city": "Grenoble", "lat": 45.0, "lon": 5.0}"#,
    );
    import(&db, &[c], OnError::Fail).unwrap();
    assert_eq!(label(&db, "st_3").as_deref(), Some("3 Rue C Grenoble"));
}

/// Deleting a street deletes its numbers: none is left to answer a
/// reverse query as a number of no street.
#[test]
fn a_deleted_street_takes_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let f = write(dir.path(), "a.ndjson", &street("st", "Rue A", &[("1", None, 45.001), ("2", Some("n2"), 45.002)]));
    import(&db, &[f], OnError::Fail).unwrap();
    let ((), report) = db.write(|b| b.delete("st").map(|_| ())).unwrap();
    assert_eq!((report.deleted, report.total), (3, 0));
    assert!(db.get("n2").unwrap().is_none());
    assert!(db
        .reverse(&ReverseQuery { at: Point { lat: 45.002, lon: 5.0 }, limit: 1, filters: vec![] })
        .unwrap()
        .is_empty());
}

/// Defect 8: `s2` with number `1` would make `s2_1`, the id of another
/// street. Refused, naming the id; with skipping asked for, the line is
/// skipped and the other street is untouched.
#[test]
fn a_made_up_id_never_replaces_an_unrelated_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let f = write(
        dir.path(),
        "a.ndjson",
        &(street("s2_1", "Rue Voisine", &[]) + &street("s2", "Rue Deux", &[("1", None, 45.001)])),
    );
    match import(&db, std::slice::from_ref(&f), OnError::Fail) {
        Err(Error::BadInput { line: 2, reason }) => {
            assert!(reason.contains("\"s2_1\"") && reason.contains("of a street"), "{reason}");
        }
        other => panic!("{:?}", other.map(|r| r.commit.total)),
    }
    assert_eq!(db.len(), 0, "nothing of a refused import is committed");
    let report = import(&db, &[f], OnError::Skip).unwrap();
    assert_eq!(report.skipped.count, 1);
    assert_eq!(report.skipped.first[0].0, 2, "the line of s2");
    assert_eq!(label(&db, "s2_1").as_deref(), Some("Rue Voisine 38000 Grenoble"));
    // The same street's own number may be replaced.
    let again = write(dir.path(), "b.ndjson", &street("s", "Rue S", &[("4", None, 45.004)]));
    import(&db, std::slice::from_ref(&again), OnError::Fail).unwrap();
    import(&db, &[again], OnError::Fail).unwrap();
    assert_eq!(label(&db, "s_4").as_deref(), Some("4 Rue S 38000 Grenoble"));
}

const CSV_HEAD: &str = "id;id_fantoir;numero;rep;nom_voie;code_postal;code_insee;nom_commune;lon;lat\n";

fn csv_row(id: &str, street: &str, number: u32, lat: f64) -> String {
    format!("{id};{street};{number};;Rue de la Gare;38000;38185;Grenoble;5.0;{lat}\n")
}

fn point_of(db: &Database, id: &str) -> Point {
    db.get(id).unwrap().unwrap().point
}

fn importance_of(db: &Database, id: &str) -> f64 {
    match db.get(id).unwrap().unwrap().prop("importance") {
        Some(cairn::Prop::Num(n)) => *n,
        other => panic!("{other:?}"),
    }
}

/// Defect 10: BAN CSV files that touch one commune, imported together or
/// one after the other, give its street and municipality the centre and
/// importance of all its rows, not of the last file's; a row id repeated
/// counts once.
#[test]
fn csv_streets_and_communes_come_from_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| {
            let rows: String = (0..4)
                .map(|j| csv_row(&format!("r{i}{j}"), "38185_0001", i * 10 + j, 45.0 + f64::from(i * 10 + j) * 0.001))
                .collect();
            write(dir.path(), &format!("part{i}.csv"), &(CSV_HEAD.to_owned() + &rows))
        })
        .collect();
    let together = Database::open(dir.path().join("together")).unwrap();
    import(&together, &files, OnError::Fail).unwrap();
    let apart = Database::open(dir.path().join("apart")).unwrap();
    for f in &files {
        import(&apart, std::slice::from_ref(f), OnError::Fail).unwrap();
    }
    // The mean of the 12 latitudes: 45 + 0.001 * mean(0..4, 10..14, 20..24).
    let want = 45.0 + 0.001 * (0..3).flat_map(|i| (0..4).map(move |j| f64::from(i * 10 + j))).sum::<f64>() / 12.0;
    for db in [&together, &apart] {
        for id in ["38185_0001", "38185"] {
            let p = point_of(db, id);
            assert!((p.lat - want).abs() < 1e-9, "{id}: {} against {want}", p.lat);
        }
        assert_eq!(importance_of(db, "38185_0001"), importance_of(&together, "38185_0001"));
    }
    // One file with a row repeated: counted once.
    let repeated = write(
        dir.path(),
        "repeated.csv",
        &(CSV_HEAD.to_owned()
            + &csv_row("x1", "38185_0002", 1, 45.0)
            + &csv_row("x1", "38185_0002", 1, 45.0)
            + &csv_row("x2", "38185_0002", 2, 45.3)),
    );
    let db = Database::open(dir.path().join("repeated")).unwrap();
    import(&db, &[repeated], OnError::Fail).unwrap();
    assert!((point_of(&db, "38185_0002").lat - 45.15).abs() < 1e-9);
    // An update file of one row moves the centre by its share, no more.
    let update = write(dir.path(), "update.csv", &(CSV_HEAD.to_owned() + &csv_row("x3", "38185_0002", 3, 45.6)));
    import(&db, &[update], OnError::Fail).unwrap();
    assert!((point_of(&db, "38185_0002").lat - 45.3).abs() < 1e-9, "{:?}", point_of(&db, "38185_0002"));
    assert!((point_of(&db, "38185").lat - 45.3).abs() < 1e-9);
}

/// Defect 12: a gzip file cut short fails the import even when bad lines
/// are skipped: it is no bad line, and the rest of the file is lost.
#[test]
fn a_truncated_gzip_fails_the_import_whatever_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("cut.csv.gz", {
            let rows: String = (0..20_000).map(|i| csv_row(&format!("r{i}"), "38185_0001", i, 45.0)).collect();
            CSV_HEAD.to_owned() + &rows
        }),
        ("cut.ndjson.gz", (0..5_000).map(|i| street(&format!("s{i}"), "Rue de la Gare", &[])).collect()),
    ] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let db = Database::open(dir.path().join(format!("db-{name}"))).unwrap();
        for on_error in [OnError::Fail, OnError::Skip] {
            match import(&db, std::slice::from_ref(&path), on_error) {
                Err(Error::BadInput { reason, .. }) => assert!(reason.contains("cannot be read"), "{name}: {reason}"),
                other => panic!("{name} {on_error:?}: {:?}", other.map(|r| (r.commit.total, r.skipped.count))),
            }
            assert_eq!(db.generation(), 0, "{name}: nothing committed");
        }
    }
}

/// Numbers given as strings are numbers ("importance": "0.9"), a bool is a
/// bool, coordinates may carry spaces; a number that is no number is
/// refused.
#[test]
fn field_values_keep_their_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let f = write(
        dir.path(),
        "a.ndjson",
        r#"{"id": "m", "type": "municipality", "name": "Ham", "importance": "0.9", "capital": true, "lat": " 45.5", "lon": "2.5 "}"#,
    );
    import(&db, &[f], OnError::Fail).unwrap();
    let m = db.get("m").unwrap().unwrap();
    assert_eq!(m.prop("importance"), Some(&cairn::Prop::Num(0.9)));
    assert_eq!(m.prop("capital"), Some(&cairn::Prop::Bool(true)));
    assert_eq!((m.point.lat, m.point.lon), (45.5, 2.5));
    let found = db.search(&SearchQuery::new("ham")).unwrap();
    assert!((found[0].score - (1.0 + 0.09) / 1.1).abs() < 1e-6, "importance 0.9 ranks: {}", found[0].score);
    let bad = write(
        dir.path(),
        "b.ndjson",
        r#"{"id": "n", "type": "municipality", "name": "X", "importance": "high", "lat": 1, "lon": 1}"#,
    );
    match import(&db, &[bad], OnError::Fail) {
        Err(Error::BadInput { line: 1, reason }) => assert!(reason.contains("importance"), "{reason}"),
        other => panic!("{:?}", other.map(|r| r.commit.total)),
    }
}

fn csv_row_at(id: &str, street: &str, name: &str, insee: &str, lat: f64) -> String {
    format!("{id};{street};1;;{name};01000;{insee};Ville{insee};5.0;{lat}\n")
}

/// A housenumber that moves to another street (or commune) takes its weight
/// with it: the street and commune it left are derived again, and a street
/// left with no number is gone. Deleting a number does the same.
#[test]
fn derived_streets_and_communes_follow_their_numbers_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let a = write(
        dir.path(),
        "a.csv",
        &(CSV_HEAD.to_owned()
            + &csv_row_at("h1", "S1", "Rue Alpha", "01001", 45.0)
            + &csv_row_at("h2", "S1", "Rue Alpha", "01001", 45.2)
            + &csv_row_at("h3", "S2", "Rue Beta", "02001", 46.0)),
    );
    import(&db, &[a], OnError::Fail).unwrap();
    assert!((point_of(&db, "S1").lat - 45.1).abs() < 1e-9);
    // h1 and h2 move to S2, in another commune.
    let b = write(
        dir.path(),
        "b.csv",
        &(CSV_HEAD.to_owned()
            + &csv_row_at("h1", "S2", "Rue Beta", "02001", 46.2)
            + &csv_row_at("h2", "S2", "Rue Beta", "02001", 46.4)),
    );
    import(&db, &[b], OnError::Fail).unwrap();
    assert!(db.get("S1").unwrap().is_none(), "a derived street with no number left is gone");
    assert!(db.get("01001").unwrap().is_none(), "and so is its commune");
    assert!((point_of(&db, "S2").lat - 46.2).abs() < 1e-9);
    assert!((point_of(&db, "02001").lat - 46.2).abs() < 1e-9);
    assert!(db.search(&SearchQuery::new("rue alpha")).unwrap().iter().all(|f| f.prop_str("id") != Some("S1")));
    // A number deleted: its street moves by its share.
    db.write(|b| b.delete("h3").map(|_| ())).unwrap();
    assert!((point_of(&db, "S2").lat - 46.3).abs() < 1e-9);
    assert!((point_of(&db, "02001").lat - 46.3).abs() < 1e-9);
    // Derived records do not show how they were made.
    assert!(db.get("S2").unwrap().unwrap().prop("_derived").is_none());
}

/// A street or municipality given by a document of its own (NDJSON) is
/// never replaced by one derived from CSV rows, whichever comes first.
#[test]
fn csv_rows_never_replace_a_document() {
    let town = r#"{"id": "01001", "type": "municipality", "name": "Ville", "citycode": "01001", "population": 5000, "importance": 0.8, "context": "01, Ain", "lat": 45.5, "lon": 5.5}"#;
    let street = r#"{"id": "S9", "type": "street", "name": "Avenue Document", "citycode": "01001", "importance": 0.9, "lat": 45.5, "lon": 5.5}"#;
    for order in [["doc", "csv"], ["csv", "doc"]] {
        let dir = tempfile::tempdir().unwrap();
        let doc = write(dir.path(), "doc.ndjson", &format!("{town}\n{street}\n"));
        let csv =
            write(dir.path(), "rows.csv", &(CSV_HEAD.to_owned() + &csv_row_at("h1", "S9", "Rue Csv", "01001", 45.0)));
        let files: Vec<PathBuf> = order.iter().map(|o| if *o == "doc" { doc.clone() } else { csv.clone() }).collect();
        let db = Database::open(dir.path().join("db")).unwrap();
        import(&db, &files, OnError::Fail).unwrap();
        let t = db.get("01001").unwrap().unwrap();
        assert_eq!(t.prop("population"), Some(&cairn::Prop::Int(5000)), "{order:?}");
        assert_eq!(t.prop_str("context"), Some("01, Ain"), "{order:?}");
        assert_eq!(label(&db, "S9").as_deref(), Some("Avenue Document"), "{order:?}");
        // The row is a number of the street all the same.
        assert_eq!(label(&db, "h1").as_deref(), Some("1 Avenue Document"), "{order:?}");
    }
}

/// Made-up ids, the other way round: a record of the data whose id an
/// importer made up before is refused too, whatever the order; and two
/// numbers of one street may not share an id. Importing the same file
/// twice gives the same answer both times.
#[test]
fn id_collisions_are_refused_both_ways_and_alike_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let f = write(
        dir.path(),
        "a.ndjson",
        &(street("s2", "Rue Deux", &[("1", None, 45.001)]) + &street("s2_1", "Rue Voisine", &[])),
    );
    for _ in 0..2 {
        match import(&db, std::slice::from_ref(&f), OnError::Fail) {
            Err(Error::BadInput { line: 2, reason }) => assert!(reason.contains("\"s2_1\""), "{reason}"),
            other => panic!("{:?}", other.map(|r| r.commit.total)),
        }
        assert_eq!(db.len(), 0);
    }
    let twice =
        write(dir.path(), "b.ndjson", &street("s", "Rue S", &[("1", Some("s_2"), 45.001), ("2", None, 45.002)]));
    match import(&db, &[twice], OnError::Fail) {
        Err(Error::BadInput { line: 1, reason }) => assert!(reason.contains("\"s_2\""), "{reason}"),
        other => panic!("{:?}", other.map(|r| r.commit.total)),
    }
    // A number given on its own line, then its street's full list: the
    // list wins, on the first import as on the second.
    let f = write(
        dir.path(),
        "c.ndjson",
        &(r#"{"id": "h9", "type": "housenumber", "parent": "s", "name": "x", "housenumber": "9", "lat": 45.009, "lon": 5.0}"#.to_owned()
            + "\n"
            + &street("s", "Rue S", &[("1", None, 45.001)])),
    );
    let db = Database::open(dir.path().join("db2")).unwrap();
    let first = import(&db, std::slice::from_ref(&f), OnError::Fail).unwrap().commit.total;
    let second = import(&db, &[f], OnError::Fail).unwrap().commit.total;
    assert_eq!((first, second), (2, 2));
    assert!(db.get("h9").unwrap().is_none());
}

/// A replica that becomes a primary and commits starts a history of its
/// own: its former fellow replicas must not take its commits for the old
/// primary's (issue 25, defect 2, by failover).
#[test]
fn a_promoted_replica_starts_a_history_at_its_first_commit() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Database::open(dir.path().join("p")).unwrap();
    let f = write(dir.path(), "a.ndjson", &street("st", "Rue A", &[("1", None, 45.001)]));
    import(&primary, &[f], OnError::Fail).unwrap();
    let mut snapshot = Vec::new();
    primary.create_snapshot(&mut snapshot).unwrap();
    let replica = Database::open(dir.path().join("r")).unwrap();
    replica.follow_snapshot(&mut &snapshot[..]).unwrap();
    assert_eq!(replica.history().unwrap(), primary.history().unwrap());
    replica.write(|b| b.delete("st").map(|_| ())).unwrap();
    assert_ne!(replica.history().unwrap(), primary.history().unwrap());
    // A restore starts one at once.
    let restored = Database::open(dir.path().join("x")).unwrap();
    restored.restore_snapshot(&mut &snapshot[..]).unwrap();
    assert_ne!(restored.history().unwrap(), primary.history().unwrap());
    // The primary's own commits keep its history.
    let before = primary.history().unwrap();
    primary.write(|b| b.delete("st_1").map(|_| ())).unwrap();
    assert_eq!(primary.history().unwrap(), before);
}
