//! The HTTP API, against a real `cairn serve` on 127.0.0.1.

#[path = "common/mod.rs"]
mod common;

use common::{enc, first, fixture, ids, Server};

fn server() -> Server {
    Server::start(&[&fixture("small.ndjson")])
}

fn search(s: &Server, q: &str, extra: &str) -> serde_json::Value {
    let (status, v) = s.get_json(&format!("/search?q={}{extra}", enc(q)));
    assert_eq!(status, 200, "{q}: {v}");
    v
}

#[test]
fn full_address_resolves_the_housenumber() {
    let s = server();
    let v = search(&s, "12 Rue de la Paix 75002 Paris", "");
    let p = first(&v);
    assert_eq!(p["id"], "75102_0001_00012");
    assert_eq!(p["type"], "housenumber");
    assert_eq!(p["housenumber"], "12");
    assert_eq!(p["label"], "12 Rue de la Paix 75002 Paris");
    assert_eq!(p["name"], "12 Rue de la Paix");
    assert_eq!(p["street"], "Rue de la Paix");
    assert_eq!(p["postcode"], "75002");
    assert_eq!(p["citycode"], "75102");
    assert_eq!(p["city"], "Paris");
    assert!(p["x"].as_f64().is_some() && p["y"].as_f64().is_some());
    let score = p["score"].as_f64().unwrap();
    assert!(score > 0.9 && score <= 1.0, "exact address scores near 1: {score}");
    assert_eq!(v["features"][0]["geometry"]["coordinates"], serde_json::json!([2.33155, 48.86905]));
    assert_eq!(v["type"], "FeatureCollection");
    assert_eq!(v["query"], "12 Rue de la Paix 75002 Paris");
    assert_eq!(v["limit"], 5);
    assert!(v["attribution"].is_string() && v["licence"].is_string() && v["version"].is_string());
}

#[test]
fn bis_numbers_in_every_spelling() {
    let s = server();
    for q in ["12 bis rue de la paix paris", "12bis rue de la paix paris", "12 b rue de la paix paris"] {
        assert_eq!(first(&search(&s, q, ""))["id"], "75102_0001_00012_bis", "{q}");
    }
}

#[test]
fn unknown_housenumber_falls_back_to_the_street() {
    let s = server();
    let exact = search(&s, "12 rue de la paix paris", "");
    let v = search(&s, "99 rue de la paix paris", "");
    let p = first(&v);
    assert_eq!(p["id"], "75102_0001");
    assert_eq!(p["type"], "street");
    assert!(p.get("housenumber").is_none());
    assert!(p["score"].as_f64().unwrap() < first(&exact)["score"].as_f64().unwrap());
}

#[test]
fn autocomplete_completes_the_last_word_and_can_be_turned_off() {
    let s = server();
    let v = search(&s, "avenue victor hu", "");
    assert_eq!(first(&v)["id"], "69123_0004");
    let v = search(&s, "republ", "");
    assert!(ids(&v).contains(&"69123_0002".to_owned()), "{v}");
    let v = search(&s, "republ", "&autocomplete=0");
    assert!(ids(&v).is_empty(), "no whole word matches without autocomplete: {v}");
    let (status, _) = s.get_json("/search?q=paris&autocomplete=maybe");
    assert_eq!(status, 400);
}

#[test]
fn typos_are_tolerated() {
    let s = server();
    assert_eq!(first(&search(&s, "rue de la paxi paris", ""))["id"], "75102_0001");
    assert_eq!(first(&search(&s, "avenue victr hugo lyon", "&autocomplete=0"))["id"], "69123_0004");
    assert_eq!(first(&search(&s, "marseile", ""))["id"], "13055");
}

#[test]
fn abbreviations_and_accents() {
    let s = server();
    assert_eq!(first(&search(&s, "bd st michel marseille", ""))["id"], "13055_0005");
    assert_eq!(first(&search(&s, "RUE DE LA REPUBLIQUE LYON", ""))["id"], "69123_0002");
}

#[test]
fn filters_restrict_results() {
    let s = server();
    let v = search(&s, "rue de la republique", "&citycode=13055");
    assert_eq!(ids(&v), vec!["13055_0003"]);
    assert_eq!(v["filters"]["citycode"], serde_json::json!(["13055"]));
    let v = search(&s, "rue de la republique", "&postcode=69002");
    assert_eq!(ids(&v), vec!["69123_0002"]);
    let v = search(&s, "lyon", "&type=municipality");
    assert_eq!(ids(&v), vec!["69123"]);
    let v = search(&s, "lyon", "&type=street");
    assert!(!ids(&v).is_empty());
    assert!(v["features"].as_array().unwrap().iter().all(|f| f["properties"]["type"] == "street"));
    let v = search(&s, "3 rue de la republique", "&type=housenumber");
    assert!(!ids(&v).is_empty());
    assert!(v["features"].as_array().unwrap().iter().all(|f| f["properties"]["type"] == "housenumber"), "{v}");
    // Several values: OR inside one filter.
    let v = search(&s, "rue de la republique", "&citycode=13055&citycode=69123");
    assert_eq!(ids(&v).len(), 2);
}

#[test]
fn lat_lon_favours_nearby_results() {
    let s = server();
    let near_lyon = search(&s, "rue de la republique", "&lat=45.76&lon=4.83");
    assert_eq!(first(&near_lyon)["id"], "69123_0002");
    assert_eq!(near_lyon["center"], serde_json::json!([4.83, 45.76]));
    assert!(first(&near_lyon)["distance"].as_i64().unwrap() < 2_000);
    let near_marseille = search(&s, "rue de la republique", "&lat=43.30&lon=5.37");
    assert_eq!(first(&near_marseille)["id"], "13055_0003");
}

#[test]
fn limit_is_applied() {
    let s = server();
    let v = search(&s, "rue", "&limit=1");
    assert_eq!(ids(&v).len(), 1);
    assert_eq!(v["limit"], 1);
}

#[test]
fn reverse_finds_the_nearest_with_distance() {
    let s = server();
    let (status, v) = s.get_json("/reverse?lat=48.86906&lon=2.33156");
    assert_eq!(status, 200);
    assert_eq!(ids(&v), vec!["75102_0001_00012"]);
    let p = first(&v);
    assert_eq!(p["label"], "12 Rue de la Paix 75002 Paris");
    assert!(p["distance"].as_i64().unwrap() <= 2);
    assert!(p["score"].as_f64().unwrap() > 0.99);
    let (_, v) = s.get_json("/reverse?lat=48.86906&lon=2.33156&limit=3");
    let d: Vec<i64> =
        v["features"].as_array().unwrap().iter().map(|f| f["properties"]["distance"].as_i64().unwrap()).collect();
    assert_eq!(d.len(), 3);
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    let (_, v) = s.get_json("/reverse?lat=48.86906&lon=2.33156&type=street");
    assert_eq!(ids(&v), vec!["75102_0001"]);
    let (_, v) = s.get_json("/reverse?lat=45.7580&lon=4.8322&type=municipality");
    assert_eq!(ids(&v), vec!["69123"]);
}

#[test]
fn get_by_id() {
    let s = server();
    let (status, v) = s.get_json("/get/75102_0001_00012_bis");
    assert_eq!(status, 200);
    assert_eq!(v["type"], "Feature");
    assert_eq!(v["properties"]["housenumber"], "12 bis");
    assert_eq!(v["properties"]["street"], "Rue de la Paix");
    let (status, v) = s.get_json("/get/69123");
    assert_eq!(status, 200);
    assert_eq!(v["properties"]["name"], "Lyon");
    let (status, v) = s.get_json("/get/nope");
    assert_eq!(status, 404);
    assert!(v["description"].as_str().unwrap().contains("nope"));
}

#[test]
fn trailing_slashes_are_the_same_routes() {
    let s = server();
    let a = s.get_json("/search?q=lyon").1;
    let b = s.get_json("/search/?q=lyon").1;
    assert_eq!(a, b);
    let a = s.get_json("/reverse?lat=45.76&lon=4.83").1;
    let b = s.get_json("/reverse/?lat=45.76&lon=4.83").1;
    assert_eq!(a, b);
    assert_eq!(s.get_json("/health/").0, 200);
}

#[test]
fn bad_input_gets_a_4xx_with_a_json_reason() {
    let s = server();
    let long = "a".repeat(201);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/search".into(), 400, "\"q\" parameter is required"),
        ("/search?q=".into(), 400, "\"q\" parameter is required"),
        (format!("/search?q={long}"), 413, "Query too long"),
        ("/search?q=paris&lat=abc&lon=2".into(), 400, "\"lat\" parameter is invalid"),
        ("/search?q=paris&limit=abc".into(), 400, "\"limit\" parameter is invalid"),
        ("/search?q=paris&limit=101".into(), 400, "out of range"),
        ("/search?q=paris&lat=95&lon=2".into(), 400, "out of range"),
        ("/reverse?lat=abc&lon=2".into(), 400, "\"lat\" parameter is invalid"),
        ("/reverse?lon=2".into(), 400, "\"lat\" parameter is required"),
        ("/reverse?lat=45&lon=200".into(), 400, "out of range"),
        ("/nowhere".into(), 404, "404 Not Found"),
        ("/search?q=%FF%FE".into(), 200, "FeatureCollection"),
    ];
    for (target, status, needle) in cases {
        let (got, body) = s.request("GET", &target);
        assert_eq!(got, status, "{target}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{target}: not JSON: {body}"));
        let text: String =
            ["title", "description", "type"].iter().filter_map(|k| v[*k].as_str()).collect::<Vec<_>>().join(" ");
        assert!(text.contains(needle), "{target}: {v}");
    }
    let (status, body) = s.request("POST", "/search?q=paris");
    assert_eq!(status, 405, "{body}");
    // A browser's CORS preflight, for a widget that sends X-Requested-With:
    // allowed on the public routes, as Addok allows it.
    for (target, methods) in [("/search?q=paris", "GET, OPTIONS"), ("/reverse/csv", "POST, OPTIONS")] {
        let req = format!(
            "OPTIONS {target} HTTP/1.1\r\nHost: x\r\nOrigin: http://example.org\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-requested-with\r\nConnection: close\r\n\r\n"
        );
        let (status, head, body) = common::exchange(&s.addr, req.as_bytes());
        let head = head.to_ascii_lowercase();
        assert_eq!(status, 200, "{target}: {head}");
        assert!(body.is_empty(), "{target}");
        for line in [
            "access-control-allow-origin: *".to_owned(),
            "access-control-allow-headers: x-requested-with".to_owned(),
            format!("access-control-allow-methods: {}", methods.to_ascii_lowercase()),
            format!("allow: {}", methods.to_ascii_lowercase()),
        ] {
            assert!(head.contains(&line), "{target}: no {line:?} in {head}");
        }
    }
    // Not on the authenticated write routes.
    assert_eq!(s.request("OPTIONS", "/documents").0, 405);
    // The server is still answering after all of that.
    assert_eq!(s.get_json("/search?q=paris").0, 200);
}

#[test]
fn health_reports_the_generation() {
    let s = server();
    let (status, v) = s.get_json("/health");
    assert_eq!(status, 200);
    assert_eq!(v["status"], "HEALTHY");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["documents"], 16);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let s = server();
    assert_eq!(s.get_json("/health").0, 200);
    assert!(s.terminate().success());
}

#[test]
fn word_order_and_partial_queries() {
    let s = server();
    // City first.
    assert_eq!(first(&search(&s, "paris 12 rue de la paix", ""))["id"], "75102_0001_00012");
    assert_eq!(first(&search(&s, "lyon rue de la republique", ""))["id"], "69123_0002");
    // Street without city.
    assert_eq!(first(&search(&s, "avenue victor hugo", ""))["id"], "69123_0004");
    // City alone and postcode alone: the municipality first.
    assert_eq!(first(&search(&s, "marseille", ""))["id"], "13055");
    assert_eq!(first(&search(&s, "75002", ""))["id"], "75056");
}

#[test]
fn two_typos_on_long_words() {
    let s = server();
    assert_eq!(first(&search(&s, "rue de la rpeubliqeu lyon", ""))["id"], "69123_0002");
    // One letter missing, one doubled.
    assert_eq!(first(&search(&s, "bouleard saint michell marseille", ""))["id"], "13055_0005");
}

#[test]
fn scores_rise_with_match_quality() {
    let s = server();
    let score = |q: &str| first(&search(&s, q, ""))["score"].as_f64().unwrap();
    let exact = score("12 Rue de la Paix 75002 Paris");
    let no_postcode = score("12 rue de la paix paris");
    let typo = score("12 rue de la paxi paris");
    let street_only = score("99 rue de la paix");
    let weak = score("victor paix");
    // A full label and a shorter label matched exactly are both exact (as in Addok).
    assert!(exact >= no_postcode && no_postcode > typo, "{exact} {no_postcode} {typo}");
    assert!(exact > 0.9 && street_only < exact && typo > 0.5, "{exact} {street_only} {typo}");
    assert!(weak < 0.6 && weak < typo, "{weak}");
}

#[test]
fn repeated_queries_are_served_from_the_cache() {
    let s = server();
    let (_, first) = s.request("GET", "/search?q=lyon&limit=2");
    // Same request, parameters in another order: the same entry.
    let (_, second) = s.request("GET", "/search?limit=2&q=lyon");
    assert_eq!(first, second);
    let (_, h) = s.get_json("/health");
    assert_eq!(h["cache"]["hits"], 1, "{h}");
    assert_eq!(h["cache"]["misses"], 1, "{h}");
    // Invalid requests are answered, never cached.
    assert_eq!(s.request("GET", "/search?q=lyon&limit=abc").0, 400);
    assert_eq!(s.get_json("/health").1["cache"]["entries"], 1);

    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    let off = Server::serve_with(dir, &["--cache-bytes", "0"]);
    off.request("GET", "/search?q=lyon");
    off.request("GET", "/search?q=lyon");
    assert_eq!(off.get_json("/health").1["cache"]["hits"], 0);
}

/// A repeated parameter takes its last value, so `q=lyon&q=paris` and
/// `q=paris&q=lyon` are two requests: with the cache on, each gets the
/// answer a server without cache gives, and an identical request is still
/// a hit.
#[test]
fn repeated_parameters_in_either_order_get_their_own_answer_from_the_cache() {
    let cached = server();
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    let uncached = Server::serve_with(dir, &["--cache-bytes", "0"]);
    let republique = format!("q={}", enc("rue de la republique"));
    // (route and fixed parameters, one value of the repeated ones, the
    // other, whether both orders are one request)
    let cases: Vec<(String, &str, &str, bool)> = vec![
        ("/search?limit=1".into(), "q=lyon", "q=paris", false),
        ("/search?q=rue".into(), "limit=1", "limit=3", false),
        ("/search?q=republ".into(), "autocomplete=0", "autocomplete=1", false),
        (format!("/search?{republique}"), "lat=45.76&lon=4.83", "lat=43.30&lon=5.37", false),
        (format!("/search?{republique}"), "latitude=45.76&lng=4.83", "latitude=43.30&lng=5.37", false),
        // A filter keeps every value given.
        (format!("/search?{republique}"), "citycode=13055", "citycode=69123", true),
        ("/reverse?limit=1".into(), "lat=48.86906&lon=2.33156", "lat=45.7580&lon=4.8322", false),
        ("/reverse?lat=48.86906&lon=2.33156".into(), "limit=1", "limit=3", false),
        ("/reverse?lat=48.86906&lon=2.33156".into(), "type=street", "type=housenumber", true),
    ];
    let mut targets = Vec::new();
    for (base, a, b, one) in &cases {
        let (ab, ba) = (format!("{base}&{a}&{b}"), format!("{base}&{b}&{a}"));
        assert_eq!(uncached.get_json(&ab).1 == uncached.get_json(&ba).1, *one, "{ab} and {ba}");
        targets.extend([ab, ba]);
    }
    for t in &targets {
        let (status, want) = uncached.get_json(t);
        assert_eq!(status, 200, "{t}: {want}");
        assert_eq!(cached.get_json(t), (200, want), "{t}: the cached server answers otherwise");
    }
    let hits = |s: &Server| s.get_json("/health").1["cache"]["hits"].as_u64().unwrap();
    let before = hits(&cached);
    for t in &targets {
        assert_eq!(cached.get_json(t), uncached.get_json(t), "{t}");
    }
    assert_eq!(hits(&cached) - before, targets.len() as u64, "the same requests again are all hits");
}
