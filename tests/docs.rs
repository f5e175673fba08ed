//! The docs checked against the binary: every metric they name is exported,
//! and the examples of docs/CLI.md give the output they show.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::{fixture, repo_file, Server};

/// Every `cairn_*` name in a doc, and the process metric.
fn metric_names(doc: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_file(doc)).unwrap();
    let mut names = BTreeSet::new();
    for prefix in ["cairn_", "process_resident_memory_bytes"] {
        for (at, _) in text.match_indices(prefix) {
            // A name, not the tail of a longer word (`x_cairn_y`).
            if text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            names.insert(name);
        }
    }
    names
}

/// The series names of a Prometheus text exposition.
fn series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_owned())
        .collect()
}

/// A histogram is documented by its name and exported as `_bucket`,
/// `_sum` and `_count` series.
fn exported(name: &str, series: &BTreeSet<String>) -> bool {
    ["", "_bucket", "_sum", "_count"].iter().any(|s| series.contains(&format!("{name}{s}")))
}

fn metrics_of(s: &Server) -> BTreeSet<String> {
    // A search first, so that the per-route series have a line.
    let (status, _) = s.request("GET", "/search?q=paris");
    assert_eq!(status, 200);
    let (status, body) = s.request("GET", "/metrics");
    assert_eq!(status, 200);
    series(&body)
}

/// Issue 24, item 1: a metric the docs name (and an alert uses) that the
/// server never exports is a dashboard that stays empty.
#[test]
fn every_metric_the_docs_name_is_exported() {
    let mut names = metric_names("docs/HTTP-API.md");
    names.extend(metric_names("docs/OPERATIONS.md"));
    // The docs name the contact gauge that the alerts use: the test is
    // only worth something if it looks at it.
    assert!(names.contains("cairn_replica_seconds_since_contact"), "{names:?}");
    assert!(names.contains("cairn_cache_misses_total"), "{names:?}");

    let primary = Server::start(&[&fixture("small.ndjson")]);
    let replica = Server::serve_with(
        tempfile::tempdir().unwrap(),
        &["--replica-of", &format!("http://{}", primary.addr), "--poll", "100ms"],
    );
    let on_primary = metrics_of(&primary);
    let on_replica = metrics_of(&replica);
    for name in &names {
        if name.starts_with("cairn_replica_") {
            assert!(exported(name, &on_replica), "{name} is documented, a replica does not export it: {on_replica:?}");
            assert!(!exported(name, &on_primary), "{name} is documented for replicas only, a primary exports it");
        } else {
            assert!(exported(name, &on_primary), "{name} is documented, a primary does not export it: {on_primary:?}");
            assert!(exported(name, &on_replica), "{name} is documented, a replica does not export it: {on_replica:?}");
        }
    }
}
