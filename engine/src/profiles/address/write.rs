//! The writes of one commit to the address profile: records with their
//! parents and children (a street and its housenumbers), the children a
//! parent's new list or deletion leaves stale, and the streets and
//! municipalities that BAN CSV rows only name, derived when the commit
//! settles. [`crate::Database::write`] hands a [`Batch`] to its caller and
//! settles it before the generation's files are built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::live::View;
use crate::profiles::address::import::{self, Child, Entry, Format, OnError, Skipped};
use crate::profiles::{Active, Profile};
use crate::record::{Point, Record};
use crate::store::StoreTxn;
use crate::text::TextWriter;

/// The writes of one commit.
pub struct Batch {
    txn: StoreTxn,
    /// The next generation's text index, for a full commit; none for a live
    /// one, whose layer is built from the store once the batch settles.
    text: Option<TextWriter>,
    /// What the commit starts from: who the children of a replaced or
    /// deleted parent were, and which streets a commune had.
    prev: Option<Arc<View>>,
    /// Parents deleted, or given a full list of children: their children
    /// with keys below the mark (put before that statement) are removed
    /// when the batch commits.
    stale: HashMap<String, u64>,
    /// Whether this batch put children other than through their family, or
    /// a family twice: then its own records are looked through for stale
    /// children, not only the last commit's.
    stale_in_batch: bool,
    /// Streets and municipalities that BAN CSV rows name, to derive.
    derived: import::Derived,
    /// Records whose children changed otherwise (a child moved away or
    /// deleted; for a deleted street, its commune): derived again if they
    /// were derived.
    lost: HashSet<String>,
    written: u64,
    deleted: u64,
}

/// A sum of points, for a centre.
#[derive(Default, Clone, Copy)]
struct Centre {
    lat: f64,
    lon: f64,
    n: u64,
}

impl Centre {
    fn add(&mut self, p: Point) {
        self.lat += p.lat;
        self.lon += p.lon;
        self.n += 1;
    }

    fn merge(&mut self, o: Centre) {
        self.lat += o.lat;
        self.lon += o.lon;
        self.n += o.n;
    }

    fn point(&self) -> Option<Point> {
        (self.n > 0).then(|| Point { lat: self.lat / self.n as f64, lon: self.lon / self.n as f64 })
    }
}

/// Whether an id may go from the record `old` to `new`: a record and a
/// child of another are different things, and an id the data gave to one
/// and an importer made up for the other (`s2_1`) must not replace it.
fn role_collision(old: &Record, new: &Record, what: impl FnOnce() -> String) -> Result<()> {
    if old.parent.is_some() == new.parent.is_some() {
        return Ok(());
    }
    Err(Error::IdCollision { id: new.id.clone(), what: what(), existing: old.kind.clone() })
}

/// How a child is named in an error.
fn child_name(c: &Child, parent: &Record) -> String {
    let number = c.record.get("housenumber").and_then(|v| v.first_str()).unwrap_or("");
    format!("{} {number:?} of {}", c.record.kind, parent.id)
}

/// The text index's part of a put: the replaced record's document out,
/// the new one's in (`doc`, with its key), and the replaced record's
/// parent, if it had another, noted as having lost a child.
fn index_put(
    text: &mut Option<TextWriter>,
    lost: &mut HashSet<String>,
    key: u64,
    old: Option<&(u64, Record)>,
    parent: Option<&String>,
    doc: Option<crate::text::TextDoc<'static>>,
) -> Result<()> {
    if let Some((old_key, old)) = old {
        if let Some(text) = text {
            text.delete(*old_key);
        }
        if let Some(p) = old.parent.as_ref().filter(|p| Some(*p) != parent) {
            lost.insert(p.clone());
        }
    }
    if let (Some(mut d), Some(text)) = (doc, text) {
        d.key = key;
        text.add(d)?;
    }
    Ok(())
}

impl Batch {
    /// A batch writing to `txn` and `text`, over the generation `prev`
    /// (none before the first commit).
    pub(crate) fn new(txn: StoreTxn, text: Option<TextWriter>, prev: Option<Arc<View>>) -> Batch {
        Batch {
            txn,
            text,
            prev,
            stale: HashMap::new(),
            stale_in_batch: false,
            derived: import::Derived::default(),
            lost: HashSet::new(),
            written: 0,
            deleted: 0,
        }
    }

    /// Adds a record, replacing any record with the same id.
    pub fn put(&mut self, record: Record) -> Result<()> {
        self.put_keyed(record).map(|_| ())
    }

    /// [`Batch::put`], giving the new key and the record replaced.
    fn put_keyed(&mut self, record: Record) -> Result<(u64, Option<(u64, Record)>)> {
        // The text is taken before the store owns the record, so the record
        // is never copied; the key is known only once it is stored.
        let doc = Active::text_doc(0, &record);
        let parent = record.parent.clone();
        let (key, old) = self.txn.put(record)?;
        self.written += 1;
        index_put(&mut self.text, &mut self.lost, key, old.as_ref(), parent.as_ref(), doc)?;
        Ok((key, old))
    }

    /// Adds a record from an import: it may not replace a record of the
    /// other role (a child for a record of its own, or the reverse).
    fn put_entry(&mut self, record: Record) -> Result<()> {
        if let Some(old) = self.txn.get(&record.id)? {
            role_collision(&old, &record, || format!("a {}", record.kind))?;
        }
        if record.parent.is_some() {
            self.stale_in_batch = true;
        }
        self.put(record)
    }

    /// Adds a record and the complete list of its children: children it
    /// had before that the list lacks are removed when the batch commits.
    /// A child whose id the importer made up may only replace the same
    /// parent's child; a child with an id of the data may not replace a
    /// record that is no child; two children may not share an id. Otherwise
    /// nothing is written and the error is [`Error::IdCollision`].
    pub fn put_family(&mut self, parent: Record, children: Vec<Child>) -> Result<()> {
        // Looked up together: in an import most ids are new.
        let mut keys = self.txn.keys_of(children.iter().map(|c| c.record.id.as_str()).chain([parent.id.as_str()]))?;
        let parent_key = keys.pop().flatten();
        let mut ids = HashSet::with_capacity(children.len());
        for (c, key) in children.iter().zip(keys) {
            if !ids.insert(c.record.id.as_str()) || c.record.id == parent.id {
                return Err(Error::IdCollision {
                    id: c.record.id.clone(),
                    what: child_name(c, &parent),
                    existing: "housenumber".into(),
                });
            }
            let Some(old) = key.map(|k| self.txn.get_key(k)).transpose()?.flatten() else { continue };
            if c.generated_id && (old.kind != c.record.kind || old.parent != c.record.parent) {
                return Err(Error::IdCollision {
                    id: c.record.id.clone(),
                    what: child_name(c, &parent),
                    existing: old.kind,
                });
            }
            role_collision(&old, &c.record, || child_name(c, &parent))?;
        }
        if let Some(old) = parent_key.map(|k| self.txn.get_key(k)).transpose()?.flatten() {
            role_collision(&old, &parent, || format!("a {}", parent.kind))?;
        }
        let id = parent.id.clone();
        let (key, old) = self.put_keyed(parent)?;
        // Its earlier copy in this batch had children of its own.
        if old.is_some_and(|(k, _)| self.txn.is_new(k)) {
            self.stale_in_batch = true;
        }
        self.stale.insert(id, key);
        let mut docs = Vec::with_capacity(children.len());
        for c in &children {
            docs.push((Active::text_doc(0, &c.record), c.record.parent.clone()));
        }
        let mut docs = docs.into_iter();
        let (text, lost, written) = (&mut self.text, &mut self.lost, &mut self.written);
        self.txn.put_each(children.into_iter().map(|c| c.record), |key, old| {
            let (doc, parent) = docs.next().unwrap_or_default();
            *written += 1;
            index_put(text, lost, key, old.as_ref(), parent.as_ref(), doc)
        })
    }

    /// Removes the record with this id, and its children; false if there
    /// was none.
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        let mark = self.txn.next_key();
        match self.txn.delete(id)? {
            Some((key, old)) => {
                if let Some(text) = &mut self.text {
                    text.delete(key);
                }
                self.stale.insert(id.to_owned(), mark);
                self.stale_in_batch = true;
                match &old.parent {
                    Some(p) => self.lost.insert(p.clone()),
                    // A street's commune, should it be derived.
                    None => match old.get("citycode").and_then(|v| v.first_str()) {
                        Some(code) => self.lost.insert(code.to_owned()),
                        None => false,
                    },
                };
                self.deleted += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads a whole stream in an import format into this batch (see
    /// [`crate::import`] for what each format means for the records already
    /// there).
    pub fn import(
        &mut self,
        input: impl std::io::BufRead + Send,
        format: Format,
        on_error: OnError,
        skipped: &mut Skipped,
    ) -> Result<()> {
        let derived = import::read(input, format, on_error, skipped, &mut |entry| match entry {
            Entry::Record(r) => self.put_entry(r),
            Entry::Family { parent, children } => self.put_family(parent, children),
        })?;
        self.derived.merge(derived);
        Ok(())
    }

    /// How many ids the batch has touched (see [`Batch::families_since`]).
    pub(crate) fn touched_len(&self) -> usize {
        self.txn.touched().len()
    }

    /// The families (by their head's id) that the ids touched since the
    /// `from`th changed: each id's family in the view before the batch,
    /// and the one it has now (a record without a parent is its own).
    pub(crate) fn families_since(&mut self, from: usize) -> Result<HashSet<String>> {
        let ids = self.txn.touched()[from..].to_vec();
        let mut out = HashSet::new();
        for id in ids {
            if let Some(view) = &self.prev {
                if let Some((p, s)) = view.locate(&id) {
                    let docs = &view.parts[p].gen.docs;
                    out.insert(docs.parent(s).map_or_else(|| id.clone(), |ps| docs.record(ps).id()));
                }
            }
            if let Some(r) = self.txn.get(&id)? {
                out.insert(r.parent.unwrap_or_else(|| id.clone()));
            }
            out.insert(id);
        }
        Ok(out)
    }

    /// Records written and removed so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.written, self.deleted)
    }

    /// Ends one write of a group commit ([`crate::Database::write_grouped`]):
    /// removes now the children its parents' lists left stale, so that
    /// they count as its removals. Settling would remove the same ones.
    pub(crate) fn end_write(&mut self) -> Result<()> {
        self.remove_stale_children()?;
        self.stale.clear();
        Ok(())
    }

    /// What a commit does after the caller's writes; gives back the
    /// transaction, the text writer, and the counts of records written and
    /// deleted.
    pub(crate) fn settle(mut self) -> Result<(StoreTxn, Option<TextWriter>, u64, u64)> {
        self.remove_stale_children()?;
        self.derive_parents()?;
        // Both read the last generation's records: one of them damaged
        // would be written into the store as if it were missing.
        if let Some(prev) = &self.prev {
            prev.check()?;
        }
        Ok((self.txn, self.text, self.written, self.deleted))
    }

    /// Removes the children of the parents in `stale` that were put before
    /// the parent's last statement: the last commit's (as its documents
    /// file lists them) and this batch's.
    fn remove_stale_children(&mut self) -> Result<()> {
        if self.stale.is_empty() {
            return Ok(());
        }
        let mut doomed: Vec<String> = Vec::new();
        if let Some(prev) = &self.prev {
            for parent in self.stale.keys() {
                for (id, key, _) in prev.children_of(parent) {
                    // Not put again since the last commit.
                    if self.txn.key_of(&id)? == Some(key) {
                        doomed.push(id);
                    }
                }
            }
        }
        if self.stale_in_batch {
            let stale = &self.stale;
            self.txn.for_each_new(|key, r| {
                if r.parent.as_ref().and_then(|p| stale.get(p)).is_some_and(|mark| key < *mark) {
                    doomed.push(r.id);
                }
                Ok(())
            })?;
        }
        for id in doomed {
            if let Some((key, _)) = self.txn.delete(&id)? {
                if let Some(text) = &mut self.text {
                    text.delete(key);
                }
                self.deleted += 1;
            }
        }
        Ok(())
    }

    /// The centre of the children each record has now, for `ids`: those
    /// of the last commit that were neither put again nor removed, and
    /// those of this batch (`new`, by parent).
    fn centre_of(&self, id: &str, new: &HashMap<String, Centre>) -> Result<Centre> {
        let mut c = new.get(id).copied().unwrap_or_default();
        let Some(prev) = &self.prev else { return Ok(c) };
        for (child, key, point) in prev.children_of(id) {
            if self.txn.key_of(&child)? != Some(key) {
                continue;
            }
            if let Some(p) = point {
                c.add(p);
            }
        }
        Ok(c)
    }

    /// Whether the record `id` of `kind` may be derived: when there is none,
    /// or the one there was derived. A document of its own (a street of an
    /// NDJSON file) is never replaced by a derived one; a record of another
    /// kind under the id is an [`Error::IdCollision`].
    fn derivable(&mut self, id: &str, kind: &str) -> Result<Option<Option<import::Place>>> {
        match self.txn.get(id)? {
            None => Ok(Some(None)),
            Some(old) if old.kind != kind => Err(Error::IdCollision {
                id: id.to_owned(),
                what: format!("the {kind} derived from BAN CSV rows"),
                existing: old.kind,
            }),
            Some(old) if import::is_derived(&old) => Ok(Some(Some(import::place_of(&old)))),
            Some(_) => Ok(None),
        }
    }

    /// Puts the streets and municipalities derived from their housenumbers
    /// (see [`crate::import`]): those BAN CSV rows named, and derived ones
    /// whose numbers moved away or were deleted. Each is placed at the
    /// centre of every housenumber it has once this batch's writes are in,
    /// as important as their number; one left with none is removed.
    fn derive_parents(&mut self) -> Result<()> {
        if self.derived.is_empty() && self.lost.is_empty() {
            return Ok(());
        }
        let named = std::mem::take(&mut self.derived);
        let lost = std::mem::take(&mut self.lost);
        let mut streets: std::collections::BTreeMap<String, import::Place> = std::collections::BTreeMap::new();
        let mut communes: std::collections::BTreeMap<String, import::Place> = std::collections::BTreeMap::new();
        let mut lost: Vec<String> = lost.into_iter().collect();
        lost.sort();
        for (id, place) in named.streets {
            if self.derivable(&id, "street")?.is_some() {
                communes.entry(place.citycode.clone()).or_default();
                streets.insert(id, place);
            }
        }
        for id in &lost {
            if streets.contains_key(id) {
                continue;
            }
            if let Some(Some(place)) = self.derivable_quietly(id, "street")? {
                communes.entry(place.citycode.clone()).or_default();
                streets.insert(id.clone(), place);
            }
        }
        for (code, place) in named.communes {
            communes.insert(code, place);
        }
        // Communes are derived when they were derived, or are new.
        let mut places: std::collections::BTreeMap<String, import::Place> = std::collections::BTreeMap::new();
        for (code, place) in communes.into_iter().chain(lost.iter().map(|c| (c.clone(), import::Place::default()))) {
            if places.contains_key(&code) {
                continue;
            }
            // What the rows say, else what the derived record said.
            match self.derivable_quietly(&code, "municipality")? {
                Some(_) if !place.name.is_empty() => {
                    places.insert(code, place);
                }
                Some(Some(old)) => {
                    places.insert(code, old);
                }
                _ => {}
            }
        }
        let (new, commune_of) = self.places_of(&places, &streets)?;
        let mut sums: HashMap<&str, Centre> = HashMap::new();
        for (id, code) in &commune_of {
            let c = self.centre_of(id, &new)?;
            sums.entry(code.as_str()).or_default().merge(c);
        }
        for (id, place) in &streets {
            let c = self.centre_of(id, &new)?;
            self.put_derived(id, "street", place, c)?;
        }
        for (code, place) in &places {
            let c = sums.get(code.as_str()).copied().unwrap_or_default();
            self.put_derived(code, "municipality", place, c)?;
        }
        Ok(())
    }

    /// [`Batch::derivable`], for a record that may be anything: a record
    /// of another kind is no collision, only not derived.
    fn derivable_quietly(&mut self, id: &str, kind: &str) -> Result<Option<Option<import::Place>>> {
        match self.derivable(id, kind) {
            Err(Error::IdCollision { .. }) => Ok(None),
            other => other,
        }
    }

    /// This batch's children by parent, and the places (streets,
    /// localities) of each commune of `communes` with the commune they are
    /// in: this batch's, the last commit's not put again, and `streets`.
    #[allow(clippy::type_complexity)]
    fn places_of(
        &mut self,
        communes: &std::collections::BTreeMap<String, import::Place>,
        streets: &std::collections::BTreeMap<String, import::Place>,
    ) -> Result<(HashMap<String, Centre>, std::collections::BTreeMap<String, String>)> {
        let mut new: HashMap<String, Centre> = HashMap::new();
        let mut commune_of: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        self.txn.for_each_new(|_, r| {
            if let (Some(parent), Some(p)) = (&r.parent, r.point) {
                new.entry(parent.clone()).or_default().add(p);
            } else if r.parent.is_none() && r.kind != "municipality" {
                let codes = r.get("citycode").map(|v| v.strs()).unwrap_or_default();
                if let Some(c) = codes.into_iter().find(|c| communes.contains_key(*c)) {
                    commune_of.insert(r.id.clone(), c.to_owned());
                }
            }
            Ok(())
        })?;
        if let Some(prev) = self.prev.clone() {
            for code in communes.keys() {
                for (p, slot) in prev.slots_where("citycode", &super::filter_value(code))? {
                    let docs = &prev.parts[p].gen.docs;
                    let r = docs.record(slot);
                    let id = r.id();
                    if r.kind() == "municipality" || commune_of.contains_key(&id) {
                        continue;
                    }
                    if self.txn.key_of(&id)? == Some(docs.key(slot)) {
                        commune_of.insert(id, code.clone());
                    }
                }
            }
        }
        for (id, place) in streets {
            commune_of.insert(id.clone(), place.citycode.clone());
        }
        commune_of.retain(|_, code| communes.contains_key(code));
        Ok((new, commune_of))
    }

    /// Puts a derived street or municipality, or removes the one there was
    /// when it has no housenumber left.
    fn put_derived(&mut self, id: &str, kind: &str, place: &import::Place, c: Centre) -> Result<()> {
        match c.point() {
            Some(centre) => self.put(import::derived_record(id, kind, place, centre, c.n)),
            None => self.delete(id).map(|_| ()),
        }
    }
}
