//! The address profile: what the geocoder makes of generic records. Which
//! fields are searched and filtered, how a result is labelled, and the
//! properties of an Addok-compatible feature.

use crate::docs::{Docs, RecordRef, ValueRef};
use crate::record::{Point, Record};
use crate::text::analysis::{compare_form, digits_key, housenumber_key, name_compare_form, name_tokens, tokens};
use crate::text::TextDoc;

/// Fields whose words are searched.
const TEXT_FIELDS: [&str; 6] = ["name", "postcode", "city", "oldcity", "district", "context"];
/// Fields a query can filter on (`type` is the record's kind).
pub const FILTERS: [&str; 3] = ["type", "postcode", "citycode"];
/// Kinds found through their parent rather than by their own words.
pub const CHILD_KIND: &str = "housenumber";

/// What the full-text layer indexes for a record, if anything.
pub fn text_doc(key: u64, r: &Record) -> Option<TextDoc<'static>> {
    if r.kind == CHILD_KIND {
        return None;
    }
    let mut words = Vec::new();
    let street = r.kind != "municipality";
    for f in TEXT_FIELDS {
        if let Some(v) = r.get(f) {
            for s in v.strs() {
                words.extend(if street && f == "name" { name_tokens(s) } else { tokens(s) });
            }
        }
    }
    let mut filters = vec![("type", vec![filter_value(&r.kind)])];
    for f in ["postcode", "citycode"] {
        if let Some(v) = r.get(f) {
            filters.push((f, v.strs().into_iter().map(filter_value).collect()));
        }
    }
    Some(TextDoc { key, words, filters, point: r.point })
}

/// A filter value as it is indexed and compared: filters ignore case and
/// surrounding spaces ("2B033" and "2b033", "Street" and "street").
pub fn filter_value(v: &str) -> String {
    v.trim().to_lowercase()
}

fn first<'a>(r: &RecordRef<'a>, name: &str) -> &'a str {
    r.get(name).and_then(|v| v.first_str()).unwrap_or("")
}

pub fn importance(r: &RecordRef) -> f64 {
    r.get("importance").and_then(|v| v.as_f64()).unwrap_or(0.0)
}

/// A search or reverse candidate: a record, and the child (housenumber) it
/// resolved to, if any.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub slot: u32,
    pub child: Option<u32>,
}

impl Target {
    /// A record on its own; a child is shown through its parent.
    pub fn of(docs: &Docs, slot: u32) -> Target {
        match docs.parent(slot) {
            Some(p) => Target { slot: p, child: Some(slot) },
            None => Target { slot, child: None },
        }
    }

    pub fn point(&self, docs: &Docs) -> Option<Point> {
        docs.record(self.child.unwrap_or(self.slot)).point()
    }

    /// The result's own record (the child when there is one).
    pub fn leaf<'a>(&self, docs: &'a Docs) -> RecordRef<'a> {
        docs.record(self.child.unwrap_or(self.slot))
    }

    pub fn kind<'a>(&self, docs: &'a Docs) -> &'a str {
        self.leaf(docs).kind()
    }
}

/// The tag of a record in its parent's list of children
/// ([`crate::docs::Docs::child_tags`]): a hash of its housenumber key.
/// Finding "12" among a street's children then reads one small array, not
/// each child's record (a cache miss apiece in a file of gigabytes); the
/// record is read only for the child whose hash matches, to confirm.
pub(crate) fn number_tag(record: &Record) -> u32 {
    let n = record.get("housenumber").and_then(|v| v.first_str()).unwrap_or_default();
    match digits_key(n) {
        Some(k) => number_hash(k),
        None => number_hash(&housenumber_key(n)),
    }
}

fn number_hash(key: &str) -> u32 {
    crate::docs::id_hash(key) as u32
}

/// Whether a slot may have a child numbered `key`, by the tags alone:
/// cheap enough to ask of every document a candidate search walks;
/// [`find_housenumber`] confirms.
pub fn may_have<'a>(docs: &'a Docs, key: &str) -> impl Fn(u32) -> bool + 'a {
    let h = number_hash(key);
    move |slot| docs.has_child_tagged(slot, h)
}

/// The municipalities that have each word in their names, made when a
/// generation opens. A city's name is a common word of the index when the
/// city is big ("paris" is in every Paris street): this finds such a city
/// without a query, and tells its name from "rue" or "la", which name no
/// town (or too many: "saint", "sur").
pub struct TownWords(std::collections::BTreeMap<String, Vec<u32>>);

/// At most this many municipalities for a word to name a place.
const FEW_TOWNS: usize = 20;

impl TownWords {
    pub fn build(docs: &Docs, municipalities: &[u32]) -> TownWords {
        let mut towns: std::collections::BTreeMap<String, Vec<u32>> = std::collections::BTreeMap::new();
        let mut words = Vec::new();
        for &slot in municipalities {
            words.clear();
            for name in docs.record(slot).get("name").map(|v| v.strs()).unwrap_or_default() {
                words.extend(tokens(name));
            }
            words.sort_unstable();
            words.dedup();
            for w in words.drain(..) {
                towns.entry(w).or_default().push(slot);
            }
        }
        TownWords(towns)
    }

    /// The words and their municipalities, as [`TownWords::from_bytes`] reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(&self.0).map(|b| b.to_vec()).unwrap_or_default()
    }

    /// None if `bytes` are not what [`TownWords::to_bytes`] wrote for a
    /// documents file of `docs` records.
    pub fn from_bytes(bytes: &[u8], docs: usize) -> Option<TownWords> {
        // Copied: an archive must be aligned, a slice of a file need not be.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let towns =
            rkyv::from_bytes::<std::collections::BTreeMap<String, Vec<u32>>, rkyv::rancor::Error>(&aligned).ok()?;
        if towns.values().any(|slots| slots.iter().any(|s| *s as usize >= docs)) {
            return None;
        }
        Some(TownWords(towns))
    }

    /// The municipalities with `word` in their names, if there are a few.
    pub fn named(&self, word: &str) -> &[u32] {
        match self.0.get(word) {
            Some(slots) if slots.len() <= FEW_TOWNS => slots,
            _ => &[],
        }
    }

    /// The municipalities with a word starting with `prefix` in their
    /// names, if there are a few.
    pub fn starting(&self, prefix: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, slots) in self.0.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)) {
            if !w.starts_with(prefix) {
                break;
            }
            out.extend_from_slice(slots);
            if out.len() > FEW_TOWNS {
                return Vec::new();
            }
        }
        out
    }
}

/// Whether the record at `slot` is a housenumber numbered `key` ("12b").
pub fn is_number(docs: &Docs, slot: u32, key: &str) -> bool {
    let r = docs.record(slot);
    r.kind() == CHILD_KIND && housenumber_key(first(&r, "housenumber")) == key
}

/// The child of `slot` whose housenumber is `key` ("12b").
pub fn find_housenumber(docs: &Docs, slot: u32, key: &str) -> Option<u32> {
    let h = number_hash(key);
    docs.children_tagged(slot, h).find(|c| is_number(docs, *c, key))
}

/// The label shown to users: "12 Rue de la Paix 75002 Paris".
/// `r` is the record, `child` the housenumber's when there is one.
fn label(r: &RecordRef, child: Option<&RecordRef>) -> String {
    let name = first(r, "name");
    if r.kind() == "municipality" && child.is_none() {
        return name.to_owned();
    }
    let mut s = String::new();
    if let Some(c) = child {
        let number = first(c, "housenumber").trim();
        if !number.is_empty() {
            s.push_str(number);
            s.push(' ');
        }
    }
    s.push_str(name);
    for part in [first(r, "postcode"), first(r, "city")] {
        if !part.is_empty() {
            s.push(' ');
            s.push_str(part);
        }
    }
    s
}

/// The forms of a result the query is compared with, in comparable form:
/// name, name + city, name + postcode, name + postcode + city (for every
/// name and city variant), each with the housenumber first when resolved.
/// `r` is the record of `t.slot`.
pub fn compare_labels<'d>(docs: &'d Docs, t: Target, r: &RecordRef<'d>, forms: &mut Forms<'d>, out: &mut Labels) {
    out.clear();
    let strs = |name: &str| r.get(name).map(|v| v.strs()).unwrap_or_default();
    let mut postcodes = std::mem::take(&mut out.postcodes);
    let mut cities = std::mem::take(&mut out.cities);
    postcodes.extend(strs("postcode").into_iter().map(|p| forms.index(p)));
    cities.extend(strs("city").into_iter().map(|c| forms.index(c)));
    let number = t.child.map(|c| housenumber_key(first(&docs.record(c), "housenumber"))).unwrap_or_default();
    let pc = postcodes.first().map_or("", |i| forms.get(*i));
    let municipality = r.kind() == "municipality";
    for n in strs("name") {
        let n = if municipality { compare_form(n) } else { name_compare_form(n) };
        if municipality {
            out.push(&[&n]);
            for p in &postcodes {
                let p = forms.get(*p);
                out.push(&[&n, p]);
                out.push(&[p, &n]);
            }
            continue;
        }
        out.push(&[&number, &n]);
        out.push(&[&number, &n, pc]);
        for c in &cities {
            let c = forms.get(*c);
            out.push(&[&number, &n, c]);
            out.push(&[&number, &n, pc, c]);
        }
    }
    out.postcodes = postcodes;
    out.cities = cities;
}

/// The labels of one candidate, in one buffer kept across the candidates
/// of a query: building them used to take a score of small allocations a
/// candidate.
#[derive(Default)]
pub struct Labels {
    text: String,
    ends: Vec<usize>,
    postcodes: Vec<usize>,
    cities: Vec<usize>,
}

impl Labels {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.postcodes.clear();
        self.cities.clear();
    }

    /// Adds the non-empty `parts`, joined by spaces, as one label.
    fn push(&mut self, parts: &[&str]) {
        let start = self.text.len();
        for p in parts.iter().filter(|p| !p.is_empty()) {
            if self.text.len() > start {
                self.text.push(' ');
            }
            self.text.push_str(p);
        }
        self.ends.push(self.text.len());
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, e)| &self.text[s..*e])
    }
}

/// Comparable forms of the postcodes and cities of a batch of candidates,
/// which share a few values between many records: each is folded once per
/// batch.
#[derive(Default)]
pub struct Forms<'d>(Vec<(&'d str, String)>);

impl<'d> Forms<'d> {
    fn index(&mut self, s: &'d str) -> usize {
        if let Some(i) = self.0.iter().position(|(k, _)| *k == s) {
            i
        } else {
            self.0.push((s, compare_form(s)));
            self.0.len() - 1
        }
    }

    fn get(&self, i: usize) -> &str {
        &self.0[i].1
    }
}

/// A property value of a feature.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// A result, ready to encode as a `GeoJSON` feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Longitude and latitude of the result.
    pub point: Point,
    pub score: f64,
    /// Properties in Addok's order.
    pub properties: Vec<(String, Prop)>,
}

impl Feature {
    pub fn prop(&self, name: &str) -> Option<&Prop> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn prop_str(&self, name: &str) -> Option<&str> {
        match self.prop(name) {
            Some(Prop::Str(s)) => Some(s),
            _ => None,
        }
    }
}

fn prop_of(v: &ValueRef) -> Option<Prop> {
    Some(match v {
        ValueRef::Str(s) => Prop::Str((*s).to_owned()),
        ValueRef::List(l) => Prop::Str(l.iter().next()?.to_owned()),
        ValueRef::Int(i) => Prop::Int(*i),
        ValueRef::Num(n) => Prop::Num(*n),
        ValueRef::Bool(b) => Prop::Bool(*b),
    })
}

/// Builds the feature of a target: label, score, housenumber, id, type, then
/// the record's fields in source order (first value of lists), then
/// `<type>: name`, then the distance when there is one.
pub fn feature(docs: &Docs, t: Target, score: f64, distance_m: Option<f64>) -> Feature {
    let r = docs.record(t.slot);
    let child = t.child.map(|c| docs.record(c));
    let point = child.as_ref().unwrap_or(&r).point().unwrap_or(Point { lat: 0.0, lon: 0.0 });
    let mut props: Vec<(String, Prop)> = Vec::with_capacity(16);
    props.push(("label".into(), Prop::Str(label(&r, child.as_ref()))));
    props.push(("score".into(), Prop::Num(score)));
    let number = child.as_ref().map(|c| first(c, "housenumber").to_owned());
    if let Some(n) = &number {
        props.push(("housenumber".into(), Prop::Str(n.clone())));
    }
    let leaf = child.as_ref().unwrap_or(&r);
    props.push(("id".into(), Prop::Str(leaf.id())));
    props.push(("type".into(), Prop::Str(leaf.kind().to_owned())));
    for (name, value) in r.fields().filter(|(name, _)| *name != super::import::DERIVED_FIELD) {
        let value = match (name, &child) {
            ("name", Some(_)) => Some(Prop::Str(format!("{} {}", number.as_deref().unwrap_or(""), first(&r, "name")))),
            ("x" | "y", Some(c)) => c.get(name).as_ref().and_then(prop_of).or_else(|| prop_of(&value)),
            _ => prop_of(&value),
        };
        if let Some(v) = value {
            props.push((name.to_owned(), v));
        }
    }
    // Fields only the child has (other than its number and position).
    if let Some(c) = &child {
        for (name, value) in c.fields() {
            if !matches!(name, "housenumber" | "x" | "y") && r.get(name).is_none() {
                if let Some(v) = prop_of(&value) {
                    props.push((name.to_owned(), v));
                }
            }
        }
    }
    let kind_key = if r.kind() == "housenumber" { "street" } else { r.kind() };
    props.push((kind_key.to_owned(), Prop::Str(first(&r, "name").to_owned())));
    if let Some(d) = distance_m {
        props.push(("distance".into(), Prop::Int(d.round() as i64)));
    }
    Feature { point, score, properties: props }
}

/// Whether a target passes the filters (values as [`filter_value`] makes
/// them): each named field must hold one of the values. `type` is the
/// result's own kind; other fields are those of the record the full-text
/// index holds, which for a housenumber is its street: a housenumber's own
/// `postcode`, should it have one, is not looked at, by search (whose index
/// filters streets) as by reverse.
pub fn passes(docs: &Docs, t: Target, filters: &[(String, Vec<String>)]) -> bool {
    let r = docs.record(t.slot);
    let leaf = t.leaf(docs);
    filters.iter().all(|(name, values)| {
        let same = |held: &str, v: &str| {
            if v.is_ascii() {
                held.trim().eq_ignore_ascii_case(v)
            } else {
                filter_value(held) == v
            }
        };
        if name == "type" {
            return values.iter().any(|v| same(leaf.kind(), v));
        }
        let held = r.get(name).map(|v| v.strs()).unwrap_or_default();
        values.iter().any(|v| held.iter().any(|h| same(h, v)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::DocsBuilder;
    use crate::record::{Field, Value};

    fn rec(id: &str, kind: &str, parent: Option<&str>, number: &str) -> Record {
        let mut fields = vec![Field { name: "name".into(), value: Value::Str(format!("name of {id}")) }];
        if !number.is_empty() {
            fields.push(Field { name: "housenumber".into(), value: Value::Str(number.into()) });
        }
        Record { id: id.into(), kind: kind.into(), parent: parent.map(Into::into), point: None, fields }
    }

    #[test]
    fn housenumbers_are_found_in_every_spelling_and_only_among_the_street_s_children() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, number_tag).unwrap();
        let records = [
            rec("a", "street", None, ""),
            rec("a_1", "housenumber", Some("a"), "1"),
            rec("a_12", "housenumber", Some("a"), "12"),
            rec("a_12b", "housenumber", Some("a"), "12 bis"),
            rec("a_7", "housenumber", Some("a"), "007"),
            rec("a_0", "housenumber", Some("a"), "0"),
            // A child of another kind with a number is no housenumber.
            rec("a_p", "poi", Some("a"), "30"),
            rec("b", "street", None, ""),
            rec("b_5", "housenumber", Some("b"), "5"),
            rec("b_12", "housenumber", Some("b"), "12"),
        ];
        for (key, r) in records.iter().enumerate() {
            b.add(key as u64, r).unwrap();
        }
        b.finish().unwrap();
        let docs = Docs::open(&path).unwrap();
        let find = |street: &str, q: &str| {
            let slot = docs.slot_of_id(street).unwrap();
            find_housenumber(&docs, slot, &housenumber_key(q)).map(|c| docs.record(c).id())
        };
        assert_eq!(find("a", "12").as_deref(), Some("a_12"));
        assert_eq!(find("a", "12 bis").as_deref(), Some("a_12b"));
        assert_eq!(find("a", "12B").as_deref(), Some("a_12b"));
        assert_eq!(find("a", "7").as_deref(), Some("a_7"));
        assert_eq!(find("a", "0").as_deref(), Some("a_0"));
        assert_eq!(find("a", "30"), None);
        assert_eq!(find("a", "5"), None);
        assert_eq!(find("b", "5").as_deref(), Some("b_5"));
        assert_eq!(find("b", "12").as_deref(), Some("b_12"));
        assert_eq!(find("b", "1"), None);
    }

    #[test]
    fn labels_join_number_name_postcode_and_each_city() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, number_tag).unwrap();
        let mut street = rec("s", "street", None, "");
        street.fields = vec![
            Field { name: "name".into(), value: Value::Str("Rue de la Paix".into()) },
            Field { name: "postcode".into(), value: Value::Str("75002".into()) },
            Field { name: "city".into(), value: Value::List(vec!["Paris".into(), "Paris 2e".into()]) },
        ];
        let mut town = rec("m", "municipality", None, "");
        town.fields = vec![
            Field { name: "name".into(), value: Value::Str("Cholet".into()) },
            Field { name: "postcode".into(), value: Value::List(vec!["49300".into(), "49280".into()]) },
        ];
        b.add(1, &street).unwrap();
        b.add(2, &rec("s_12", "housenumber", Some("s"), "12 bis")).unwrap();
        b.add(3, &town).unwrap();
        b.finish().unwrap();
        let docs = Docs::open(&path).unwrap();
        let (mut forms, mut labels) = (Forms::default(), Labels::default());
        let mut of = |t: Target| {
            compare_labels(&docs, t, &docs.record(t.slot), &mut forms, &mut labels);
            labels.iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let paix = "rue de la paix";
        assert_eq!(
            of(Target { slot: 0, child: Some(1) }),
            [
                format!("12b {paix}"),
                format!("12b {paix} 75002"),
                format!("12b {paix} paris"),
                format!("12b {paix} 75002 paris"),
                format!("12b {paix} paris 2e"),
                format!("12b {paix} 75002 paris 2e"),
            ]
        );
        // The buffer is reused: the next candidate's labels are its own.
        assert_eq!(
            of(Target { slot: 2, child: None }),
            ["cholet", "cholet 49300", "49300 cholet", "cholet 49280", "49280 cholet"]
        );
        assert_eq!(of(Target { slot: 0, child: None })[0], paix);
    }
}
