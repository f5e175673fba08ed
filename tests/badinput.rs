//! Hostile and malformed input that other test files do not already cover:
//! raw HTTP bytes, odd encodings, bad CLI settings and damaged input files.
//! Each answer is a clear status or message, never a panic or a hang, and
//! the server keeps serving. docs/RELIABILITY.md lists them all.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::time::Duration;

use common::{cairn, exchange, fixture, Server};

fn served(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    Server::serve_with(dir, extra)
}

fn still_serving(s: &Server) {
    let (status, v) = s.get_json("/search?q=lyon");
    assert_eq!(status, 200, "{v}");
    assert!(!v["features"].as_array().unwrap().is_empty());
}

#[test]
fn raw_http_garbage_gets_a_4xx_or_a_closed_connection() {
    let s = served(&["--body-timeout", "500ms"]);
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(), &[0, 400]),
        ("no version", b"GET /search?q=lyon\r\n\r\n".to_vec(), &[0, 400]),
        ("bad method token", b"G(T /search?q=lyon HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[0, 400]),
        ("NUL in the target", b"GET /search?q=ly\0on HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), &[0, 400]),
        ("header without colon", b"GET /health HTTP/1.1\r\nHost x\r\n\r\n".to_vec(), &[0, 400]),
        ("HTTP/1.0", b"GET /health HTTP/1.0\r\n\r\n".to_vec(), &[200]),
        ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(), &[0, 400, 505]),
        (
            "a body that claims more than it sends",
            b"POST /search/csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 50\r\n\r\n--b\r\n"
                .to_vec(),
            &[408],
        ),
        (
            "a Content-Length that is not a number",
            b"POST /search/csv HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n".to_vec(),
            &[0, 400],
        ),
        (
            "a chunked body with a bad chunk size",
            b"POST /search/csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
            &[0, 400],
        ),
        (
            "multipart without a boundary",
            b"POST /search/csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            &[400],
        ),
        (
            "an Accept-Encoding of nonsense",
            b"GET /search?q=lyon HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept-Encoding: ;;;q=x, *;q=-1, br;q=2\r\n\r\n".to_vec(),
            &[200],
        ),
        ("bad percent-encoding", b"GET /search?q=%zz%4&limit=%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), &[200, 400]),
        ("a path of dots", b"GET /get/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), &[404]),
    ];
    for (what, bytes, allowed) in cases {
        let (status, head, body) = exchange(&s.addr, &bytes);
        assert!(allowed.contains(&status), "{what}: {status} {head}");
        if status >= 400 && !body.is_empty() && head.to_ascii_lowercase().contains("application/json") {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(v["title"].is_string(), "{what}: {v}");
        }
    }
    still_serving(&s);
}

#[test]
fn a_stalled_upload_answers_408_and_frees_its_connection() {
    let s = served(&["--body-timeout", "300ms", "--write-token", "t"]);
    for (target, extra) in [
        ("/search/csv", "Content-Type: multipart/form-data; boundary=b\r\n"),
        ("/documents", "Content-Type: application/x-ndjson\r\nAuthorization: Bearer t\r\n"),
    ] {
        let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "POST {target} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 100000\r\n\r\n--b\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut raw = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c, &mut raw);
        let (status, _, body) = common::parse_response(&raw);
        assert_eq!(status, 408, "{target}: {}", String::from_utf8_lossy(&raw));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["title"].as_str().unwrap().contains("stalled"), "{v}");
        assert!(started.elapsed() < Duration::from_secs(9), "{target}: answered only when the client gave up");
    }
    assert_eq!(s.get_json("/health").1["generation"], 1, "nothing was written");
    still_serving(&s);
}

#[test]
fn odd_but_valid_queries_answer_200() {
    let s = served(&[]);
    for q in [
        "%F0%9F%A6%80%F0%9F%A6%80",           // emoji only
        "%E2%80%8B%E2%80%8B",                 // zero-width spaces only
        "---",                                // punctuation only
        "lyon%20%20%20%20%20%20%20%20%20%20", // trailing spaces
        "%C3%A9%CC%81%CC%81%CC%81",           // stacked combining marks
        "1%2F2%2F3%2F4",
        "0",
        "rue%00de%00la",
    ] {
        let (status, v) = s.get_json(&format!("/search?q={q}"));
        assert_eq!(status, 200, "{q}: {v}");
        assert_eq!(v["type"], "FeatureCollection", "{q}");
    }
    // Repeated parameters: the last one wins, as in Addok.
    let (status, v) = s.get_json("/search?q=paris&q=lyon&limit=1&limit=2");
    assert_eq!(status, 200, "{v}");
    assert!(v["features"].as_array().unwrap().len() <= 2);
    still_serving(&s);
}

#[test]
fn a_slow_client_does_not_hold_the_others_up() {
    let s = served(&[]);
    // Half a request head, left hanging: others are still served meanwhile.
    let mut slow = std::net::TcpStream::connect(&s.addr).unwrap();
    slow.write_all(b"GET /search?q=lyon HTTP/1.1\r\nHo").unwrap();
    for _ in 0..20 {
        still_serving(&s);
    }
    drop(slow);
    std::thread::sleep(Duration::from_millis(50));
    still_serving(&s);
}

#[test]
fn bad_settings_are_a_message_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    common::import(&data, &[&fixture("small.ndjson")]);
    let d = data.display().to_string();
    let toml = dir.path().join("cairn.toml");
    std::fs::write(&toml, "listen = \"127.0.0.1:0\"\nno_such_setting = 1\n").unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "listen = [unclosed\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", "--data", &d, "--config", toml.to_str().unwrap()], "no_such_setting"),
        (vec!["serve", "--data", &d, "--config", bad_toml.to_str().unwrap()], "bad.toml"),
        (vec!["serve", "--data", &d, "--config", "/no/such/cairn.toml"], "cairn.toml"),
        (vec!["serve", "--data", &d, "--listen", "not-an-address"], "listen"),
        (vec!["serve", "--data", &d, "--time-budget", "soon"], "time-budget"),
        (vec!["serve", "--data", &d, "--poll", "often"], "poll"),
        (vec!["serve", "--data", &d, "--access-log", "xml"], "access-log"),
        (vec!["serve", "--data", &d, "--write-token", "a", "--replica-of", "http://127.0.0.1:1"], "replica"),
        (vec!["serve", "--data", &d, "--replica-of", "ftp://127.0.0.1:1", "--listen", "127.0.0.1:0"], "http://"),
        (vec!["serve"], "--data"),
        (vec!["import", "--data", &d, "--format", "xml", "x"], "format"),
        (vec!["batch", "--data", &d, "--input", "/no/such.csv", "--output", "-"], "no/such.csv"),
    ];
    for (args, needle) in cases {
        let mut child = std::process::Command::new(common::bin())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A setting that is accepted would start a server: never wait on one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: still running, the bad setting was accepted");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(status.code(), Some(1 | 2)), "{args:?}: {status:?} {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn damaged_input_files_fail_the_import_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    common::import(&data, &[&fixture("small.ndjson")]);
    let d = data.display().to_string();
    let count = || {
        let out = cairn(&["search", "--data", &d, "--limit", "100", "lyon"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = count();
    let good = std::fs::read(fixture("small.ndjson")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&good).unwrap();
    let gz = gz.finish().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.ndjson.gz", gz[..gz.len() / 2].to_vec()),
        ("garbage.ndjson", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()),
        ("cut-line.ndjson", good[..good.len() - 10].to_vec()),
        ("nested.ndjson", b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n".repeat(4).clone()),
        ("utf16.csv", b"\xff\xfei\x00d\x00,\x00n\x00a\x00m\x00e\x00\n\x00".to_vec()),
    ];
    for (name, bytes) in files {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let out = cairn(&["import", "--data", &d, &f.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("the database is unchanged") || err.contains("error"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(count(), before, "{name}: the database changed");
    }
}

/// Issue 25, defect 14: an import that runs out of room (here a file size
/// limit, as a full disk would) fails with exit 1, leaves no gen-N.tmp
/// behind to keep the disk full, and the database answers as before.
#[cfg(target_os = "linux")]
#[test]
fn an_import_out_of_room_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    common::import(&data, &[&fixture("small.ndjson")]);
    let d = data.display().to_string();
    let before = cairn(&["search", "--data", &d, "lyon"]).stdout;
    // Records whose long names compress well: the store (lz4) stays far
    // under the limit, the new generation's documents file (not
    // compressed) goes far past it, so the import fails after its writes.
    let big = dir.path().join("big.ndjson");
    let long = "de la Grande Paix ".repeat(60);
    let lines: String = (0..20_000)
        .map(|i| format!(r#"{{"id": "s{i}", "type": "street", "name": "Rue {i} {long}", "postcode": "69002", "citycode": "69123", "city": "Lyon", "lon": 4.83, "lat": 45.75}}"#) + "\n")
        .collect();
    std::fs::write(&big, lines).unwrap();
    // SIGXFSZ ignored: a write past the limit fails with EFBIG instead of
    // killing the process, as ENOSPC would fail it.
    let script = format!("trap '' XFSZ; ulimit -f 16384; exec \"$0\" import --data {d} {}", big.display());
    let out = std::process::Command::new("sh").arg("-c").arg(&script).arg(common::bin()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unchanged"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(cairn(&["search", "--data", &d, "lyon"]).stdout, before);
}
