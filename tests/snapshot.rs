//! Snapshots through the CLI: `cairn snapshot create`, `restore` and
//! `inspect` on real files, and every refusal leaving the target intact.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;

use common::{cairn, fixture};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// What a user sees of a database: the top results of a few searches.
fn answers(dir: &Path) -> Vec<String> {
    ["lyon", "rue de la paix paris", "8 boulevard du port", "marseille 13001"]
        .iter()
        .map(|q| {
            let out = cairn(&["search", "--data", &s(dir), "--limit", "3", q]);
            assert!(out.status.success(), "search {q}: {}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ids: Vec<&str> =
                v["features"].as_array().unwrap().iter().map(|f| f["properties"]["id"].as_str().unwrap()).collect();
            format!("{q}: {}", ids.join(","))
        })
        .collect()
}

fn generation(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("CURRENT")).unwrap().trim().parse().unwrap()
}

/// Entries of a database directory, to show that a refusal left nothing.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn create(data: &Path, out: &Path) {
    let o = cairn(&["snapshot", "create", "--data", &s(data), "--out", &s(out)]);
    assert!(o.status.success(), "create: {}", String::from_utf8_lossy(&o.stderr));
}

/// A database of the small fixture (generation 1) and one with another
/// generation on top (generation 2, one more record).
fn two_databases(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = root.join("a");
    common::import(&a, &[&fixture("small.ndjson")]);
    let b = root.join("b");
    common::import(&b, &[&fixture("small.ndjson")]);
    let extra = root.join("extra.ndjson");
    std::fs::write(
        &extra,
        r#"{"id": "69123_0099", "type": "street", "name": "Rue Zéphyrine", "postcode": "69002", "citycode": "69123", "city": "Lyon", "lon": 4.83, "lat": 45.75, "importance": 0.5}
"#,
    )
    .unwrap();
    common::import(&b, &[&extra]);
    (a, b)
}

#[test]
fn a_snapshot_restores_the_same_database() {
    let root = tempfile::tempdir().unwrap();
    let (_, b) = two_databases(root.path());
    let file = root.path().join("b.cairn-snapshot");
    create(&b, &file);
    assert!(!root.path().join("b.cairn-snapshot.tmp").exists());

    let inspect = cairn(&["snapshot", "inspect", &s(&file)]);
    assert!(inspect.status.success());
    let m: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(m["generation"], 2);
    assert_eq!(m["format_version"], 3);
    // Records only (the addresses', then the collections'): the restore
    // builds the index files itself.
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["store/blocks", "store/ids", "store/meta", "store/collections", "store/records"]);

    // Into a directory that does not exist yet.
    let fresh = root.path().join("fresh");
    let o = cairn(&["snapshot", "restore", &s(&file), "--data", &s(&fresh)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(generation(&fresh), 2);
    assert_eq!(answers(&fresh), answers(&b));
    let one = cairn(&["search", "--data", &s(&fresh), "zephyrine"]);
    assert!(String::from_utf8_lossy(&one.stdout).contains("69123_0099"));

    // The restored database is a full one: it takes writes, on top of the
    // snapshot's generation.
    let more = root.path().join("more.ndjson");
    std::fs::write(
        &more,
        r#"{"id": "75056_0042", "type": "street", "name": "Rue Quincampoix-Test", "postcode": "75004", "citycode": "75056", "city": "Paris", "lon": 2.35, "lat": 48.86, "importance": 0.5}
"#,
    )
    .unwrap();
    common::import(&fresh, &[&more]);
    assert_eq!(generation(&fresh), 3);
    let found = cairn(&["search", "--data", &s(&fresh), "quincampoix-test"]);
    assert!(String::from_utf8_lossy(&found.stdout).contains("75056_0042"));

    // Over an existing database, at a lower generation: installed as is.
    let o = cairn(&["snapshot", "restore", &s(&file), "--data", &s(&fresh)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(generation(&fresh), 2);
    assert_eq!(answers(&fresh), answers(&b));
    let gone = cairn(&["search", "--data", &s(&fresh), "quincampoix-test"]);
    assert!(!String::from_utf8_lossy(&gone.stdout).contains("75056_0042"));
    assert_eq!(listing(&fresh), ["CURRENT", "gen-0000000002", "store.redb"]);
}

/// The pieces of a snapshot file, to forge damaged ones.
struct Parts {
    manifest: serde_json::Value,
    /// Everything after the header, trailer included.
    rest: Vec<u8>,
}

fn split(bytes: &[u8]) -> Parts {
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let manifest = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
    Parts { manifest, rest: bytes[16 + len + 4..].to_vec() }
}

/// Reassembles a snapshot with valid header and trailer checksums, so that
/// only what was changed on purpose is wrong.
fn join(p: &Parts) -> Vec<u8> {
    let json = serde_json::to_vec(&p.manifest).unwrap();
    let mut out = b"CAIRNSNP".to_vec();
    out.extend(cairn::snapshot::FORMAT_VERSION.to_le_bytes());
    out.extend((json.len() as u32).to_le_bytes());
    out.extend(&json);
    let crc = crc32fast::hash(&out);
    out.extend(crc.to_le_bytes());
    let body = &p.rest[..p.rest.len() - 12];
    out.extend(body);
    out.extend(b"CAIRNEND");
    let crc = crc32fast::hash(&out);
    out.extend(crc.to_le_bytes());
    out
}

#[test]
fn damaged_snapshots_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_databases(root.path());
    let file = root.path().join("b.cairn-snapshot");
    create(&b, &file);
    let good = std::fs::read(&file).unwrap();
    let before = (generation(&a), answers(&a), listing(&a));
    assert_eq!(join(&split(&good)), good, "the test's own framing matches the format");

    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for cut in [0, 7, 20, good.len() / 3, good.len() / 2, good.len() - 5, good.len() - 1] {
        cases.push((format!("truncated at {cut}"), good[..cut].to_vec(), "truncated"));
    }
    for pos in [9, 30, good.len() / 3, good.len() / 2, good.len() * 9 / 10, good.len() - 6, good.len() - 2] {
        let mut bad = good.clone();
        bad[pos] ^= 0x10;
        cases.push((format!("byte {pos} flipped"), bad, ""));
    }
    for version in [1u32, 4] {
        let mut other = good.clone();
        other[8..12].copy_from_slice(&version.to_le_bytes());
        cases.push((format!("format version {version}"), other, "is not supported (this build reads versions 2 to 3)"));
    }
    cases.push(("not a snapshot".into(), b"id,name\n1,x\n".to_vec(), "not a cairn snapshot"));
    let mut extra = good.clone();
    extra.extend(b"more");
    cases.push(("bytes after the end".into(), extra, "follow the trailer"));
    // Escapes, and index files (format 1 shipped them; tantivy trusts them).
    for escape in ["gen/../../../evil", "store/../../evil", "../evil", "gen/text/meta.json", "/tmp/evil"] {
        let mut p = split(&good);
        let files = p.manifest["files"].as_array_mut().unwrap();
        let meta = files.iter_mut().find(|f| f["path"] == "store/meta").unwrap();
        meta["path"] = escape.into();
        cases.push((format!("path {escape}"), join(&p), "refusing the path"));
    }
    let mut p = split(&good);
    p.manifest["profile"] = "address-1:type".into();
    cases.push(("another profile".into(), join(&p), "profile"));
    let mut p = split(&good);
    p.manifest["documents"] = 1.into();
    cases.push(("wrong document count".into(), join(&p), "documents"));

    for (what, bytes, expected) in cases {
        let bad = root.path().join("bad.cairn-snapshot");
        std::fs::write(&bad, &bytes).unwrap();
        let o = cairn(&["snapshot", "restore", &s(&bad), "--data", &s(&a)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: accepted");
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("refused") && err.contains(expected), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!((generation(&a), answers(&a), listing(&a)), before, "{what}: the database changed");
        // Nothing escaped the directory either.
        assert!(!root.path().join("evil").exists() && !Path::new("/tmp/evil").exists(), "{what}");
        // Nor is an empty database left where there was none: it would
        // answer every search with nothing, as if restored.
        let missing = root.path().join("missing");
        let o = cairn(&["snapshot", "restore", &s(&bad), "--data", &s(&missing)]);
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert!(!missing.exists(), "{what}: left {:?}", listing(&missing));
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let o = cairn(&["snapshot", "restore", &s(&bad), "--data", &s(&empty)]);
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert!(listing(&empty).is_empty(), "{what}: left {:?}", listing(&empty));
    }
    // And the good one still installs after all those refusals.
    let o = cairn(&["snapshot", "restore", &s(&file), "--data", &s(&a)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(answers(&a), answers(&b));
}

#[test]
fn snapshot_commands_explain_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    let o =
        cairn(&["snapshot", "create", "--data", &s(&root.path().join("none")), "--out", &s(&root.path().join("x"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no cairn database"));
    assert!(!root.path().join("none").exists(), "create must not make a database");

    let o = cairn(&["snapshot", "restore", &s(&root.path().join("missing")), "--data", &s(&root.path().join("d"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("opening"));

    // A file of 0 bytes is refused before a database is created for it.
    let empty = root.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let o = cairn(&["snapshot", "restore", &s(&empty), "--data", &s(&root.path().join("d"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
    assert!(!root.path().join("d").exists());

    // An unwritable destination: no partial file is left behind.
    let a = root.path().join("a");
    common::import(&a, &[&fixture("small.ndjson")]);
    let o = cairn(&["snapshot", "create", "--data", &s(&a), "--out", &s(&root.path().join("no/such/dir/x"))]);
    assert_eq!(o.status.code(), Some(1));
}

/// Issue 25, defect 11: two `snapshot create` to one `--out` at once, of
/// two databases. Both succeed, and the file left is whole: one of the
/// two snapshots, never a mix or a truncated file.
#[test]
fn two_snapshots_to_one_file_at_once_leave_one_whole_file() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_databases(root.path());
    let out = root.path().join("same.cairn-snapshot");
    for round in 0..15 {
        let spawn = |data: &Path| {
            std::process::Command::new(common::bin())
                .args(["snapshot", "create", "--data", &s(data), "--out", &s(&out)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        for p in [pa, pb] {
            let o = p.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let target = root.path().join(format!("restored-{round}"));
        let o = cairn(&["snapshot", "restore", &s(&out), "--data", &s(&target)]);
        assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        let g = generation(&target);
        assert!(g == 1 || g == 2, "round {round}: generation {g}");
        assert_eq!(answers(&target), answers(if g == 1 { &a } else { &b }), "round {round}");
        let left: Vec<String> = listing(root.path()).into_iter().filter(|n| n.ends_with(".tmp")).collect();
        assert!(left.is_empty(), "round {round}: {left:?}");
    }
}

/// A snapshot the previous build wrote (format version 2, its store blocks
/// rkyv archives: `tests/fixtures/small-v2.cairn-snapshot`, made from
/// `small.ndjson`) restores, answers as a fresh import of the same file,
/// and takes writes, which code its blocks anew.
#[test]
fn a_snapshot_of_the_previous_format_restores() {
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("fresh");
    common::import(&fresh, &[&fixture("small.ndjson")]);
    let old = root.path().join("old");
    let o = cairn(&["snapshot", "restore", &s(&fixture("small-v2.cairn-snapshot")), "--data", &s(&old)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(answers(&old), answers(&fresh));
    // Both again: the old blocks are rewritten in the new coding.
    common::import(&old, &[&fixture("small.ndjson")]);
    common::import(&fresh, &[&fixture("small.ndjson")]);
    assert_eq!(answers(&old), answers(&fresh));
    let file = root.path().join("again.cairn-snapshot");
    create(&old, &file);
    let m = cairn(&["snapshot", "inspect", &s(&file)]);
    let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(m["format_version"], 3);
}
