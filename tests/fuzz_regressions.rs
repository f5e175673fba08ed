//! What the fuzz targets (fuzz/) found, one test per bug, on the library.
//!
//! The inputs are in fuzz/regressions/: `<target>/<name>` is the input as
//! the fuzz target takes it (replay: `fuzz/target/x86_64-unknown-linux-gnu/
//! release/<target> fuzz/regressions/<target>/<name>`), and
//! `snapshot-restore/<name>.cairn-snapshot` is the snapshot file it makes,
//! which is what these tests restore. Each snapshot is the one of the
//! fixture database (tests/fixtures/small.ndjson) with one tantivy file of
//! the generation changed and every checksum made right again, which is what
//! a hostile or buggy producer of snapshots can send to a replica or to
//! `cairn snapshot restore`: the checksums catch damage, not intent.

use std::path::Path;

use cairn::{Database, ImportOptions, SearchQuery};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The fixture database, and what it answers.
fn fixture_db(dir: &Path) -> (Database, Vec<String>) {
    let db = Database::open(dir.join("db")).unwrap();
    db.import(&[repo("tests/fixtures/small.ndjson")], &ImportOptions::default(), &mut |_| {}).unwrap();
    let before = answers(&db).expect("the fixture answers");
    (db, before)
}

fn answers(db: &Database) -> cairn::Result<Vec<String>> {
    let mut out = Vec::new();
    for q in ["paris", "rue de la paix", "13001", "lyon"] {
        let ids: Vec<String> =
            db.search(&SearchQuery::new(q))?.iter().map(|f| format!("{:?} {:.6}", f.prop_str("id"), f.score)).collect();
        out.push(format!("{q}: {}", ids.join(",")));
    }
    Ok(out)
}

fn snapshot(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(repo(&format!("fuzz/regressions/snapshot-restore/{name}.cairn-snapshot"))).unwrap();
    // Made for this build's format and profile, or the test proves nothing.
    let m = cairn::snapshot::read_manifest(&mut &bytes[..]).expect("the regression's manifest reads");
    assert_eq!(m.profile, cairn::snapshot::profile_id(), "regenerate fuzz/regressions/snapshot-restore/{name}");
    bytes
}

/// Restores a regression snapshot into the fixture database: it must be
/// refused, leaving the database answering as before (also after a
/// reopen), or installed and then answer every query (with no panic).
fn refused_or_searchable(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = fixture_db(dir.path());
    let bytes = snapshot(name);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.restore_snapshot(&mut &bytes[..])));
    match r.unwrap_or_else(|_| panic!("restore_snapshot panicked")) {
        Err(_) => {
            assert_eq!(answers(&db).unwrap(), before, "a refused restore changed the answers");
            drop(db);
            let db = Database::open(dir.path().join("db")).unwrap();
            assert_eq!(answers(&db).unwrap(), before, "a refused restore changed the answers after a reopen");
        }
        Ok(_) => {
            for q in ["paris", "rue de la paix", "12 rue de la pa", "8 bd du port marseille", "lyon 69001", "13001"] {
                for autocomplete in [false, true] {
                    let mut sq = SearchQuery::new(q);
                    sq.autocomplete = autocomplete;
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.search(&sq)));
                    let r = r.unwrap_or_else(|_| panic!("search {q:?} (autocomplete {autocomplete}) panicked"));
                    r.unwrap_or_else(|e| panic!("search {q:?} (autocomplete {autocomplete}) failed: {e}"));
                }
            }
        }
    }
}

/// fuzz target `snapshot`, input fuzz/regressions/snapshot/tantivy-panic-in-restore:
/// 47 bytes changed at offsets 3..67 of a segment's fast-field file
/// (`gen/text/<segment>.fast`, 170 bytes). `restore_snapshot` opened the
/// staged generation (`Generation::open` -> `TextIndex::open`, engine/src/
/// text/mod.rs:106) and tantivy panicked reading the columnar footer:
/// "attempt to subtract with overflow" at tantivy-common-0.27.0/src/
/// file_slice.rs:278 (`split_from_end`) with overflow checks, "assertion
/// failed: end <= orig_range.end" (file_slice.rs:176) without (`cairn
/// snapshot restore` died, leaving restore.tmp and store.redb.incoming).
/// Fixed by caaccc0 (the staged generation is opened and probed under
/// `catch_unwind`, and refused if that panics).
#[test]
fn damaged_fast_field_file_is_refused_not_a_panic() {
    refused_or_searchable("tantivy-panic-in-restore");
}

/// fuzz target `snapshot`, input fuzz/regressions/snapshot/accepted-unsearchable:
/// 207 bytes changed at offsets 576..2049 of a segment's term dictionary
/// (`gen/text/<segment>.term`, 2156 bytes). `restore_snapshot` installed
/// it (term dictionaries are opened lazily) and then every search failed
/// with `Error::Text(DataCorruption: "Failed to open field "text"'s term
/// dictionary in the composite file")`. Fixed by caaccc0 (a search is run
/// on the staged generation before it is installed).
#[test]
fn damaged_term_dictionary_is_refused_not_installed() {
    refused_or_searchable("accepted-unsearchable");
}

/// fuzz target `snapshot`, input fuzz/regressions/snapshot/search-panics-after-restore:
/// 2 bytes changed (offsets 409 and 542, 98 -> 96 and 46 -> 44) of the term
/// dictionary of one segment (`gen/text/4d48...c37.term`, 2156 bytes). The
/// probe of caaccc0 (one search for the first document's label, one
/// reverse) passes, the snapshot is installed, and then `Database::search`
/// panics for "rue de la paix" and "12 rue de la pa" (`cairn search`, not
/// for "paris", "lyon", "13001"): "assertion failed: end >= start" at tantivy-common-
/// 0.27.0/src/file_slice.rs:175, from tantivy's searcher
/// (`TextIndex::candidates`, engine/src/text/mod.rs:195 `searcher.search`,
/// <- query.rs:115 <- db.rs:494 `Database::search`). In the server the
/// panic ends the request's connection with no answer, on every such query.
#[test]
#[ignore = "bug: restore_snapshot installs a snapshot whose term dictionary makes some searches panic (in tantivy)"]
fn damaged_term_dictionary_does_not_make_searches_panic() {
    refused_or_searchable("search-panics-after-restore");
}

/// fuzz target `snapshot`, input fuzz/regressions/snapshot/searches-fail-after-restore:
/// 46 bytes changed at offsets 829..999 of the term dictionary of the other
/// segment (`gen/text/fbfe...621.term`, 1130 bytes). Installed like the one
/// above; then some searches fail ("paris" without autocomplete; with
/// `cairn search`'s defaults "rue de la paix" and "12 rue de la pa", while
/// "paris", "lyon", "13001" answer) with `Error::Text(DataCorruption:
/// "Failed to open field "text"'s term dictionary in the composite file")`,
/// a 500 from the server.
#[test]
#[ignore = "bug: restore_snapshot installs a snapshot whose term dictionary makes some searches fail"]
fn damaged_term_dictionary_does_not_make_searches_fail() {
    refused_or_searchable("searches-fail-after-restore");
}

/// fuzz target `snapshot`, input fuzz/regressions/snapshot/alloc-abort-in-restore:
/// one byte changed (offset 57, 0x2e -> 0x00) of a segment's document store
/// (`gen/text/4d48...c37.store`, 174 bytes). Opening the staged generation,
/// tantivy reads the store's skip index and sizes a `Vec` from a length in
/// the file (`Vec::<VInt>::deserialize`, tantivy-common-0.27.0/src/
/// serialize.rs:85, from tantivy-0.27.0/src/store/index/skip_index.rs:62;
/// via `TextIndex::open` engine/src/text/mod.rs:106 <- `Generation::open`
/// db.rs:101 <- `Database::stage` db.rs:415): 40,802,189,664 bytes. If the
/// allocator refuses, the process aborts ("memory allocation of
/// 40802189664 bytes failed"): that is not a panic, and the `catch_unwind`
/// of caaccc0 cannot catch it. The system allocator refuses it on a 23 GB
/// machine with the default overcommit (this test, the fuzz target); the
/// release `cairn` (mimalloc) reserves it, then refuses the snapshot, but
/// `cairn snapshot restore` aborts too (SIGABRT, restore.tmp and
/// store.redb.incoming left) under `ulimit -v 8000000`. Whether this test
/// fails therefore depends on the machine; when it does, it aborts the test
/// binary.
#[test]
#[ignore = "bug: a snapshot's damaged .store file makes tantivy allocate 40 GB while restore_snapshot opens it; a refused allocation aborts the process"]
fn damaged_store_file_does_not_abort_the_process() {
    refused_or_searchable("alloc-abort-in-restore");
}
