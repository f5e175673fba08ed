//! A query's path: parse the text, fetch candidates from the full-text
//! index, resolve housenumbers, score with [`crate::rank`], build features.

use std::time::Instant;

use super::feature::{self as profile, Feature, Target, CHILD_KIND};
use super::Derived;
use crate::docs::Docs;
use crate::error::{Error, Result};
use crate::generation::Generation as Files;

/// A generation of addresses.
type Generation = Files<Derived>;
use crate::geo::haversine_m;
use crate::live::Mask;
use crate::rank;
use crate::record::Point;
use crate::text::analysis::{parse_query, BigramCounts};
use crate::text::{Counts, TextQuery};

/// Candidates fetched from the full-text index and scored, per query.
const CANDIDATES: usize = 20;
/// The same when a word is not in the index: its typo expansions pick less
/// surely, and a misspelt city needs the wider net (on the development
/// queries, 20 lose 13 of the 300 with typos).
const TYPO_CANDIDATES: usize = 40;
/// Candidates fetched first: when the best of them matches the query
/// exactly, no other candidate can rank above it (the importance and
/// nearness terms weigh 0.1 each, the text term 1), so the rest are not
/// fetched. Most full-address queries stop here, at a fraction of the cost.
const FIRST_CANDIDATES: usize = 10;
/// Municipalities asked of the index for the rare words of a short query
/// (those of common words come from `TownWords`).
const TOWN_CANDIDATES: usize = 5;
/// How far from the given point a number typed alone is looked for.
const NUMBER_REACH_M: f64 = 10_000.0;
/// Candidates searched for those with the query's housenumber, when the
/// first ones have none.
const NUMBER_POOL: usize = 100;
/// The results of a search do not depend on the limit asked for: the first
/// ones are the best of a pool of fixed size, made for this many results;
/// a search for more than that pool holds appends, after them, the best of
/// the next pool that were not shown, and so on. So the first k results of
/// any two searches that differ only in their limit are the same (up to a
/// limit of the last pool's size; a server may allow more).
const POOLS: [usize; 3] = [5, 20, 100];

/// A forward geocoding query.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub q: String,
    pub limit: usize,
    /// Match the last word as a prefix.
    pub autocomplete: bool,
    /// Favour results near this point.
    pub near: Option<Point>,
    /// (field, accepted values): `type`, `postcode`, `citycode`.
    pub filters: Vec<(String, Vec<String>)>,
}

impl SearchQuery {
    pub fn new(q: impl Into<String>) -> SearchQuery {
        SearchQuery { q: q.into(), limit: 5, autocomplete: true, near: None, filters: Vec::new() }
    }
}

/// A reverse geocoding query.
#[derive(Debug, Clone)]
pub struct ReverseQuery {
    pub at: Point,
    pub limit: usize,
    pub filters: Vec<(String, Vec<String>)>,
}

struct Scored {
    score: f64,
    text: f64,
    importance: f64,
    target: Target,
    distance: Option<f64>,
}

fn check(deadline: Option<Instant>) -> Result<()> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(Error::Timeout),
        _ => Ok(()),
    }
}

pub(crate) fn search(
    g: &Generation,
    counts: &Counts<'_>,
    skip: Option<&Mask>,
    q: &SearchQuery,
    deadline: Option<Instant>,
) -> Result<Vec<Feature>> {
    let q = &normalised(q);
    let docs = &g.docs;
    let mut out: Vec<Scored> = Vec::new();
    let last = POOLS.len() - 1;
    for (i, &size) in POOLS.iter().enumerate() {
        let size = if i == last { size.max(q.limit) } else { size };
        let pool = ranked(docs, search_pool(g, counts, skip, q, size, deadline)?);
        if out.is_empty() {
            out = pool;
        } else {
            let shown: std::collections::HashSet<(u32, Option<u32>)> =
                out.iter().map(|s| (s.target.slot, s.target.child)).collect();
            out.extend(pool.into_iter().filter(|s| !shown.contains(&(s.target.slot, s.target.child))));
        }
        if out.len() >= q.limit {
            break;
        }
    }
    out.truncate(q.limit);
    Ok(out.into_iter().map(|s| profile::feature(docs, s.target, s.score, s.distance)).collect())
}

/// The query with its filter values in the form they are indexed and
/// compared in (see [`profile::filter_value`]).
fn normalised(q: &SearchQuery) -> SearchQuery {
    SearchQuery { filters: normalised_filters(&q.filters), ..q.clone() }
}

fn normalised_filters(filters: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    filters.iter().map(|(n, vs)| (n.clone(), vs.iter().map(|v| profile::filter_value(v)).collect())).collect()
}

/// The candidates of a search sized for `pool` results, scored, in no
/// particular order.
// One plan, read top to bottom; split, it would hide which step feeds which.
#[allow(clippy::too_many_lines)]
fn search_pool(
    g: &Generation,
    counts: &Counts<'_>,
    skip: Option<&Mask>,
    q: &SearchQuery,
    pool: usize,
    deadline: Option<Instant>,
) -> Result<Vec<Scored>> {
    let docs = &g.docs;
    let parsed = parse_query(&q.q);
    let mut words = parsed.tokens;
    let housenumber = parsed.housenumber;
    if words.is_empty() {
        // A number alone names no place ("12" is in the context of every
        // town of Aveyron): Addok answers nothing, or, given a point, the
        // addresses with that number nearest to it, which is what someone
        // typing "12" on a map means.
        return match (housenumber, q.near) {
            (Some(h), Some(at)) => numbers_near(g, skip, q, &parsed.compare, &h, at, pool, deadline),
            _ => Ok(Vec::new()),
        };
    }
    // Children are found through their parents: a housenumber filter
    // searches the kinds that hold housenumbers, then keeps resolved ones.
    let kinds = q.filters.iter().find(|(n, _)| n == "type").map(|(_, v)| v.clone());
    let resolve_numbers = kinds.as_ref().is_none_or(|k| k.iter().any(|t| t == CHILD_KIND));
    let mut text_filters = Vec::with_capacity(q.filters.len());
    for (name, values) in &q.filters {
        if name == "type" {
            let mut v: Vec<String> = values.iter().filter(|t| *t != CHILD_KIND).cloned().collect();
            if values.iter().any(|t| t == CHILD_KIND) {
                v.extend(["street".to_owned(), "locality".to_owned()]);
            }
            text_filters.push((name.clone(), v));
        } else {
            text_filters.push((name.clone(), values.clone()));
        }
    }
    let prefix = if q.autocomplete { words.pop() } else { None };
    let short = housenumber.is_none() && words.len() + usize::from(prefix.is_some()) <= 3;
    // A word that may be an abbreviation or not ("r", "ham"): documents
    // hold either reading, a query means either.
    let word = |w: &String| match parsed.alternatives.iter().find(|a| &a.literal == w) {
        Some(a) => counts.word_or(w, &a.canonical),
        None => counts.word(w, false),
    };
    let words = words.iter().map(word).collect::<Result<Vec<_>>>()?;
    let prefix = prefix
        .map(|p| match parsed.alternatives.iter().find(|a| a.literal == p) {
            Some(a) => counts.prefix_or(&p, &a.canonical),
            None => counts.word(&p, true),
        })
        .transpose()?;
    let num_docs = counts.num_docs();
    let mut tq = TextQuery { words, prefix, filters: text_filters, near: q.near, skip, num_docs };
    let municipality_allowed = kinds.as_ref().is_none_or(|k| k.iter().any(|t| t == "municipality"));
    // Short queries, which also ask for municipalities apart, take the
    // full path at once: they rarely match a label exactly.
    let full_path = short && municipality_allowed;
    // Words of 3 letters or fewer get no typo expansion (see `text`).
    let unknown = |w: &str, freq: u64| freq == 0 && w.chars().nth(3).is_some();
    let misspelt = tq.words.iter().chain(&tq.prefix).any(|w| unknown(&w.text, w.freq));
    let wanted = if misspelt { TYPO_CANDIDATES } else { CANDIDATES }.max(pool * 2);
    // A last word typed half-way, or a word the index lacks (misspelt or
    // not), is no word of any label (labels are made of indexed words), so
    // no label can equal the query and the first, short fetch could not end
    // the search.
    let partial = tq.prefix.as_ref().is_some_and(|p| p.whole == 0);
    let absent = tq.words.iter().any(|w| w.freq == 0);
    let first = if full_path || partial || absent { wanted } else { FIRST_CANDIDATES.max(pool * 2).min(wanted) };
    let mut candidates = g.text.candidates(&tq, first)?;
    check(deadline)?;
    let compares: Vec<&str> =
        std::iter::once(parsed.compare.as_str()).chain(parsed.compare_canonical.as_deref()).collect();
    let query_bigrams: Vec<BigramCounts> = compares.iter().map(|c| BigramCounts::new(c)).collect();
    let ctx = ScoreContext {
        q,
        compares: &compares,
        housenumber: housenumber.as_deref(),
        resolve_numbers,
        kinds: kinds.as_deref(),
        deadline,
        query_bigrams: &query_bigrams,
    };
    let mut scored: Vec<Scored> = Vec::with_capacity(wanted + 5);
    score_candidates(docs, &ctx, &candidates, &mut scored)?;
    // Fewer candidates than asked means there are no more.
    let exact = scored.iter().any(|s| s.text >= 1.0);
    if !exact && candidates.len() == first && first < wanted {
        let more = g.text.candidates(&tq, wanted)?;
        check(deadline)?;
        let fresh: Vec<(f32, u32)> = more.into_iter().filter(|c| !candidates.iter().any(|k| k.1 == c.1)).collect();
        score_candidates(docs, &ctx, &fresh, &mut scored)?;
        candidates.extend(fresh);
    }
    // A number none of the candidates has ("82 rue de l", where many
    // streets fit the words): a user typing a number expects addresses
    // with it, so the streets with that number among a wider pool of the
    // best are scored too, and scoring decides. The pool's list is kept
    // like any costly one, whatever the number.
    if let (Some(h), true) = (housenumber.as_deref(), resolve_numbers) {
        if !scored.iter().any(|s| s.target.child.is_some()) {
            let has = profile::may_have(docs, h);
            let pool = g.text.candidates(&tq, NUMBER_POOL)?;
            check(deadline)?;
            let fresh: Vec<(f32, u32)> =
                pool.into_iter().filter(|c| has(c.1) && !candidates.iter().any(|k| k.1 == c.1)).take(wanted).collect();
            score_candidates(docs, &ctx, &fresh, &mut scored)?;
            candidates.extend(fresh);
        }
    }
    // A city or a postcode alone must bring its municipality even when
    // hundreds of streets share the word: ask the municipalities apart.
    if short && municipality_allowed {
        // Words that may name a place: rare ones, looked for in the index
        // below, and common ones that name a few towns ("paris" is in every
        // Paris street but names one town), whose towns are known without a
        // query. "rue de la" names none, and a filtered union of common
        // words is the most expensive query there is.
        let rare = num_docs / 50 + 100;
        let mut towns: Vec<u32> = Vec::new();
        for w in tq.words.iter().filter(|w| w.freq > rare) {
            towns.extend_from_slice(g.derived.towns.named(&w.text));
        }
        if let Some(p) = tq.prefix.as_ref().filter(|p| p.freq > rare) {
            towns.extend(g.derived.towns.starting(&p.text));
        }
        towns.sort_unstable();
        towns.dedup();
        let others: Vec<(String, Vec<String>)> = q.filters.iter().filter(|(n, _)| n != "type").cloned().collect();
        let mut fresh: Vec<(f32, u32)> = towns
            .into_iter()
            .filter(|s| !candidates.iter().any(|k| k.1 == *s) && skip.is_none_or(|m| !m.contains(*s)))
            .filter(|s| profile::passes(docs, Target { slot: *s, child: None }, &others))
            .map(|s| (0.0, s))
            .collect();
        tq.words.retain(|w| w.freq <= rare);
        if tq.prefix.as_ref().is_some_and(|p| p.freq > rare) {
            tq.prefix = None;
        }
        if !tq.words.is_empty() || tq.prefix.is_some() {
            tq.filters.retain(|(n, _)| n != "type");
            tq.filters.push(("type".to_owned(), vec!["municipality".to_owned()]));
            let found = g.text.candidates(&tq, TOWN_CANDIDATES)?;
            let new: Vec<(f32, u32)> =
                found.into_iter().filter(|c| !candidates.iter().chain(&fresh).any(|k| k.1 == c.1)).collect();
            fresh.extend(new);
        }
        score_candidates(docs, &ctx, &fresh, &mut scored)?;
    }
    Ok(scored)
}

/// `scored` by score, then importance, then id (so that ties do not
/// depend on the order candidates came in).
fn ranked(docs: &Docs, mut scored: Vec<Scored>) -> Vec<Scored> {
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.importance.total_cmp(&a.importance))
            .then_with(|| a.target.leaf(docs).id().cmp(&b.target.leaf(docs).id()))
    });
    scored
}

/// What scoring a candidate needs of the query.
struct ScoreContext<'a> {
    q: &'a SearchQuery,
    /// The query as compared with labels: as typed, and with its words
    /// that may be abbreviations written out, when it has any.
    compares: &'a [&'a str],
    housenumber: Option<&'a str>,
    resolve_numbers: bool,
    kinds: Option<&'a [String]>,
    deadline: Option<Instant>,
    /// Of each of `compares`.
    query_bigrams: &'a [BigramCounts],
}

fn score_candidates(
    docs: &Docs,
    c: &ScoreContext<'_>,
    candidates: &[(f32, u32)],
    scored: &mut Vec<Scored>,
) -> Result<()> {
    let mut scratch = Vec::new();
    let mut forms = profile::Forms::default();
    let mut labels = profile::Labels::default();
    for (i, (_, slot)) in candidates.iter().enumerate() {
        if i % 8 == 7 {
            check(c.deadline)?;
        }
        let mut target = Target { slot: *slot, child: None };
        if let (Some(h), true) = (c.housenumber, c.resolve_numbers) {
            target.child = profile::find_housenumber(docs, *slot, h);
        }
        if let Some(kinds) = c.kinds {
            if !kinds.iter().any(|k| k == target.kind(docs)) {
                continue;
            }
        }
        // The full-text index filters the candidates on their own values;
        // a result is checked as reverse checks it (`profile::passes`).
        if !c.q.filters.is_empty() && !profile::passes(docs, target, &c.q.filters) {
            continue;
        }
        let record = docs.record(*slot);
        profile::compare_labels(docs, target, &record, &mut forms, &mut labels);
        let mut text: f64 = 0.0;
        for (compare, bigrams) in c.compares.iter().zip(c.query_bigrams) {
            text = text.max(rank::text_score_with(compare, bigrams, labels.iter(), c.q.autocomplete, &mut scratch));
        }
        let distance = c.q.near.and_then(|p| target.point(docs).map(|t| haversine_m(p, t)));
        let importance = profile::importance(&record);
        let score = rank::combine(text, importance, distance);
        if score >= rank::MIN_SCORE {
            scored.push(Scored { score, text, importance, target, distance });
        }
    }
    Ok(())
}

/// The housenumbers numbered `key` nearest to `at`, within
/// [`NUMBER_REACH_M`], scored as any search result (so "12" scores as
/// Addok scores it: a label that starts with the query, importance and
/// nearness).
#[allow(clippy::too_many_arguments)]
fn numbers_near(
    g: &Generation,
    skip: Option<&Mask>,
    q: &SearchQuery,
    compare: &str,
    key: &str,
    at: Point,
    pool: usize,
    deadline: Option<Instant>,
) -> Result<Vec<Scored>> {
    let docs = &g.docs;
    // Every filter, `type` included, is checked here, on the point's record.
    let keep = |slot: u32| {
        let t = Target::of(docs, slot);
        skip.is_none_or(|m| !m.contains(slot))
            && t.child.is_some()
            && profile::is_number(docs, slot, key)
            && profile::passes(docs, t, &q.filters)
    };
    let streets: Vec<(f32, u32)> = g
        .geo
        .nearest_within(at, pool, NUMBER_REACH_M, keep)
        .into_iter()
        .map(|(slot, _)| (0.0, Target::of(docs, slot).slot))
        .collect();
    check(deadline)?;
    let query_bigrams = [BigramCounts::new(compare)];
    let ctx = ScoreContext {
        q,
        compares: &[compare],
        housenumber: Some(key),
        resolve_numbers: true,
        kinds: None,
        deadline,
        query_bigrams: &query_bigrams,
    };
    let mut scored = Vec::with_capacity(streets.len());
    score_candidates(docs, &ctx, &streets, &mut scored)?;
    Ok(scored)
}

pub(crate) fn reverse(g: &Generation, skip: Option<&Mask>, q: &ReverseQuery) -> Vec<Feature> {
    let docs = &g.docs;
    let filters = normalised_filters(&q.filters);
    let keep = |slot: u32| {
        skip.is_none_or(|m| !m.contains(slot))
            && (filters.is_empty() || profile::passes(docs, Target::of(docs, slot), &filters))
    };
    // The index keeps points to a micrometre: distances are measured
    // again from the records' own points, so that answers do not depend on
    // how the index stores them.
    let mut found: Vec<(u32, f64)> = g
        .geo
        .nearest(q.at, q.limit, keep)
        .into_iter()
        .map(|(slot, d)| (slot, docs.record(slot).point().map_or(d, |p| crate::geo::distance_m(q.at, p))))
        .collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    found
        .into_iter()
        .map(|(slot, d)| profile::feature(docs, Target::of(docs, slot), rank::geo_score(d), Some(d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{Database, ImportOptions, SearchQuery};

    /// `n` towns with the same "Rue de la Gare", numbers 1 to 5, of which
    /// only the town `numbered` also has a 82: equal words, equal scores,
    /// so the full-text order alone puts it anywhere among them.
    fn gare_streets(dir: &std::path::Path, n: usize, numbered: usize) -> Database {
        let mut lines = String::new();
        for t in 0..n {
            let mut numbers: Vec<String> =
                (1..=5).map(|h| format!(r#""{h}": {{"id": "s{t}_{h}", "lon": 5.0, "lat": 45.0}}"#)).collect();
            if t == numbered {
                numbers.push(format!(r#""82": {{"id": "s{t}_82", "lon": 5.0, "lat": 45.0}}"#));
            }
            lines.push_str(&format!(
                r#"{{"id": "s{t}", "type": "street", "name": "Rue de la Gare", "postcode": "{:05}", "city": "Ville{t}", "lon": 5.0, "lat": 45.0, "importance": 0.5, "housenumbers": {{{}}}}}"#,
                10000 + t,
                numbers.join(", ")
            ));
            lines.push('\n');
        }
        import(dir, &lines)
    }

    fn import(dir: &std::path::Path, lines: &str) -> Database {
        let file = dir.join("data.ndjson");
        std::fs::write(&file, lines).unwrap();
        let db = Database::open(dir.join("db")).unwrap();
        db.import(&[file], &ImportOptions::default(), &mut |_| {}).unwrap();
        db
    }

    fn ids(db: &Database, q: &str) -> Vec<String> {
        let found = db.search(&SearchQuery::new(q)).unwrap();
        found.iter().map(|f| f.prop_str("id").unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn a_typed_number_brings_the_streets_that_have_it() {
        let dir = tempfile::tempdir().unwrap();
        // Whichever of 60 identical streets has the number, wherever the
        // index puts it among the others, "82 rue de la g..." finds it.
        for numbered in [0, 30, 59] {
            let sub = dir.path().join(numbered.to_string());
            std::fs::create_dir(&sub).unwrap();
            let db = gare_streets(&sub, 60, numbered);
            for q in ["82 rue de la gare", "82 rue de la g", "82 Rue de la Ga"] {
                let got = ids(&db, q);
                assert_eq!(got.first().map(String::as_str), Some(format!("s{numbered}_82").as_str()), "{q}: {got:?}");
            }
            // A number every street has: the first ones have it, as before.
            assert!(ids(&db, "3 rue de la gare")[0].ends_with("_3"));
        }
    }

    #[test]
    fn a_big_city_typed_alone_is_found() {
        // Paris: a municipality whose name is in 300 street records, far
        // more than a word that names a place usually is, and a long record
        // (20 postcodes) that full-text scoring ranks below them; and eight
        // small towns whose names start like it, each a shorter record.
        let town = |id: &str, name: &str, postcodes: &str, importance: f64| {
            format!(
                r#"{{"id": "{id}", "type": "municipality", "name": "{name}", "postcode": [{postcodes}], "citycode": "{id}", "city": "{name}", "lon": 2.35, "lat": 48.85, "importance": {importance}}}"#
            )
        };
        let paris_postcodes: Vec<String> = (1..=20).map(|a| format!(r#""750{a:02}""#)).collect();
        let mut lines = vec![town("75056", "Paris", &paris_postcodes.join(", "), 0.9)];
        for i in 0..8 {
            let id = format!("0100{i}");
            let name = format!("Parigny {}", ["A", "B", "C", "D", "E", "F", "G", "H"][i]);
            lines.push(town(&id, &name, &format!(r#""{id}""#), 0.3));
        }
        for i in 0..300 {
            lines.push(format!(
                r#"{{"id": "p{i}", "type": "street", "name": "Rue {i}", "postcode": "75001", "citycode": "75056", "city": "Paris", "lon": 2.35, "lat": 48.85, "importance": 0.5}}"#
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let db = import(dir.path(), &(lines.join("\n") + "\n"));
        for q in ["paris", "Paris", "PARIS", "pari"] {
            assert_eq!(ids(&db, q).first().map(String::as_str), Some("75056"), "{q}");
        }
        // Typed as a whole word, not completed.
        let mut whole = SearchQuery::new("paris");
        whole.autocomplete = false;
        assert_eq!(db.search(&whole).unwrap().first().and_then(|f| f.prop_str("id")), Some("75056"));
        // A word that names no town stays out of the municipalities' query.
        assert!(ids(&db, "rue").iter().all(|id| id.starts_with('p')));
    }

    #[test]
    fn a_number_alone_is_the_nearest_addresses_with_it() {
        // Three streets 0.5, 1 and 3 km north of the point; the nearest has
        // no 12. A town whose context says "12" (its département).
        let street = |id: &str, lat: f64, numbers: &[&str]| {
            let numbers: Vec<String> =
                numbers.iter().map(|n| format!(r#""{n}": {{"id": "{id}_{n}", "lon": 2.0, "lat": {lat}}}"#)).collect();
            format!(
                r#"{{"id": "{id}", "type": "street", "name": "Rue {id}", "postcode": "12000", "city": "Rodez", "lon": 2.0, "lat": {lat}, "importance": 0.5, "housenumbers": {{{}}}}}"#,
                numbers.join(", ")
            )
        };
        let lines = [
            street("a", 45.0045, &["1", "2"]),
            street("b", 45.009, &["12", "14"]),
            street("c", 45.027, &["12"]),
            r#"{"id": "12202", "type": "municipality", "name": "Rodez", "postcode": ["12000"], "citycode": "12202", "city": "Rodez", "context": "12, Aveyron, Occitanie", "lon": 2.5, "lat": 44.35, "importance": 0.5}"#.to_owned(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let db = import(dir.path(), &(lines.join("\n") + "\n"));
        assert!(ids(&db, "12").is_empty(), "no point: a number names nothing");
        let mut near = SearchQuery::new("12");
        near.near = Some(crate::Point { lat: 45.0, lon: 2.0 });
        let found = db.search(&near).unwrap();
        let got: Vec<&str> = found.iter().filter_map(|f| f.prop_str("id")).collect();
        assert_eq!(got, ["b_12", "c_12"]);
        assert!(found[0].score > found[1].score);
        // Filters still apply: a postcode the streets do not have, or a
        // kind that is not a housenumber, leaves nothing.
        for filter in [("postcode", "99999"), ("type", "street")] {
            let mut f = near.clone();
            f.filters = vec![(filter.0.to_owned(), vec![filter.1.to_owned()])];
            assert!(db.search(&f).unwrap().is_empty(), "{filter:?}");
        }
        near.filters = vec![("postcode".to_owned(), vec!["12000".to_owned()])];
        assert_eq!(db.search(&near).unwrap().len(), 2);
        near.filters.clear();
        // Further than 10 km, nothing.
        near.near = Some(crate::Point { lat: 45.2, lon: 2.0 });
        assert!(db.search(&near).unwrap().is_empty());
    }
}
