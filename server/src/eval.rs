//! `cairn eval`: relevance of search on a query file, in-process or against
//! any Addok-compatible HTTP geocoder, so both are scored on the same queries.
//! A file whose header is `lat<TAB>lon<TAB>expected_id` is a reverse file:
//! each point is sent to reverse, and scored as a query.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn::{Database, Point, ReverseQuery, SearchQuery};

/// One query of the file: text (or a point, for reverse), expected id,
/// kind of noise.
struct Case {
    query: String,
    at: Option<Point>,
    expected: String,
    kind: String,
}

/// The header of a reverse file.
const REVERSE_HEADER: &str = "lat\tlon\texpected_id";

fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let reverse = text.lines().next().is_some_and(|h| h.trim_end() == REVERSE_HEADER);
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (i == 0 && (reverse || line.starts_with("query\t"))) {
            continue;
        }
        let mut cols = line.split('\t');
        if reverse {
            let at = match (cols.next().map(str::parse::<f64>), cols.next().map(str::parse::<f64>), cols.next()) {
                (Some(Ok(lat)), Some(Ok(lon)), Some(expected)) if (Point { lat, lon }).is_valid() => {
                    (Point { lat, lon }, expected)
                }
                _ => {
                    bail!("{}:{}: expected lat<TAB>lon<TAB>expected_id, lat and lon in degrees", path.display(), i + 1)
                }
            };
            let query = format!("{} {}", at.0.lat, at.0.lon);
            cases.push(Case { query, at: Some(at.0), expected: at.1.to_owned(), kind: "reverse".into() });
            continue;
        }
        let (Some(query), Some(expected)) = (cols.next(), cols.next()) else {
            bail!("{}:{}: expected query<TAB>expected_id[<TAB>kind]", path.display(), i + 1);
        };
        let kind = cols.next().unwrap_or("all").to_owned();
        cases.push(Case { query: query.to_owned(), at: None, expected: expected.to_owned(), kind });
    }
    Ok(cases)
}

/// Where queries go.
pub enum Target {
    Local(Box<Database>),
    Http { host: String, path_prefix: String },
}

impl Target {
    pub fn http(url: &str) -> Result<Target> {
        let rest = url.strip_prefix("http://").context("--url must start with http:// (plain HTTP on a local port)")?;
        let (host, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h.to_owned(), format!("/{}", p.trim_end_matches('/'))),
            None => (rest.to_owned(), String::new()),
        };
        Ok(Target::Http { host, path_prefix: prefix.trim_end_matches('/').to_owned() })
    }

    /// (id, score) of the results of reverse at `at`, nearest first.
    fn reverse(&self, at: Point, limit: usize) -> Result<Vec<(String, f64)>> {
        match self {
            Target::Local(db) => {
                let q = ReverseQuery { at, limit, filters: Vec::new() };
                Ok(db.reverse(&q)?.iter().map(|f| (f.prop_str("id").unwrap_or("").to_owned(), f.score)).collect())
            }
            Target::Http { host, path_prefix } => {
                let target = format!("{path_prefix}/reverse?lat={}&lon={}&limit={limit}", at.lat, at.lon);
                features(&http_get(host, &target)?)
            }
        }
    }

    /// (id, score) of the results, best first.
    fn search(&self, q: &str, limit: usize, autocomplete: bool) -> Result<Vec<(String, f64)>> {
        match self {
            Target::Local(db) => {
                let mut sq = SearchQuery::new(q);
                sq.limit = limit;
                sq.autocomplete = autocomplete;
                Ok(db.search(&sq)?.iter().map(|f| (f.prop_str("id").unwrap_or("").to_owned(), f.score)).collect())
            }
            Target::Http { host, path_prefix } => {
                let qs: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", q)
                    .append_pair("limit", &limit.to_string())
                    .append_pair("autocomplete", if autocomplete { "1" } else { "0" })
                    .finish();
                features(&http_get(host, &format!("{path_prefix}/search?{qs}"))?)
            }
        }
    }
}

/// (id, score) of the features of a `GeoJSON` answer.
fn features(body: &str) -> Result<Vec<(String, f64)>> {
    let v: serde_json::Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body:.200}"))?;
    Ok(v["features"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    let p = &f["properties"];
                    (p["id"].as_str().unwrap_or("").to_owned(), p["score"].as_f64().unwrap_or(0.0))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// A GET over HTTP/1.1 with `Connection: close`; enough for a local geocoder.
fn http_get(host: &str, target: &str) -> Result<String> {
    let mut s = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{target}: HTTP {status}: {body:.200}");
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[derive(Default)]
struct Tally {
    n: usize,
    top1: usize,
    top5: usize,
    rr: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(target: &Target, file: &Path, limit: usize, autocomplete: bool, show_misses: usize) -> Result<()> {
    let cases = read_cases(file)?;
    if cases.is_empty() {
        bail!("{}: no queries", file.display());
    }
    let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    let mut misses = Vec::new();
    for c in &cases {
        let results = match c.at {
            Some(at) => target.reverse(at, limit)?,
            None => target.search(&c.query, limit, autocomplete)?,
        };
        let rank = results.iter().position(|(id, _)| *id == c.expected);
        for t in [by_kind.entry(c.kind.clone()).or_default(), &mut all] {
            t.n += 1;
            t.top1 += usize::from(rank == Some(0));
            t.top5 += usize::from(rank.is_some_and(|r| r < 5));
            t.rr += rank.map_or(0.0, |r| 1.0 / (r + 1) as f64);
        }
        match results.first() {
            Some((id, score)) if *id == c.expected => right.push(*score),
            Some((id, score)) => {
                wrong.push(*score);
                misses.push((c, Some(id.clone()), rank));
            }
            None => misses.push((c, None, None)),
        }
    }
    println!("{:<20} {:>6} {:>8} {:>8} {:>8}", "kind", "n", "top1", "top5", "MRR");
    let line = |k: &str, t: &Tally| {
        let n = t.n.max(1) as f64;
        println!(
            "{:<20} {:>6} {:>7.1}% {:>7.1}% {:>8.3}",
            k,
            t.n,
            100.0 * t.top1 as f64 / n,
            100.0 * t.top5 as f64 / n,
            t.rr / n
        );
    };
    for (k, t) in &by_kind {
        line(k, t);
    }
    line("all", &all);
    println!(
        "median score of the first result: right {:.3} (n={}), wrong {:.3} (n={})",
        median(&mut right),
        right.len(),
        median(&mut wrong),
        wrong.len()
    );
    for (c, got, rank) in misses.iter().take(show_misses) {
        let rank = rank.map_or("-".to_owned(), |r| (r + 1).to_string());
        println!(
            "miss [{}] {:?}: expected {} (rank {}), got {}",
            c.kind,
            c.query,
            c.expected,
            rank,
            got.as_deref().unwrap_or("nothing")
        );
    }
    if misses.len() > show_misses {
        println!("... {} misses in all", misses.len());
    }
    Ok(())
}
