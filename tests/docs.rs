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

/// Examples of docs/CLI.md this test cannot run, each with why and the
/// test that covers its behaviour instead. Every other `$ ` line runs.
const NOT_RUN: [(&str, &str); 8] = [
    ("# while", "needs a second process holding the directory: cli::a_server_holding_the_database_makes_import_fail_clearly, snapshot tests"),
    ("--config /etc/cairn/cairn.toml", "its output is a comment: config::tests::flags_win_over_the_file_and_the_file_over_defaults"),
    ("--listen 127.0.0.1:0", "a server that keeps running: every test through common::Server reads its banner"),
    ("aaaa…(201 letters)", "a placeholder for a long argument: cli::bad_cli_input_is_a_message_and_a_nonzero_exit"),
    ("cairn snapshot restore trunc.", "a crafted snapshot: snapshot tests"),
    ("cairn snapshot restore flipped.", "a crafted snapshot: snapshot tests"),
    ("cairn snapshot restore v", "a snapshot of another format version: snapshot tests"),
    ("cairn snapshot restore ", "crafted snapshots (gen., escape., crafted.): snapshot tests; the restore of /tmp/s runs"),
];

/// Why an example is not run, if it is not.
fn not_run(command: &str) -> Option<&'static str> {
    if command.starts_with("cairn snapshot restore /tmp/") {
        return None;
    }
    NOT_RUN.iter().find(|(pattern, _)| command.contains(pattern)).map(|(_, why)| *why)
}

/// One `$ command` of a doc and the lines it shows after it.
struct Example {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_text = false;
    // An example's output ends with its block.
    let mut open = false;
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            in_text = !in_text && line.trim() == "```text";
            open = false;
            continue;
        }
        if !in_text {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Example { line: i + 1, command: command.to_owned(), expected: Vec::new() });
            open = true;
        } else if let (Some(e), true) = (out.last_mut(), open) {
            e.expected.push(line.to_owned());
        }
    }
    out
}

/// A line without its trailing annotation (`   # exit 2`, `(stderr)`).
fn without_comment(line: &str) -> (String, Option<&str>) {
    match line.find("   ").map(|at| (at, line[at..].trim_start())) {
        Some((at, c)) if c.starts_with('#') || c.starts_with("(stderr") => (line[..at].trim_end().to_owned(), Some(c)),
        _ => (line.to_owned(), None),
    }
}

/// The number between `marker` and `suffix` in `line` replaced by `_`.
fn mask_number(line: &str, marker: &str, suffix: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        let n = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(after.len());
        out.push_str(&rest[..at + marker.len()]);
        if n > 0 && after[n..].starts_with(suffix) {
            out.push('_');
        } else {
            out.push_str(&after[..n]);
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}

/// What changes from one run to the next: times, rates, thread counts, and
/// what a snapshot's random history id changes (its checksums, its
/// compressed size).
fn normalise(line: &str) -> String {
    let mut l = line.trim_end().to_owned();
    for (marker, suffix) in
        [(" in ", " s"), ("(", " rows/s"), (", ", " threads)"), ("): ", " bytes"), ("\"crc32\": ", "")]
    {
        l = mask_number(&l, marker, suffix);
    }
    if let Some(at) = l.find("\"history\": \"") {
        l.replace_range(at.., "\"history\": _");
    }
    l
}

/// Runs `command` as a shell line in the repository, `cairn` being the
/// binary under test and `/tmp` the scratch directory.
fn run(command: &str, scratch: &std::path::Path) -> std::process::Output {
    let root = repo_file("");
    let line = command.replace("/tmp/", &format!("{}/", scratch.display()));
    let line = format!("cairn() {{ '{}' \"$@\"; }}; {line}", common::bin());
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(&line).current_dir(&root).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // An example that should exit at once but serves instead must fail the
    // test, not hang it.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("`{command}` did not exit");
}

/// Issue 24, item 3: the examples of docs/CLI.md are what the binary
/// prints, so that docs and behaviour cannot drift apart again.
#[test]
fn cli_doc_examples_print_what_the_docs_show() {
    let doc = std::fs::read_to_string(repo_file("docs/CLI.md")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().display().to_string();
    let mut ran = 0;
    let mut failures = Vec::new();
    for e in examples(&doc) {
        let (command, _) = without_comment(&e.command);
        let exit_comment = without_comment(&e.command).1.map(str::to_owned);
        if !command.contains("cairn") && !command.starts_with("cat ") {
            continue;
        }
        if not_run(&e.command).is_some() {
            continue;
        }
        ran += 1;
        let out = run(&command, scratch.path());
        let text = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b).replace(&scratch_path, "/tmp").lines().map(normalise).collect()
        };
        let (mut stdout, mut stderr) =
            (text(&out.stdout).into_iter().peekable(), text(&out.stderr).into_iter().peekable());
        // The expected lines are stdout and stderr as a terminal shows them:
        // each must come next in one of the two.
        let mut expected_exit = None;
        let mut wrong = None;
        for line in &e.expected {
            let (line, comment) = without_comment(line);
            if let Some(code) = comment.and_then(|c| c.strip_prefix("# exit ")) {
                expected_exit = code.trim().parse::<i32>().ok();
            }
            let line = normalise(&line);
            if stdout.peek() == Some(&line) {
                stdout.next();
            } else if stderr.peek() == Some(&line) {
                stderr.next();
            } else {
                wrong = Some(format!("expected {line:?}, next out {:?}, next err {:?}", stdout.peek(), stderr.peek()));
                break;
            }
        }
        let left: Vec<String> = stdout.chain(stderr).collect();
        if wrong.is_none() && !left.is_empty() {
            wrong = Some(format!("printed more than the docs show: {left:?}"));
        }
        let has_error = e.expected.iter().any(|l| l.starts_with("error:"));
        let code = out.status.code();
        let want = expected_exit.or(exit_comment.and_then(|c| c.strip_prefix("# exit ")?.trim().parse().ok()));
        match want {
            Some(w) if code != Some(w) => wrong = Some(format!("exit {code:?}, the docs say {w}")),
            None if has_error && code != Some(1) => wrong = Some(format!("exit {code:?} for an error, the docs say 1")),
            None if !has_error && code != Some(0) => wrong = Some(format!("exit {code:?}")),
            _ => {}
        }
        if let Some(w) = wrong {
            failures.push(format!("docs/CLI.md:{}: `{}`: {w}", e.line, e.command));
        }
    }
    assert!(ran >= 20, "only {ran} examples ran: is the parser still reading the docs?");
    assert!(failures.is_empty(), "{} examples differ:\n{}", failures.len(), failures.join("\n"));
}
