//! Snapshot shipping between real servers on 127.0.0.1: a primary taking
//! writes, a replica following it with `--replica-of`, and a client that
//! never stops querying the replica.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{exchange, fixture, Server};

const WRITE: &str = "write-token-1";
const SNAP: &str = "snapshot-token-1";

fn primary() -> Server {
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    Server::serve_with(dir, &["--write-token", WRITE, "--snapshot-token", SNAP])
}

fn replica_of(primary: &str, token: &str, dir: tempfile::TempDir) -> Server {
    let url = format!("http://{primary}");
    Server::serve_with(dir, &["--replica-of", &url, "--snapshot-token", token, "--poll", "100ms"])
}

/// Generation `k` of the primary holds `quokka_1` .. `quokka_k`.
fn add_quokka(p: &Server, k: u32) -> u64 {
    let line = format!(
        r#"{{"id": "quokka_{k}", "type": "street", "name": "Allée du Quokka", "postcode": "690{k:02}", "citycode": "69123", "city": "Lyon", "lon": 4.8{k}, "lat": 45.7{k}, "importance": 0.5}}"#
    );
    let req = format!(
        "POST /documents HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{line}\n",
        line.len() + 1
    );
    let (status, _, body) = exchange(&p.addr, req.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["generation"].as_u64().unwrap()
}

/// One GET, never panicking: a failure is a result the client counts.
fn try_get(addr: &str, target: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no head in {text:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_owned()))
}

/// The quokka ids a search answers, by number.
fn quokkas(body: &str) -> Result<BTreeSet<u32>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    let features = v["features"].as_array().ok_or_else(|| format!("no features: {body}"))?;
    Ok(features.iter().filter_map(|f| f["properties"]["id"].as_str()?.strip_prefix("quokka_")?.parse().ok()).collect())
}

const QUERY: &str = "/search?q=allee+du+quokka+lyon&limit=20&autocomplete=0";

fn ready(s: &Server) -> (u16, serde_json::Value) {
    let (status, body) = s.request("GET", "/health/ready");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// The primary's snapshot of `generation`, also written to `path`.
fn download_snapshot(p: &Server, generation: u64, path: &std::path::Path) -> Vec<u8> {
    let req = format!(
        "GET /snapshot/{generation} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {SNAP}\r\n\r\n"
    );
    let (status, head, bytes) = exchange(&p.addr, req.as_bytes());
    assert_eq!(status, 200, "{head}");
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Polls `check` until it holds, for at most `secs` seconds; `check`
/// says what it saw when it does not hold.
fn eventually(secs: u64, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(()) => return,
            Err(seen) => assert!(Instant::now() < deadline, "{seen}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_generation(s: &Server, generation: u64) {
    eventually(30, || {
        let (status, v) = ready(s);
        if status == 200 && v["generation"].as_u64() == Some(generation) {
            return Ok(());
        }
        Err(format!("replica stuck: {status} {v}, waiting for generation {generation}"))
    });
}

#[test]
fn a_replica_follows_its_primary_without_a_failed_request() {
    let p = primary();
    let r = replica_of(&p.addr, SNAP, tempfile::tempdir().unwrap());
    wait_for_generation(&r, 1);
    let (_, v) = ready(&r);
    assert_eq!(v["role"], "replica", "{v}");
    assert_eq!(v["primary_generation"], 1, "{v}");
    let (_, base) = r.request("GET", "/search?q=lyon&limit=5");
    assert_eq!(base, p.request("GET", "/search?q=lyon&limit=5").1, "same answers as the primary");

    // The client: queries the replica without pause, records every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (addr, stop) = (r.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failures, mut seen) = (0u32, Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match try_get(&addr, QUERY) {
                    Ok((200, body)) => match quokkas(&body) {
                        Ok(set) => {
                            ok += 1;
                            seen.push(set);
                        }
                        Err(e) => failures.push(e),
                    },
                    Ok((status, body)) => failures.push(format!("{status}: {body}")),
                    Err(e) => failures.push(e),
                }
                match try_get(&addr, "/reverse?lat=45.75&lon=4.85") {
                    Ok((200, _)) => ok += 1,
                    Ok((status, body)) => failures.push(format!("reverse {status}: {body}")),
                    Err(e) => failures.push(format!("reverse {e}")),
                }
            }
            (ok, failures, seen)
        })
    };

    const UPDATES: u32 = 5;
    for k in 1..=UPDATES {
        let generation = add_quokka(&p, k);
        assert_eq!(generation, u64::from(k) + 1);
        wait_for_generation(&r, generation);
        // Converged: the replica answers what the primary answers.
        assert_eq!(r.request("GET", QUERY), p.request("GET", QUERY), "generation {generation}");
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failures, seen) = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests out of {}: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 20, "the client ran ({ok} requests)");

    // Every answer is the whole of one generation (quokka_1..=quokka_k for
    // some k), and k never goes back.
    let mut last = 0;
    let mut generations = BTreeSet::new();
    for set in &seen {
        let k = set.len() as u32;
        assert_eq!(*set, (1..=k).collect::<BTreeSet<_>>(), "an answer mixing generations: {set:?}");
        assert!(k >= last, "went back from {last} to {k}");
        last = k;
        generations.insert(k);
    }
    assert_eq!(last, UPDATES);
    assert!(generations.len() >= 3, "the client saw the generations change: {generations:?}");

    // Lag and installs are reported; old generations are gone from disk.
    let (_, metrics) = r.request("GET", "/metrics");
    assert!(metrics.contains("cairn_replica_installs_total 6"), "{metrics}");
    assert!(metrics.contains("cairn_replica_primary_generation 6"));
    assert!(metrics.contains("cairn_replica_lag_seconds 0"));
    assert!(metrics.contains("cairn_generation 6"));
    let mut gens: Vec<String> = std::fs::read_dir(r.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    gens.sort();
    assert_eq!(gens, ["gen-0000000006"]);
    assert!(!r.dir.path().join("incoming.cairn-snapshot").exists());
}

#[test]
fn snapshot_routes_need_the_token() {
    let p = primary();
    assert_eq!(p.request("GET", "/snapshot/latest").0, 401);
    let wrong = "GET /snapshot/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer nope\r\n\r\n";
    assert_eq!(exchange(&p.addr, wrong.as_bytes()).0, 403);
    assert_eq!(p.request("GET", "/snapshot/1").0, 401);

    let right = format!(
        "GET /snapshot/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {SNAP}\r\n\r\n"
    );
    let (status, _, body) = exchange(&p.addr, right.as_bytes());
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["generation"], 1);
    let file =
        format!("GET /snapshot/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {SNAP}\r\n\r\n");
    let (status, head, body) = exchange(&p.addr, file.as_bytes());
    assert_eq!(status, 200, "{head}");
    assert!(body.starts_with(b"CAIRNSNP"));
    let missing =
        format!("GET /snapshot/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {SNAP}\r\n\r\n");
    assert_eq!(exchange(&p.addr, missing.as_bytes()).0, 404);

    // A replica with the wrong token never installs anything and says so.
    let r = replica_of(&p.addr, "wrong-token", tempfile::tempdir().unwrap());
    std::thread::sleep(Duration::from_millis(800));
    let (status, v) = ready(&r);
    assert_eq!(status, 503, "{v}");
    let (_, metrics) = r.request("GET", "/metrics");
    assert!(metrics.contains("cairn_generation 0"), "{metrics}");
    assert!(!metrics.contains("cairn_replica_sync_failures_total 0\n"), "{metrics}");
}

/// A fake primary that announces generation 99 and then serves a snapshot
/// cut in the middle: the replica keeps serving what it has.
#[test]
fn an_interrupted_download_leaves_the_replica_serving() {
    // The replica starts from a snapshot file, as a VM image would.
    let p = primary();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.cairn-snapshot");
    let snapshot = download_snapshot(&p, 1, &file);
    let data = tempfile::tempdir().unwrap();
    let o = common::cairn(&[
        "snapshot",
        "restore",
        &file.display().to_string(),
        "--data",
        &data.path().display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let served = served.clone();
        let mut manifest: serde_json::Value = serde_json::from_slice(
            &snapshot[16..16 + u32::from_le_bytes(snapshot[12..16].try_into().unwrap()) as usize],
        )
        .unwrap();
        manifest["generation"] = 99.into();
        let manifest = manifest.to_string();
        std::thread::spawn(move || {
            for conn in fake.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if head.starts_with("GET /snapshot/latest") {
                    let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{manifest}", manifest.len());
                } else {
                    // Promises the whole file, sends half, hangs up.
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        snapshot.len()
                    );
                    let _ = conn.write_all(&snapshot[..snapshot.len() / 2]);
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let r = replica_of(&fake_addr, SNAP, data);
    let (status, v) = ready(&r);
    assert_eq!((status, v["generation"].as_u64()), (200, Some(1)), "serves the restored snapshot at once: {v}");
    let (_, before) = r.request("GET", "/search?q=lyon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while served.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "the replica did not retry");
        let (status, body) = r.request("GET", "/search?q=lyon");
        assert_eq!((status, &body), (200, &before));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, v) = ready(&r);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["primary_generation"], 99);
    let (_, metrics) = r.request("GET", "/metrics");
    assert!(metrics.contains("cairn_replica_installs_total 0"), "{metrics}");
    assert!(!r.dir.path().join("restore.tmp").exists());
}

/// Forwards every connection to the address in `target`, read when the
/// connection comes: a primary restarted elsewhere stays at one address.
fn forwarder(target: Arc<std::sync::Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let to = target.lock().unwrap().clone();
            let Ok(server) = TcpStream::connect(&to) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c, mut s) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// Issue 25, defect 2: the primary is restored to an older snapshot and
/// commits again, up to the generation number the replica already has,
/// with other content. The replica must not take itself for up to date:
/// it sees another history, installs it, says so, and answers as the
/// primary does.
#[test]
fn a_replica_follows_a_primary_restored_to_an_older_snapshot() {
    let p = primary();
    let old = tempfile::tempdir().unwrap();
    let snapshot = old.path().join("gen2.cairn-snapshot");
    assert_eq!(add_quokka(&p, 1), 2);
    download_snapshot(&p, 2, &snapshot);
    assert_eq!(add_quokka(&p, 2), 3);
    assert_eq!(add_quokka(&p, 3), 4);
    let target = Arc::new(std::sync::Mutex::new(p.addr.clone()));
    let via = forwarder(target.clone());
    let r = replica_of(&via, SNAP, tempfile::tempdir().unwrap());
    wait_for_generation(&r, 4);
    assert_eq!(r.get_json("/get/quokka_3").0, 200);
    // Cached, under generation 4 of the first history.
    assert_eq!(r.request("GET", QUERY), p.request("GET", QUERY));
    assert_eq!(r.request("GET", QUERY), p.request("GET", QUERY));

    // The primary goes back to generation 2 and commits twice: generation
    // 4 again, holding quokkas 1, 7 and 8.
    let p_dir = p.stop_keeping_dir();
    let o = common::cairn(&[
        "snapshot",
        "restore",
        &snapshot.display().to_string(),
        "--data",
        &p_dir.path().display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p2 = Server::serve_with(p_dir, &["--write-token", WRITE, "--snapshot-token", SNAP]);
    assert_eq!(add_quokka(&p2, 7), 3);
    assert_eq!(add_quokka(&p2, 8), 4);
    // Only now does the replica reach it: at its own number, 4.
    *target.lock().unwrap() = p2.addr.clone();

    eventually(30, || {
        let (mine, theirs) = (r.request("GET", QUERY).1, p2.request("GET", QUERY).1);
        if mine == theirs {
            return Ok(());
        }
        Err(format!("the replica diverged: {mine} against {theirs}"))
    });
    assert_eq!(r.get_json("/get/quokka_3").0, 404, "what the primary no longer has");
    assert_eq!(r.get_json("/get/quokka_8").0, 200);
    // Counted once the install returns, just after it is served.
    eventually(10, || {
        let (_, metrics) = r.request("GET", "/metrics");
        if metrics.contains("cairn_replica_history_changes_total 1") {
            assert!(metrics.contains("cairn_replica_seconds_since_contact "), "{metrics}");
            return Ok(());
        }
        Err(metrics)
    });
}

/// A replica seeded from its primary's snapshot file with `--as-replica`
/// keeps the primary's history and downloads nothing it has; seeded
/// without it, it has a history of its own and installs the primary's once.
#[test]
fn a_replica_seeded_as_a_replica_downloads_only_what_it_lacks() {
    let p = primary();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.cairn-snapshot");
    download_snapshot(&p, 1, &file);
    let installs = |r: &Server| -> u64 {
        let (_, m) = r.request("GET", "/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("cairn_replica_installs_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    for (flag, want) in [(true, 0), (false, 1)] {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["snapshot", "restore"];
        let (f, d) = (file.display().to_string(), data.path().display().to_string());
        args.extend([f.as_str(), "--data", d.as_str()]);
        if flag {
            args.push("--as-replica");
        }
        let o = common::cairn(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = replica_of(&p.addr, SNAP, data);
        // Polls every 100 ms: a second is ten chances to download.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(installs(&r), want, "--as-replica {flag}");
        assert_eq!(ready(&r).1["generation"], 1);
        assert_eq!(r.request("GET", QUERY), p.request("GET", QUERY));
    }
}

/// One request with a body to `addr`, with the write token.
fn send(addr: &str, method: &str, target: &str, content_type: &str, body: &str) -> (u16, serde_json::Value) {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, bytes) = exchange(addr, req.as_bytes());
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

#[test]
fn a_replica_serves_the_primarys_collections_and_follows_their_writes() {
    let p = primary();
    let schema = r#"{"primary_key": "id", "fields": {"id": {"type": "keyword"}, "sender": {"type": "keyword"}, "at": {"type": "integer"}}}"#;
    let (status, v) = send(&p.addr, "PUT", "/collections/packets", "application/json", schema);
    assert_eq!(status, 201, "{v}");
    let lines: String =
        (0..30).map(|i| format!("{{\"id\": \"p{i:02}\", \"sender\": \"s{}\", \"at\": {i}}}\n", i % 3)).collect();
    let (status, v) = send(&p.addr, "POST", "/collections/packets/documents", "application/x-ndjson", &lines);
    assert_eq!(status, 200, "{v}");
    let first = v["generation"].as_u64().unwrap();

    let r = replica_of(&p.addr, SNAP, tempfile::tempdir().unwrap());
    wait_for_generation(&r, first);
    let query = r#"{"filter": {"term": {"sender": "s1"}}, "sort": ["at:desc"], "limit": 3}"#;
    let on = |s: &Server| send(&s.addr, "POST", "/collections/packets/query", "application/json", query);
    let (status, from_replica) = on(&r);
    assert_eq!(status, 200, "{from_replica}");
    let ids: Vec<&str> = from_replica["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p28", "p25", "p22"]);
    assert_eq!(from_replica["hits"], on(&p).1["hits"], "the same hits as the primary");
    let (status, doc) = r.get_json("/collections/packets/documents/p07");
    assert_eq!((status, &doc["sender"]), (200, &serde_json::json!("s1")), "{doc}");

    // A delete and a new record on the primary reach the replica.
    let (status, v) = send(&p.addr, "DELETE", "/collections/packets/documents/p28", "application/json", "");
    assert_eq!(status, 200, "{v}");
    let (status, v) = send(
        &p.addr,
        "POST",
        "/collections/packets/documents",
        "application/x-ndjson",
        "{\"id\": \"p99\", \"sender\": \"s1\", \"at\": 99}\n",
    );
    assert_eq!(status, 200, "{v}");
    wait_for_generation(&r, v["generation"].as_u64().unwrap());
    let ids: Vec<String> =
        on(&r).1["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["p99", "p25", "p22"]);
    // Writes to a replica are refused.
    let (status, v) = send(&r.addr, "DELETE", "/collections/packets/documents/p25", "application/json", "");
    assert!(status == 403 || status == 401, "{status} {v}");
}
