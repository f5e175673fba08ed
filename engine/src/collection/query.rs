//! A collection query: filter, optional full text, sort, cursor, facets,
//! collapse; and how it runs on one version's indexes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::Value as Json;

use super::filter::{int_bounds, Compiled, Filter};
use super::index::{Column, Index, TextColumn};
use super::schema::{FieldType, Schema};
use super::CollectionError;

/// Most hits one page returns; more are read with the cursor (or streamed).
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 20;
/// The sort key of text relevance.
pub const SCORE: &str = "_score";

/// One key of a sort.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    /// A keyword, integer, float, bool or date field, or `_score`.
    pub field: String,
    pub descending: bool,
}

/// A query on a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Filter,
    /// Full text over the text fields: every word must match (the last
    /// one also as a prefix; long words with typos).
    pub text: Option<String>,
    /// Ties are broken by id, ascending. With text and no sort: by score.
    pub sort: Vec<SortKey>,
    pub limit: usize,
    /// From [`QueryResult::next_cursor`]: the page after it.
    pub cursor: Option<String>,
    /// Keyword fields to count the values of, over every match.
    pub facets: Vec<String>,
    /// Values per facet, the most frequent first.
    pub facet_limit: usize,
    /// A keyword field: only the first hit (by the sort) of each value.
    pub collapse: Option<String>,
    /// Fields of each hit to return; all when `None`.
    pub fields: Option<Vec<String>>,
    /// Count the matches ([`QueryResult::total`]).
    pub total: bool,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: Filter::All,
            text: None,
            sort: Vec::new(),
            limit: DEFAULT_LIMIT,
            cursor: None,
            facets: Vec::new(),
            facet_limit: 100,
            collapse: None,
            fields: None,
            total: false,
        }
    }
}

fn bad(path: &str, reason: impl Into<String>) -> CollectionError {
    CollectionError::BadQuery { path: path.to_owned(), reason: reason.into() }
}

fn field_names(v: &Json, path: &str) -> Result<Vec<String>, CollectionError> {
    let a = v.as_array().ok_or_else(|| bad(path, "expected an array of field names"))?;
    a.iter()
        .enumerate()
        .map(|(i, f)| {
            f.as_str().map(str::to_owned).ok_or_else(|| bad(&format!("{path}[{i}]"), "expected a field name"))
        })
        .collect()
}

impl Query {
    /// Reads a query from its JSON body, checked against the schema.
    pub fn parse(body: &Json, schema: &Schema) -> Result<Query, CollectionError> {
        let o = body.as_object().ok_or_else(|| bad("", "a query is a JSON object"))?;
        let mut q = Query::default();
        for (k, v) in o {
            match k.as_str() {
                "filter" => q.filter = Filter::parse(v, schema, "filter")?,
                "q" => q.text = Some(v.as_str().ok_or_else(|| bad("q", "expected text"))?.to_owned()),
                "sort" => q.sort = parse_sort(v)?,
                "limit" => {
                    q.limit = v
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n <= MAX_LIMIT)
                        .ok_or_else(|| bad("limit", format!("expected an integer from 0 to {MAX_LIMIT}")))?;
                }
                "cursor" if v.is_null() => {}
                "cursor" => {
                    let c = v.as_str().ok_or_else(|| bad("cursor", "expected a string"))?;
                    Cursor::decode(c)?;
                    q.cursor = Some(c.to_owned());
                }
                "facets" => q.facets = field_names(v, "facets")?,
                "facet_limit" => {
                    q.facet_limit = v
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| bad("facet_limit", "expected an integer from 1 to 10000"))?;
                }
                "collapse" => {
                    q.collapse = Some(v.as_str().ok_or_else(|| bad("collapse", "expected a field name"))?.to_owned());
                }
                "fields" => q.fields = Some(field_names(v, "fields")?),
                "total" => q.total = v.as_bool().ok_or_else(|| bad("total", "expected true or false"))?,
                other => {
                    return Err(bad(
                        other,
                        "unknown key: filter, q, sort, limit, cursor, facets, facet_limit, collapse, fields, total",
                    ))
                }
            }
        }
        q.check(schema)?;
        Ok(q)
    }

    /// Checks the fields a query names against the schema.
    pub fn check(&self, schema: &Schema) -> Result<(), CollectionError> {
        let kind = |f: &str, path: &str| {
            schema.spec(f).map(|s| s.kind).ok_or_else(|| bad(path, format!("no field {f:?} in the schema")))
        };
        for (i, s) in self.sort.iter().enumerate() {
            let path = format!("sort[{i}]");
            if s.field == SCORE {
                if self.text.is_none() {
                    return Err(bad(&path, "_score needs a text query (q)"));
                }
                continue;
            }
            let k = kind(&s.field, &path)?;
            if !matches!(
                k,
                FieldType::Keyword | FieldType::Integer | FieldType::Float | FieldType::Bool | FieldType::Date
            ) {
                return Err(bad(&path, format!("cannot sort on {:?}, a {k:?} field", s.field)));
            }
        }
        for (i, f) in self.facets.iter().enumerate() {
            let path = format!("facets[{i}]");
            if kind(f, &path)? != FieldType::Keyword {
                return Err(bad(&path, format!("facets are counted on keyword fields; {f:?} is not one")));
            }
        }
        if let Some(c) = &self.collapse {
            if kind(c, "collapse")? != FieldType::Keyword {
                return Err(bad("collapse", format!("collapse is on a keyword field; {c:?} is not one")));
            }
        }
        if let Some(fields) = &self.fields {
            for (i, f) in fields.iter().enumerate() {
                kind(f, &format!("fields[{i}]"))?;
            }
        }
        if self.text.is_some() && !schema.fields.values().any(|s| s.kind == FieldType::Text) {
            return Err(bad("q", "the schema has no text field"));
        }
        Ok(())
    }

    /// What a cursor must have been made by: everything that decides the
    /// order and the set of hits.
    fn fingerprint(&self) -> u64 {
        // SipHash with fixed keys: the same across runs of one build.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        format!("{:?}", self.filter).hash(&mut h);
        self.text.hash(&mut h);
        self.sort.hash(&mut h);
        self.collapse.hash(&mut h);
        h.finish()
    }
}

fn parse_sort(v: &Json) -> Result<Vec<SortKey>, CollectionError> {
    let items = match v {
        Json::Array(a) => a.clone(),
        Json::String(_) | Json::Object(_) => vec![v.clone()],
        _ => return Err(bad("sort", "expected [\"field:desc\", {\"field\": \"asc\"}, ...]")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("sort[{i}]");
            let (field, order) = match item {
                Json::String(s) => match s.rsplit_once(':') {
                    Some((f, o)) => (f.to_owned(), o.to_owned()),
                    None => (s.clone(), "asc".to_owned()),
                },
                Json::Object(o) if o.len() == 1 => {
                    let (f, ord) = o.iter().next().ok_or_else(|| bad(&path, "empty"))?;
                    (f.clone(), ord.as_str().ok_or_else(|| bad(&path, "the order is \"asc\" or \"desc\""))?.to_owned())
                }
                _ => return Err(bad(&path, "expected \"field\", \"field:desc\" or {\"field\": \"desc\"}")),
            };
            let descending = match order.as_str() {
                "asc" => false,
                "desc" => true,
                o => return Err(bad(&path, format!("{o:?}: the order is asc or desc"))),
            };
            Ok(SortKey { field, descending })
        })
        .collect()
}

/// What a query found: rows, in order.
pub(crate) struct Found {
    pub rows: Vec<(u32, Option<f32>)>,
    pub total: Option<u64>,
    pub facets: Vec<(String, Vec<(String, u64)>)>,
    pub next: Option<(u32, Option<f32>)>,
}

/// A cursor: the version it belongs to (its token, see `State::token`),
/// the query it was made by and the
/// last hit it returned.
pub(crate) struct Cursor {
    pub version: u64,
    fingerprint: u64,
    row: u32,
    score: Option<f32>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let score = self.score.map_or(u64::MAX, |s| u64::from(s.to_bits()));
        format!("{:016x}{:016x}{:08x}{:016x}", self.version, self.fingerprint, self.row, score)
    }

    pub fn decode(s: &str) -> Result<Cursor, CollectionError> {
        let bad = || bad("cursor", "not a cursor this server made");
        if s.len() != 56 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let n = |a: usize, b: usize| u64::from_str_radix(&s[a..b], 16).map_err(|_| bad());
        let score = n(40, 56)?;
        Ok(Cursor {
            version: n(0, 16)?,
            fingerprint: n(16, 32)?,
            row: u32::try_from(n(32, 40)?).map_err(|_| bad())?,
            score: if score == u64::MAX {
                None
            } else {
                Some(f32::from_bits(u32::try_from(score).map_err(|_| bad())?))
            },
        })
    }
}

/// One key of the sort, resolved to its column.
enum Key<'a> {
    Score(bool),
    Keyword(&'a super::index::KeywordColumn, bool),
    Int(&'a super::index::NumColumn<i64>, bool),
    Float(&'a super::index::NumColumn<f64>, bool),
    Bool(&'a [u8], bool),
}

/// Missing values sort last, in either direction.
fn with_missing<T>(a: Option<T>, b: Option<T>, desc: bool, cmp: impl Fn(T, T) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => {
            let o = cmp(x, y);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

impl Key<'_> {
    fn cmp(&self, a: (u32, Option<f32>), b: (u32, Option<f32>)) -> Ordering {
        let (ra, rb) = (a.0 as usize, b.0 as usize);
        match self {
            Key::Score(desc) => with_missing(a.1, b.1, *desc, |x: f32, y: f32| x.total_cmp(&y)),
            Key::Keyword(c, desc) => {
                with_missing(c.of(a.0).first(), c.of(b.0).first(), *desc, |x: &u32, y: &u32| x.cmp(y))
            }
            Key::Int(c, desc) => with_missing(
                c.present.get(a.0).then(|| c.values[ra]),
                c.present.get(b.0).then(|| c.values[rb]),
                *desc,
                |x: i64, y: i64| x.cmp(&y),
            ),
            Key::Float(c, desc) => with_missing(
                c.present.get(a.0).then(|| c.values[ra]),
                c.present.get(b.0).then(|| c.values[rb]),
                *desc,
                |x: f64, y: f64| x.total_cmp(&y),
            ),
            Key::Bool(c, desc) => {
                with_missing(Some(c[ra]).filter(|v| *v != 2), Some(c[rb]).filter(|v| *v != 2), *desc, |x: u8, y: u8| {
                    x.cmp(&y)
                })
            }
        }
    }
}

struct Order<'a> {
    keys: Vec<Key<'a>>,
}

impl<'a> Order<'a> {
    /// The order of `sort` over `index`; by score when there is text and
    /// no sort.
    fn of(index: &'a Index, sort: &[SortKey], text: bool) -> Order<'a> {
        if sort.is_empty() && text {
            return Order { keys: vec![Key::Score(true)] };
        }
        let keys = sort
            .iter()
            .filter_map(|s| {
                if s.field == SCORE {
                    return Some(Key::Score(s.descending));
                }
                Some(match index.column(&s.field)?.1 {
                    Column::Keyword(c) => Key::Keyword(c, s.descending),
                    Column::Int(c) => Key::Int(c, s.descending),
                    Column::Float(c) => Key::Float(c, s.descending),
                    Column::Bool(c) => Key::Bool(c, s.descending),
                    _ => return None,
                })
            })
            .collect();
        Order { keys }
    }

    fn cmp(&self, a: (u32, Option<f32>), b: (u32, Option<f32>)) -> Ordering {
        for k in &self.keys {
            let o = k.cmp(a, b);
            if o != Ordering::Equal {
                return o;
            }
        }
        a.0.cmp(&b.0)
    }
}

/// Runs `q` on `index`; `version` is the token its cursors are tied to.
pub(crate) fn run(index: &Index, schema: &Schema, q: &Query, version: u64) -> Result<Found, CollectionError> {
    let filter = q.filter.compile(index, schema);
    let fingerprint = q.fingerprint();
    let after = match &q.cursor {
        Some(c) => {
            let c = Cursor::decode(c)?;
            if c.fingerprint != fingerprint {
                return Err(bad("cursor", "made by another query (filter, q, sort and collapse must stay the same)"));
            }
            if c.version != version || c.row as usize >= index.rows() {
                return Err(CollectionError::CursorExpired);
            }
            Some((c.row, c.score))
        }
        None => None,
    };
    let scores = q.text.as_ref().map(|t| text_scores(index, t));
    let order = Order::of(index, &q.sort, scores.is_some());
    let collapse = q.collapse.as_deref().and_then(|c| match index.column(c) {
        Some((_, Column::Keyword(k))) => Some(k),
        _ => None,
    });
    let score_of = |r: u32| scores.as_ref().and_then(|s| s.get(r));

    // With no filter and no text, counts come from the indexes themselves.
    let everything = matches!(filter, Compiled::All) && scores.is_none();
    // Every match, when the answer needs them all.
    let needs_all = !everything && (q.total || !q.facets.is_empty() || scores.is_some());
    let all: Option<Vec<u32>> = needs_all.then(|| {
        let rows: Box<dyn Iterator<Item = u32>> = match (&scores, filter.candidates()) {
            (Some(s), _) => Box::new(s.rows.iter().copied()),
            (None, Some(c)) => Box::new(c.into_iter()),
            (None, None) => Box::new(0..index.rows() as u32),
        };
        rows.filter(|&r| filter.matches(r)).collect()
    });
    let facets = q
        .facets
        .iter()
        .map(|f| {
            (
                f.clone(),
                facet(index, f, if everything { None } else { Some(all.as_deref().unwrap_or(&[])) }, q.facet_limit),
            )
        })
        .collect();
    let total = match (q.total, everything) {
        (false, _) => None,
        (true, true) => Some(index.rows() as u64),
        (true, false) => all.as_ref().map(|a| a.len() as u64),
    };

    let want = q.limit + 1;
    let mut rows = match walkable(index, &filter, q) {
        Some(walk) if all.is_none() => walk.run(&filter, &order, after, collapse, want, index.rows()),
        // In id order: the first matches after the cursor, without
        // gathering the others.
        _ if order.keys.is_empty() && collapse.is_none() => {
            let start = after.map_or(0, |a| a.0 + 1);
            let it: Box<dyn Iterator<Item = u32>> = match (&all, filter.candidates()) {
                (Some(a), _) => Box::new(a.iter().copied()),
                (None, Some(c)) => Box::new(c.into_iter()),
                (None, None) => Box::new(0..index.rows() as u32),
            };
            it.skip_while(|&r| r < start).filter(|&r| filter.matches(r)).take(want).map(|r| (r, score_of(r))).collect()
        }
        _ => {
            let matches: Vec<u32> = if let Some(a) = all {
                a
            } else {
                let c = filter.candidates();
                let it: Box<dyn Iterator<Item = u32>> = match c {
                    Some(c) => Box::new(c.into_iter()),
                    None => Box::new(0..index.rows() as u32),
                };
                it.filter(|&r| filter.matches(r)).collect()
            };
            let hits: Vec<(u32, Option<f32>)> = matches.into_iter().map(|r| (r, score_of(r))).collect();
            top(hits, &order, after, collapse, want)
        }
    };
    let next = if rows.len() > q.limit {
        rows.truncate(q.limit);
        rows.last().copied()
    } else {
        None
    };
    Ok(Found { rows, total, facets, next })
}

impl Query {
    pub(crate) fn cursor_after(&self, version: u64, last: (u32, Option<f32>)) -> String {
        Cursor { version, fingerprint: self.fingerprint(), row: last.0, score: last.1 }.encode()
    }
}

/// Sorts every match and keeps the page after `after`.
fn top(
    mut hits: Vec<(u32, Option<f32>)>,
    order: &Order<'_>,
    after: Option<(u32, Option<f32>)>,
    collapse: Option<&super::index::KeywordColumn>,
    want: usize,
) -> Vec<(u32, Option<f32>)> {
    if let Some(c) = collapse {
        // The first of each value by the sort; rows without one share a group.
        let mut best: HashMap<u32, (u32, Option<f32>)> = HashMap::new();
        for h in hits {
            let v = c.of(h.0).first().copied().unwrap_or(u32::MAX);
            best.entry(v)
                .and_modify(|b| {
                    if order.cmp(h, *b) == Ordering::Less {
                        *b = h;
                    }
                })
                .or_insert(h);
        }
        hits = best.into_values().collect();
    }
    if let Some(a) = after {
        hits.retain(|h| order.cmp(*h, a) == Ordering::Greater);
    }
    if hits.len() > want {
        hits.select_nth_unstable_by(want - 1, |a, b| order.cmp(*a, *b));
        hits.truncate(want);
    }
    hits.sort_unstable_by(|a, b| order.cmp(*a, *b));
    hits
}

/// The rows of one numeric column in sort order, between two bounds the
/// filter sets: the query stops after the page instead of sorting every
/// match.
struct Walk<'a> {
    sorted: &'a [u32],
    /// The sort values of `sorted`'s rows.
    keys: Keys<'a>,
    descending: bool,
    /// Rows without a value come last; none can match when the filter
    /// bounds the column.
    missing: Option<&'a super::index::Bits>,
    /// The conjunct of the filter that `sorted` already satisfies (its
    /// place in the `and`, or `Some(0)` when it is the whole filter).
    implied: Option<usize>,
}

enum Keys<'a> {
    Int(&'a [i64]),
    Float(&'a [f64]),
}

impl Keys<'_> {
    /// The `i`th value as an integer: equal integers, equal values (equal
    /// bits are what `f64::total_cmp` calls equal).
    fn get(&self, i: usize) -> i64 {
        match self {
            Keys::Int(v) => v[i],
            Keys::Float(v) => v[i].to_bits().cast_signed(),
        }
    }
}

/// `f`'s conjuncts: the filter itself when it is not an `and`.
fn conjuncts<'f, 'a>(f: &'f Compiled<'a>) -> &'f [Compiled<'a>] {
    match f {
        Compiled::And(v) => v,
        f => std::slice::from_ref(f),
    }
}

fn walkable<'a>(index: &'a Index, filter: &Compiled<'a>, q: &Query) -> Option<Walk<'a>> {
    if q.text.is_some() {
        return None;
    }
    let first = q.sort.first()?;
    match index.column(&first.field)?.1 {
        Column::Int(c) => {
            let bounds = conjuncts(filter).iter().enumerate().find_map(|(i, f)| match f {
                Compiled::Int { col, lo, hi } if std::ptr::eq(*col, c) => Some((i, *lo, *hi)),
                _ => None,
            });
            let (a, b) = bounds.map_or((0, c.sorted.len()), |(_, lo, hi)| c.between(lo, hi));
            Some(Walk {
                sorted: &c.sorted[a..b],
                keys: Keys::Int(&c.sorted_values[a..b]),
                descending: first.descending,
                missing: bounds.is_none().then_some(&c.present),
                implied: bounds.map(|(i, _, _)| i),
            })
        }
        Column::Float(c) => Some(Walk {
            sorted: &c.sorted,
            keys: Keys::Float(&c.sorted_values),
            descending: first.descending,
            missing: Some(&c.present),
            implied: None,
        }),
        _ => None,
    }
}

impl Walk<'_> {
    /// Whether row `r` of the walk passes the filter.
    fn passes(&self, filter: &Compiled<'_>, r: u32) -> bool {
        match self.implied {
            Some(k) => conjuncts(filter).iter().enumerate().all(|(i, f)| i == k || f.matches(r)),
            None => filter.matches(r),
        }
    }

    fn run(
        &self,
        filter: &Compiled<'_>,
        order: &Order<'_>,
        after: Option<(u32, Option<f32>)>,
        collapse: Option<&super::index::KeywordColumn>,
        want: usize,
        rows: usize,
    ) -> Vec<(u32, Option<f32>)> {
        let mut out = Vec::with_capacity(want.min(1024));
        let mut seen = std::collections::HashSet::new();
        let mut run: Vec<(u32, Option<f32>)> = Vec::new();
        // Emits one run of rows equal on the first key, in full order.
        let mut emit = |run: &mut Vec<(u32, Option<f32>)>, out: &mut Vec<(u32, Option<f32>)>| -> bool {
            run.sort_unstable_by(|a, b| order.cmp(*a, *b));
            for h in run.drain(..) {
                if let Some(c) = collapse {
                    let v = c.of(h.0).first().copied().unwrap_or(u32::MAX);
                    if !seen.insert(v) {
                        continue;
                    }
                }
                if after.is_some_and(|a| order.cmp(h, a) != Ordering::Greater) {
                    continue;
                }
                out.push(h);
                if out.len() >= want {
                    return true;
                }
            }
            false
        };
        let n = self.sorted.len();
        let place = |k: usize| if self.descending { n - 1 - k } else { k };
        let at = |k: usize| self.sorted[place(k)];
        // A page after a cursor starts at the cursor's value: the walk
        // order is the first key's order, so the rows before it are a
        // prefix (unless collapsing, which must see them for their values).
        let start = match (after, collapse) {
            (Some(a), None) => {
                let (mut lo, mut hi) = (0, n);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if order.keys[0].cmp((at(mid), None), a) == Ordering::Less {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
            _ => 0,
        };
        // Only matches have their value read: runs of equal values are
        // told apart among them, which is all the order needs.
        let mut value = None;
        for k in start..n {
            let r = at(k);
            if !self.passes(filter, r) {
                continue;
            }
            let v = self.keys.get(place(k));
            if value != Some(v) {
                if emit(&mut run, &mut out) {
                    return out;
                }
                value = Some(v);
            }
            run.push((r, None));
        }
        if emit(&mut run, &mut out) {
            return out;
        }
        if let Some(present) = self.missing {
            run.extend((0..rows as u32).filter(|&r| !present.get(r) && filter.matches(r)).map(|r| (r, None)));
            emit(&mut run, &mut out);
        }
        out
    }
}

/// Counts of a keyword field's values over `rows`, or over every row.
fn facet(index: &Index, field: &str, rows: Option<&[u32]>, limit: usize) -> Vec<(String, u64)> {
    let Some((_, Column::Keyword(c))) = index.column(field) else { return Vec::new() };
    let mut counts = vec![0u64; c.dict.len()];
    match rows {
        None => {
            for (t, p) in c.postings.iter().enumerate() {
                counts[t] = p.len() as u64;
            }
        }
        Some(rows) => {
            for &r in rows {
                for &t in c.of(r) {
                    counts[t as usize] += 1;
                }
            }
        }
    }
    let mut out: Vec<(u32, u64)> =
        counts.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(t, n)| (t as u32, n)).collect();
    out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(limit);
    out.into_iter().map(|(t, n)| (c.dict[t as usize].to_string(), n)).collect()
}

/// BM25 over the text fields; a row must match every word of the query
/// (in any text field). The last word also matches as a prefix; words of
/// 5 letters or more match with one typo, of 9 or more with two, for a
/// lower score.
/// A term a query word stands for: its column, its postings, its weight.
type Expansion<'a> = (&'a TextColumn, &'a [(u32, u32)], f32);

fn text_scores(index: &Index, text: &str) -> Scores {
    let cols: Vec<&TextColumn> = index
        .columns
        .iter()
        .filter_map(|c| match c {
            Column::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let n = index.rows() as f32;
    // Every text field's analysis of the query: words by position, each
    // with the postings it stands for.
    let per_field: Vec<Vec<String>> = cols.iter().map(|c| super::index::words(c.analyzer, text)).collect();
    let positions = per_field.iter().map(Vec::len).max().unwrap_or(0);
    let mut terms: Vec<Vec<Expansion<'_>>> = (0..positions)
        .map(|p| {
            let mut v = Vec::new();
            for (c, words) in cols.iter().zip(&per_field) {
                let Some(w) = words.get(p) else { continue };
                for (term, weight) in expand(c, w, p + 1 == words.len()) {
                    if let Some(post) = c.postings.get(term) {
                        v.push((*c, post.as_slice(), weight));
                    }
                }
            }
            v
        })
        .collect();
    // The rarest word first: it bounds the candidates the others update.
    terms.sort_by_key(|t| t.iter().map(|(_, p, _)| p.len()).sum::<usize>());
    let mut dense = vec![0f32; index.rows()];
    let mut rows: Vec<u32> = Vec::new();
    let mut cur = vec![0f32; if positions > 1 { index.rows() } else { 0 }];
    for (i, position) in terms.iter().enumerate() {
        let target = if i == 0 { &mut dense } else { &mut cur };
        let mut touched = Vec::new();
        for (c, post, weight) in position {
            #[allow(clippy::cast_precision_loss)]
            let df = post.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(r, tf) in *post {
                #[allow(clippy::cast_precision_loss)]
                let (tf, len) = (tf as f32, c.lens[r as usize] as f32);
                let s = weight * idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / c.average_len));
                let e = &mut target[r as usize];
                if *e == 0.0 {
                    touched.push(r);
                }
                if s > *e {
                    *e = s;
                }
            }
        }
        if i == 0 {
            touched.sort_unstable();
            rows = touched;
        } else {
            rows.retain(|&r| {
                let b = cur[r as usize];
                dense[r as usize] += b;
                if b == 0.0 {
                    dense[r as usize] = 0.0;
                }
                b > 0.0
            });
            for r in touched {
                cur[r as usize] = 0.0;
            }
        }
    }
    Scores { rows, dense }
}

/// Text scores: the rows that match every word, ascending, and each row's
/// score (0 for the others).
pub(crate) struct Scores {
    rows: Vec<u32>,
    dense: Vec<f32>,
}

impl Scores {
    fn get(&self, r: u32) -> Option<f32> {
        self.dense.get(r as usize).copied().filter(|s| *s > 0.0)
    }
}

/// Terms of a column a query word stands for, with a weight.
fn expand<'a>(c: &'a TextColumn, w: &str, last: bool) -> Vec<(&'a str, f32)> {
    let mut out: Vec<(&str, f32)> = Vec::new();
    if let Some((k, _)) = c.postings.get_key_value(w) {
        out.push((k, 1.0));
    }
    if last && !w.is_empty() {
        let start = c.words.partition_point(|t| **t < *w);
        for t in c.words[start..].iter().take_while(|t| t.starts_with(w)).take(64) {
            if **t != *w {
                out.push((t, 0.8));
            }
        }
    }
    let len = w.chars().count();
    let typos = if len >= 9 { 2 } else { u8::from(len >= 5) };
    if typos > 0 {
        let dfa = levenshtein_automata::LevenshteinAutomatonBuilder::new(typos, true).build_dfa(w);
        for t in &c.words {
            if t.len().abs_diff(w.len()) > usize::from(typos) || **t == *w {
                continue;
            }
            if let levenshtein_automata::Distance::Exact(d) = dfa.eval(t.as_bytes()) {
                out.push((t, if d == 1 { 0.6 } else { 0.4 }));
            }
        }
    }
    out
}

/// Integer bounds of a range filter, for callers outside this module.
#[allow(dead_code)]
pub(crate) fn bounds(f: &Filter, kind: FieldType) -> Option<(i64, i64)> {
    match f {
        Filter::Range { lower, upper, .. } => int_bounds(lower, upper, kind),
        _ => None,
    }
}
