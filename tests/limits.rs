//! The first results of a search do not depend on its limit (issue 25,
//! defect 6): on the bundled data, every query of the bundled query files
//! gives with limit 1 the first result of limit 5, and with limit 5 the
//! first five of limit 100, autocompleted or not.

use std::path::{Path, PathBuf};

use cairn::{Database, ImportOptions, SearchQuery};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn queries() -> Vec<String> {
    let files = [
        "datasets/dev-queries.tsv",
        "datasets/city-queries.tsv",
        "datasets/fr-sample/search.tsv",
        "datasets/fr-sample/autocomplete.tsv",
    ];
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(repo(f)).unwrap();
        out.extend(
            text.lines().skip(1).filter_map(|l| l.split('\t').next()).filter(|q| !q.is_empty()).map(str::to_owned),
        );
    }
    out
}

type Found = Vec<(String, u64)>;

fn found(db: &Database, q: &str, limit: usize, autocomplete: bool) -> Found {
    let mut sq = SearchQuery::new(q);
    sq.limit = limit;
    sq.autocomplete = autocomplete;
    db.search(&sq).unwrap().iter().map(|f| (f.prop_str("id").unwrap_or("").to_owned(), f.score.to_bits())).collect()
}

#[test]
fn the_first_results_are_the_same_whatever_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let data = repo("datasets/fr-sample/addresses.ndjson.gz");
    db.import(&[data], &ImportOptions::default(), &mut |_| {}).unwrap();
    let queries = queries();
    assert!(queries.len() > 4_000, "{}", queries.len());
    let mut differ = Vec::new();
    for q in &queries {
        for autocomplete in [true, false] {
            let (one, five, hundred) =
                (found(&db, q, 1, autocomplete), found(&db, q, 5, autocomplete), found(&db, q, 100, autocomplete));
            let prefix = |a: &Found, b: &Found| a.len() <= b.len() && b[..a.len()] == a[..];
            if !(prefix(&one, &five) && prefix(&five, &hundred)) || (one.is_empty() != five.is_empty()) {
                differ.push(format!(
                    "{q:?} (autocomplete {autocomplete}): {one:?} / {five:?} / {:?}",
                    &hundred[..hundred.len().min(5)]
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} queries:\n{}",
        differ.len(),
        queries.len() * 2,
        differ[..differ.len().min(10)].join("\n")
    );
}

/// Two databases of the same records built differently, one import against
/// ten commits, and the latter's snapshot restored as a replica restores
/// it, answer every bundled query alike: ties of text score, and the last
/// bits of scores summed in another order by another index layout, do not
/// pick the candidates (issue 25's review found 25 and 29 of 6,652 answers
/// differing before).
#[test]
fn databases_built_in_steps_or_restored_answer_as_one_built_at_once() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let data = repo("datasets/fr-sample/addresses.ndjson.gz");
    let once = Database::open(dir.path().join("once")).unwrap();
    once.import(std::slice::from_ref(&data), &ImportOptions::default(), &mut |_| {}).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&data).unwrap()).read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let steps = Database::open(dir.path().join("steps")).unwrap();
    for (i, part) in lines.chunks(lines.len().div_ceil(10)).enumerate() {
        let file = dir.path().join(format!("part{i}.ndjson"));
        std::fs::write(&file, part.join("\n") + "\n").unwrap();
        steps.import(&[file], &ImportOptions::default(), &mut |_| {}).unwrap();
    }
    assert_eq!(steps.generation(), 10);
    let mut snapshot = Vec::new();
    steps.create_snapshot(&mut snapshot).unwrap();
    let replica = Database::open(dir.path().join("replica")).unwrap();
    replica.follow_snapshot(&mut &snapshot[..]).unwrap();
    let mut differ = Vec::new();
    for q in queries() {
        let a = found(&once, &q, 10, true);
        for (name, db) in [("steps", &steps), ("replica", &replica)] {
            let b = found(db, &q, 10, true);
            if a != b {
                differ.push(format!("{name} {q:?}: {:?} / {:?}", &a[..a.len().min(3)], &b[..b.len().min(3)]));
            }
        }
    }
    assert!(differ.is_empty(), "{} differ:\n{}", differ.len(), differ[..differ.len().min(10)].join("\n"));
}
