//! Live updates on a primary: `POST /documents` and `DELETE /documents/{id}`
//! against a real `cairn serve` on 127.0.0.1.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{exchange, fixture, ids, Server};

const TOKEN: &str = "s3cret-token";

fn primary(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    Server::serve_with(dir, extra)
}

fn send(
    s: &Server,
    method: &str,
    target: &str,
    auth: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = exchange(&s.addr, req.as_bytes());
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

fn post(s: &Server, auth: Option<&str>, ndjson: &str) -> (u16, serde_json::Value) {
    send(s, "POST", "/documents", auth, "application/x-ndjson", ndjson)
}

const NEW_STREET: &str = r#"{"id": "69123_0099", "type": "street", "name": "Rue Zéphyrine", "postcode": "69002", "citycode": "69123", "city": "Lyon", "lon": 4.83, "lat": 45.75, "importance": 0.5, "housenumbers": {"3": {"lat": 45.7501, "lon": 4.8301}}}"#;

fn generation(s: &Server) -> u64 {
    s.get_json("/health").1["generation"].as_u64().unwrap()
}

#[test]
fn writes_need_the_right_token_and_change_nothing_otherwise() {
    let s = primary(&["--write-token", TOKEN]);
    let (status, v) = post(&s, None, NEW_STREET);
    assert_eq!(status, 401, "{v}");
    let (status, v) = post(&s, Some("wrong"), NEW_STREET);
    assert_eq!(status, 403, "{v}");
    assert_eq!(send(&s, "DELETE", "/documents/75056", Some("wrong-token!"), "text/plain", "").0, 403);
    assert_eq!(generation(&s), 1);
    assert_eq!(s.get_json("/get/75056").0, 200);
    assert!(ids(&s.get_json("/search?q=zephyrine").1).is_empty());

    let closed = primary(&[]);
    assert_eq!(post(&closed, Some(TOKEN), NEW_STREET).0, 403, "no token configured: no writes");
    assert_eq!(generation(&closed), 1);
}

#[test]
fn a_post_commits_a_generation_that_searches_see_at_once() {
    commits_seen_at_once(&["--write-token", TOKEN]);
}

/// The same with live commits: each write a layer over the base, with the
/// same answers and the same generation numbers.
#[test]
fn a_live_post_is_seen_at_once_too() {
    commits_seen_at_once(&["--write-token", TOKEN, "--live-writes", "true"]);
}

fn commits_seen_at_once(extra: &[&str]) {
    let s = primary(extra);
    // Cached while the street does not exist yet.
    assert!(ids(&s.get_json("/search?q=zephyrine").1).is_empty());
    assert!(ids(&s.get_json("/search?q=zephyrine").1).is_empty());
    assert_eq!(s.get_json("/health").1["cache"]["hits"], 1);

    let (status, v) = post(&s, Some(TOKEN), NEW_STREET);
    assert_eq!(status, 200, "{v}");
    // The street and its housenumber.
    assert_eq!((v["generation"].as_u64(), v["written"].as_u64(), v["total"].as_u64()), (Some(2), Some(2), Some(18)));
    // The new generation makes the cached empty answer unreachable.
    let (_, found) = s.get_json("/search?q=zephyrine");
    assert_eq!(ids(&found).first().map(String::as_str), Some("69123_0099"), "{found}");
    let (_, n) = s.get_json("/search?q=3%20rue%20zephyrine%20lyon");
    assert_eq!(n["features"][0]["properties"]["housenumber"], "3");

    // Replacing by id, then deleting.
    let renamed = NEW_STREET.replace("Zéphyrine", "Ysoline");
    assert_eq!(post(&s, Some(TOKEN), &renamed).0, 200);
    assert!(ids(&s.get_json("/search?q=zephyrine").1).iter().all(|i| i != "69123_0099"));
    assert_eq!(ids(&s.get_json("/search?q=rue%20ysoline%20lyon").1).first().map(String::as_str), Some("69123_0099"));
    // A street goes with its housenumbers.
    let (status, v) = send(&s, "DELETE", "/documents/69123_0099", Some(TOKEN), "text/plain", "");
    assert_eq!((status, v["deleted"].as_u64(), v["generation"].as_u64()), (200, Some(2), Some(4)), "{v}");
    assert_eq!(s.get_json("/get/69123_0099").0, 404);
    assert_eq!(s.get_json("/get/69123_0099_3").0, 404);
    assert_eq!(send(&s, "DELETE", "/documents/nope", Some(TOKEN), "text/plain", "").0, 404);
    assert_eq!(generation(&s), 4);
}

#[test]
fn concurrent_live_posts_commit_each_whole_or_fail_alone() {
    let s = primary(&["--write-token", TOKEN, "--live-writes", "true"]);
    let before = s.get_json("/health").1["documents"].as_u64().unwrap();
    let street = |i: usize| {
        NEW_STREET.replace("69123_0099", &format!("69123_07{i:02}")).replace("Zéphyrine", &format!("Zéphyrine {i}"))
    };
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
        let s = &s;
        let handles: Vec<_> = (0..9)
            .map(|i| {
                scope.spawn(move || {
                    if i == 4 {
                        // A good line, then a broken one: nothing of it may stay.
                        let bad = format!("{}\n{{\"id\": \"x\", \"type\": \"street\"\n", street(i));
                        post(s, Some(TOKEN), &bad)
                    } else {
                        post(s, Some(TOKEN), &street(i))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (status, v)) in answers.iter().enumerate() {
        if i == 4 {
            assert_eq!(*status, 400, "{v}");
            assert_eq!(s.get_json("/get/69123_0704").0, 404, "the refused body left nothing");
            continue;
        }
        assert_eq!(*status, 200, "{v}");
        assert_eq!(v["written"].as_u64(), Some(2), "each answer counts its own records: {v}");
        assert_eq!(s.get_json(&format!("/get/69123_07{i:02}")).0, 200);
        let (_, n) = s.get_json(&format!("/search?q=3%20rue%20zephyrine%20{i}%20lyon"));
        assert_eq!(n["features"][0]["properties"]["id"], format!("69123_07{i:02}_3"), "{n}");
    }
    let after = s.get_json("/health").1["documents"].as_u64().unwrap();
    assert_eq!(after, before + 16);
}

#[test]
fn a_bad_document_is_refused_whole() {
    let s = primary(&["--write-token", TOKEN]);
    let body = format!("{NEW_STREET}\n{{\"id\": \"x\", \"type\": \"street\"\n");
    let (status, v) = post(&s, Some(TOKEN), &body);
    assert_eq!(status, 400, "{v}");
    assert!(v["description"].as_str().unwrap().contains("line 2"), "{v}");
    assert_eq!(generation(&s), 1);
    assert_eq!(s.get_json("/get/69123_0099").0, 404, "the good line of a refused body is not written either");
    let (status, v) = send(&s, "POST", "/documents", Some(TOKEN), "application/pdf", "%PDF-1.4");
    assert_eq!(status, 415, "{v}");
    assert_eq!(send(&s, "GET", "/documents", Some(TOKEN), "text/plain", "").0, 405);
}

/// A gzip body is read as `cairn import` reads a `.gz` file: whether it
/// says so (`Content-Encoding: gzip`) or not, with or without a content
/// type; a broken one is refused whole, naming what went wrong.
#[test]
fn a_gzip_body_is_imported_like_a_gz_file() {
    use std::io::Write;
    let s = primary(&["--write-token", TOKEN]);
    let gzip = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    let upload = |headers: &str, body: &[u8]| {
        let (status, body) = common::send_authorized(&s.addr, TOKEN, "POST", "/documents", headers, body);
        (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
    };
    let cases = [
        ("Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n", "69123_0101"),
        ("Content-Type: application/x-ndjson\r\n", "69123_0102"),
        ("", "69123_0103"),
    ];
    for (i, (headers, id)) in cases.iter().enumerate() {
        let (status, v) = upload(headers, &gzip(&NEW_STREET.replace("69123_0099", id)));
        assert_eq!(status, 200, "{headers:?}: {v}");
        assert_eq!(generation(&s), 2 + i as u64);
        assert_eq!(s.get_json(&format!("/get/{id}")).0, 200, "{headers:?}");
    }
    let csv = "id;numero;nom_voie;code_postal;code_insee;nom_commune;lon;lat\n\
69123_0104_00007;7;Rue Yvonne;69002;69123;Lyon;4.83;45.75\n";
    let (status, v) = upload("Content-Type: text/csv\r\n", &gzip(csv));
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.get_json("/get/69123_0104_00007").0, 200);

    let (status, v) = upload("Content-Encoding: deflate\r\n", NEW_STREET.as_bytes());
    assert_eq!(status, 415, "{v}");
    assert!(v["title"].as_str().unwrap_or("").contains("\"deflate\" is not supported"), "{v}");

    let mut broken = gzip(&format!("{NEW_STREET}\n{NEW_STREET}\n"));
    broken.truncate(broken.len() / 2);
    let (status, v) = upload("Content-Type: application/x-ndjson\r\n", &broken);
    assert_eq!(status, 400, "{v}");
    assert!(v["description"].as_str().unwrap_or("").contains("line"), "{v}");
    assert_eq!(generation(&s), 5, "a broken body writes nothing");
}

/// A small gzip body that inflates past `--max-upload` (a gzip bomb) is
/// refused with 413 before the server holds it, for the geocoder's
/// documents and a collection's alike, and writes nothing; one that
/// inflates to less is read.
#[test]
fn a_gzip_body_may_inflate_to_max_upload_and_no_more() {
    use std::io::Write;
    let s = primary(&["--write-token", TOKEN, "--max-upload", "100000"]);
    let gzip = |text: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    };
    let upload = |target: &str, headers: &str, body: &[u8]| {
        let (status, body) = common::send_authorized(&s.addr, TOKEN, "POST", target, headers, body);
        (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
    };
    let mut bomb = b"{\"id\": \"x\", \"name\": \"".to_vec();
    bomb.resize(10_000_000, b' ');
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 100_000, "the body itself is under the limit");
    for headers in ["Content-Type: application/x-ndjson\r\n", ""] {
        let (status, v) = upload("/documents", headers, &bomb);
        assert_eq!(status, 413, "{headers:?}: {v}");
        assert!(v["title"].as_str().unwrap_or("").contains("once decompressed, limit is 100000 bytes"), "{v}");
    }
    assert_eq!(generation(&s), 1, "nothing written");

    let (status, v) = upload("/documents", "", &gzip(NEW_STREET.as_bytes()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(generation(&s), 2);

    let schema = "primary_key = \"id\"\n[fields]\nid = { type = \"keyword\" }\nnote = { type = \"text\" }\n";
    let (status, _) = common::send_authorized(&s.addr, TOKEN, "PUT", "/collections/notes", "", schema.as_bytes());
    assert_eq!(status, 201);
    let (status, v) = upload("/collections/notes/documents", "Content-Type: application/x-ndjson\r\n", &bomb);
    assert_eq!(status, 413, "{v}");
    let (status, v) = upload(
        "/collections/notes/documents",
        "Content-Type: application/x-ndjson\r\n",
        &gzip(b"{\"id\": \"n1\", \"note\": \"hello\"}\n"),
    );
    assert_eq!((status, v["written"].as_u64()), (200, Some(1)), "{v}");
}

#[test]
fn searches_keep_answering_while_commits_run() {
    let s = Arc::new(primary(&["--write-token", TOKEN]));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Never cached: each one runs on whatever generation is current.
                let (status, v) = s.get_json(&format!("/search?q=rue%20de%20la%20paix%20paris&limit={}", 1 + n % 9));
                assert_eq!(status, 200, "{v}");
                assert_eq!(ids(&v).first().map(String::as_str), Some("75102_0001"), "{v}");
                n += 1;
            }
            n
        })
    };
    for i in 0..5 {
        let doc = NEW_STREET.replace("69123_0099", &format!("69123_01{i:02}"));
        assert_eq!(post(&s, Some(TOKEN), &doc).0, 200);
    }
    stop.store(true, Ordering::Relaxed);
    let searched = reader.join().expect("no failed search");
    assert!(searched > 0);
    assert_eq!(generation(&s), 6);
    assert_eq!(s.get_json("/health").1["documents"], 16 + 5 * 2, "five streets with a housenumber each");
}

/// The id in `/get/{id}` and `/documents/{id}` is a path segment: `%XX` is
/// its only escape, `+` and `&` are part of it. So `/get/ID&zzz` is not
/// document ID, a DELETE of `ID&other` leaves ID alone, and an id with a
/// plus, an ampersand and a space is fetched and deleted exactly; an escape
/// that does not decode is refused.
#[test]
fn ids_in_the_path_are_decoded_as_path_segments() {
    let s = primary(&["--write-token", TOKEN]);
    let odd = "69123_0099+b&c d";
    let street = r#"{"id": "ID", "type": "street", "name": "Rue Zéphyrine", "postcode": "69002", "citycode": "69123", "city": "Lyon", "lon": 4.83, "lat": 45.75, "importance": 0.5}"#;
    let (status, v) = post(&s, Some(TOKEN), &street.replace("ID", odd));
    assert_eq!(status, 200, "{v}");
    // `+` and `&` as a URL library leaves them in a path, and all escaped.
    for target in ["/get/69123_0099+b&c%20d", "/get/69123_0099%2Bb%26c%20d", "/get/69123_0099+b&c%20d/"] {
        let (status, v) = s.get_json(target);
        assert_eq!((status, v["properties"]["id"].as_str()), (200, Some(odd)), "{target}: {v}");
    }
    for target in ["/get/75056&zzz", "/get/69123_0099+b", "/get/69123_0099%20b&c%20d", "/get/75056//"] {
        let (status, v) = s.get_json(target);
        assert_eq!(status, 404, "{target}: {v}");
    }
    for target in ["/get/%ff", "/get/75056%", "/get/75056%4", "/get/%zz75056", "/get/%C3%28"] {
        let (status, v) = s.get_json(target);
        assert_eq!((status, v["title"].as_str()), (400, Some("Invalid id")), "{target}: {v}");
        assert!(v["description"].is_string(), "{target}: {v}");
    }

    let delete = |target: &str| send(&s, "DELETE", target, Some(TOKEN), "text/plain", "");
    let (status, v) = delete("/documents/75056&not-this-id");
    assert_eq!(status, 404, "{v}");
    assert_eq!(delete("/documents/75056%ff").0, 400);
    assert_eq!(s.get_json("/get/75056").0, 200, "75056 is still there");
    let (status, v) = delete("/documents/69123_0099+b&c%20d");
    assert_eq!((status, v["deleted"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(s.get_json("/get/69123_0099%2Bb%26c%20d").0, 404);
    assert_eq!(s.get_json("/health").1["documents"], 16);
}
