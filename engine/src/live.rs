//! Live writes: what queries read is a [`View`], the last base generation
//! (built from the whole store, memory-mapped, immutable) and small
//! layers laid over it, one per live commit, each a generation of its own
//! holding whole families (a street with all its housenumbers) as the
//! store has them after that commit. A record a later layer holds again,
//! or that was deleted, is masked in the part that held it, so every
//! record id is live in one part at most.
//!
//! A family is the unit because the search plan reads a street's
//! housenumbers through its documents file (children, their tags, their
//! records): a layer that held a new housenumber without its street, or
//! a street without its other numbers, could not resolve them.
//!
//! The store stays the source of truth. Each live commit logs the ids it
//! touched ([`crate::store::StoreTxn::commit_live`]); reopening lays the
//! logged ids over the base again as one layer, read from the store. A
//! full commit builds a new base from the whole store and empties the log.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::{Generation, LIVE_DIR};
use crate::docs::DocsBuilder;
use crate::error::{Error, Result};
use crate::generation::{FORMAT_FILE, GENERATION_FORMAT};
use crate::geo::GeoBuilder;
use crate::profiles::{Active, Profile};
use crate::record::{Point, Record};
use crate::store::StoreTxn;
use crate::text::LayerTextWriter;

/// The slots of one part that queries skip: records that a later layer
/// holds again, or that were deleted. A bit per slot: tested for every
/// candidate the text index collects.
#[derive(Clone, Default, Debug)]
pub struct Mask {
    bits: Vec<u64>,
    count: usize,
    /// Of them, records with a text document.
    texts: usize,
}

impl Mask {
    pub fn contains(&self, slot: u32) -> bool {
        self.bits.get(slot as usize / 64).is_some_and(|w| (w >> (slot % 64)) & 1 == 1)
    }

    /// Masks `slot`, of a record that has a text document or not.
    fn insert(&mut self, slot: u32, text: bool) {
        let (i, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if i >= self.bits.len() {
            self.bits.resize(i + 1, 0);
        }
        if self.bits[i] & bit == 0 {
            self.bits[i] |= bit;
            self.count += 1;
            self.texts += usize::from(text);
        }
    }

    /// The slots masked, in order.
    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| (0..64u32).filter(move |b| (w >> b) & 1 == 1).map(move |b| (i as u32) * 64 + b))
    }

    /// Text documents masked.
    pub fn texts(&self) -> usize {
        self.texts
    }

    /// Slots masked.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A layer's directory, removed when the last view holding it is
/// dropped while the database is open: its files are rebuilt from the
/// store at a reopen, so they are never synced, and queries still running
/// on them keep their maps. When the database closes they stay, with the
/// `VIEW` that names them, for read-only openers until the next writer.
struct LayerFiles(PathBuf, Arc<std::sync::atomic::AtomicBool>);

impl Drop for LayerFiles {
    fn drop(&mut self) {
        if !self.1.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// The base generation or a layer, and what of it is masked.
#[derive(Clone)]
pub(crate) struct Part {
    pub gen: Arc<Generation>,
    pub mask: Option<Arc<Mask>>,
    /// A layer's: the ids of the records it masked in the parts before it
    /// (see [`REPLACED_FILE`]).
    replaced: Arc<Vec<String>>,
    /// The part's records whose parent it lacks, by the parent's id (see
    /// [`crate::docs::Docs::orphans`]): found on the first live write that
    /// needs them, once per part.
    orphans: Arc<std::sync::OnceLock<HashMap<String, Vec<u32>>>>,
    files: Option<Arc<LayerFiles>>,
}

/// In a layer's directory: the ids of the records the layer masked in
/// the parts before it (length-prefixed), so that a read-only opener,
/// which cannot read the store a writer holds, masks them too.
const REPLACED_FILE: &str = "REPLACED";
/// In the live directory: the layers over the base, for read-only
/// openers (see [`View::write_manifest`]).
const VIEW_FILE: &str = "VIEW";
const VIEW_MAGIC: &str = "cairn-live 1";

impl Part {
    /// A base with nothing masked.
    pub fn of(gen: Arc<Generation>) -> Part {
        Part { gen, mask: None, replaced: Arc::default(), orphans: Arc::default(), files: None }
    }

    pub fn masked(&self, slot: u32) -> bool {
        self.mask.as_ref().is_some_and(|m| m.contains(slot))
    }

    /// The live records of the part that name `parent` without the part
    /// holding it.
    fn orphans_of(&self, parent: &str) -> Vec<u32> {
        let all = self.orphans.get_or_init(|| self.gen.docs.orphans());
        all.get(parent).map_or_else(Vec::new, |slots| slots.iter().copied().filter(|s| !self.masked(*s)).collect())
    }

    /// Records of the part that are live.
    fn live(&self) -> usize {
        self.gen.docs.len() - self.mask.as_ref().map_or(0, |m| m.len())
    }
}

/// What queries read: the base and its layers, oldest first.
pub(crate) struct View {
    /// The store's generation: the last commit of any kind.
    pub number: u64,
    /// What answers are cached under: new with every change to the
    /// address records (see [`crate::Database::epoch`]).
    pub epoch: u64,
    pub parts: Vec<Part>,
}

/// A number no other view of this process has.
pub(crate) fn fresh_epoch() -> u64 {
    static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl View {
    /// A view of the base alone.
    pub fn of_base(base: Arc<Generation>, number: u64) -> View {
        View { number, epoch: fresh_epoch(), parts: vec![Part::of(base)] }
    }

    pub fn base(&self) -> &Arc<Generation> {
        &self.parts[0].gen
    }

    /// The part and slot where the record `id` is live, newest part first.
    pub fn locate(&self, id: &str) -> Option<(usize, u32)> {
        self.parts
            .iter()
            .enumerate()
            .rev()
            .find_map(|(p, part)| part.gen.docs.slot_of_id(id).filter(|s| !part.masked(*s)).map(|s| (p, s)))
    }

    /// Records live in the view.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.live() as u64).sum()
    }

    /// Records held by layers, live or not: what a compaction would fold
    /// into the base.
    pub fn layered(&self) -> u64 {
        self.parts[1..].iter().map(|p| p.gen.docs.len() as u64).sum()
    }

    /// The children of the live record `id`: id, store key and point.
    pub fn children_of(&self, id: &str) -> Vec<(String, u64, Option<Point>)> {
        let Some((p, slot)) = self.locate(id) else { return Vec::new() };
        let part = &self.parts[p];
        let docs = &part.gen.docs;
        docs.children(slot)
            .filter(|(c, _)| !part.masked(*c))
            .map(|(c, _)| {
                let r = docs.record(c);
                (r.id(), docs.key(c), r.point())
            })
            .collect()
    }

    /// The live records whose filter field `name` holds `value`: part and
    /// slot.
    pub fn slots_where(&self, name: &str, value: &str) -> Result<Vec<(usize, u32)>> {
        let mut out = Vec::new();
        for (p, part) in self.parts.iter().enumerate() {
            for s in part.gen.text.slots_where(name, value)? {
                if !part.masked(s) {
                    out.push((p, s));
                }
            }
        }
        Ok(out)
    }

    /// An error if a read found a part's files damaged.
    pub fn check(&self) -> Result<()> {
        self.parts.iter().try_for_each(|p| p.gen.check())
    }

    /// This view with `changes` laid over it: the slots they replace
    /// masked, and their records, when there are any, as a new layer built
    /// in `dir`.
    pub fn with_changes(&self, number: u64, changes: Changes, dir: &LayerDir) -> Result<View> {
        let mut parts = self.parts.clone();
        let replaced: Vec<String> = changes
            .replaced
            .iter()
            .map(|&(p, s)| parts[p].gen.docs.record(s).id())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        mask_parts(&mut parts, &changes.replaced);
        if !changes.records.is_empty() || !replaced.is_empty() {
            parts.push(build_layer(dir, number, &changes.records, replaced)?);
        }
        Ok(View { number, epoch: fresh_epoch(), parts })
    }

    /// Writes which layers make this view into `live/VIEW` (atomically,
    /// not synced: a crash's reopen makes the layers and the file again),
    /// for read-only openers. Every layer named is complete before.
    pub fn write_manifest(&self, db_dir: &Path) -> Result<()> {
        let live = db_dir.join(LIVE_DIR);
        if self.parts.len() == 1 {
            // The base alone: no file, no directory, as before live writes.
            match fs::remove_file(live.join(VIEW_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&live, e)),
                _ => {}
            }
            let _ = fs::remove_dir(&live);
            return Ok(());
        }
        let mut text = format!("{VIEW_MAGIC}\nnumber {}\nbase {}\n", self.number, self.base().number);
        for part in &self.parts[1..] {
            if let Some(f) = &part.files {
                if let Some(name) = f.0.file_name() {
                    text.push_str(&format!("layer {}\n", name.to_string_lossy()));
                }
            }
        }
        fs::create_dir_all(&live).map_err(|e| Error::io(&live, e))?;
        let tmp = live.join("VIEW.tmp");
        fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, live.join(VIEW_FILE)).map_err(|e| Error::io(&tmp, e))
    }

    /// The view a writer of `db_dir` last published over `base` (numbered
    /// `number` in `CURRENT`), for a read-only opener: the layers its
    /// `live/VIEW` names, each masking in the parts before it the ids it
    /// replaced. The base alone when there is no such file;
    /// [`Error::Unsettled`] when it is of another base. A layer a writer
    /// removed meanwhile (merged) makes it read the file again.
    pub fn read_only(db_dir: &Path, base: Arc<Generation>) -> Result<View> {
        let number = base.number;
        let live = db_dir.join(LIVE_DIR);
        let mut last = None;
        for _ in 0..5 {
            let Ok(text) = fs::read_to_string(live.join(VIEW_FILE)) else { break };
            match View::from_manifest(&live, &text, base.clone()) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => break,
                Err(e) => last = Some(e),
            }
        }
        match last {
            // Not the base alone: it would show writes undone.
            Some(e) => Err(e),
            None => Ok(View::of_base(base, number)),
        }
    }

    fn from_manifest(live: &Path, text: &str, base: Arc<Generation>) -> Result<Option<View>> {
        let mut lines = text.lines();
        if lines.next() != Some(VIEW_MAGIC) {
            return Ok(None);
        }
        let field = |line: Option<&str>, name: &str| {
            line.and_then(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (Some(number), Some(of)) = (field(lines.next(), "number "), field(lines.next(), "base ")) else {
            return Ok(None);
        };
        if of != base.number {
            // Not the base `CURRENT` named: a writer moved them, one after
            // the other (see `Database::open_read_only`).
            return Err(Error::Unsettled { path: live.join(VIEW_FILE) });
        }
        if number < of {
            return Ok(None);
        }
        let mut parts = vec![Part::of(base)];
        for line in lines {
            let Some(name) = line.strip_prefix("layer ") else { continue };
            let dir = live.join(name);
            let gen = Generation::open(&dir, number, Active::FILTERS, Active::derive)?;
            let replaced = read_replaced(&dir)?;
            let mut slots = Vec::new();
            for id in &replaced {
                for (p, part) in parts.iter().enumerate() {
                    if let Some(s) = part.gen.docs.slot_of_id(id) {
                        slots.push((p, s));
                    }
                }
            }
            mask_parts(&mut parts, &slots);
            parts.push(Part {
                gen: Arc::new(gen),
                mask: None,
                replaced: Arc::new(replaced),
                orphans: Arc::default(),
                files: None,
            });
        }
        Ok(Some(View { number, epoch: fresh_epoch(), parts }))
    }

    /// The layers from `from` on merged into one, built in `dir` from the
    /// store (`txn`), or `None` when there is nothing to merge. Layers of
    /// about one size are merged when four of them have piled up, so that
    /// a query reads a few layers and a record is rebuilt a few times.
    pub fn merged(&self, txn: &mut StoreTxn, dir: &LayerDir) -> Result<Option<View>> {
        let Some((plan, keys)) = self.merge_plan(1) else { return Ok(None) };
        let records = read_keys(txn, keys)?;
        let merged = plan.build(&records, dir)?;
        Ok(self.with_merged(&plan, merged))
    }

    /// Whether layers are due a merge.
    pub fn merge_due(&self) -> bool {
        self.merge_from().is_some()
    }

    /// The store keys of the live records of the parts from `from` on,
    /// sorted.
    pub fn live_keys(&self, from: usize) -> Vec<u64> {
        let mut keys = Vec::new();
        for part in &self.parts[from..] {
            let docs = &part.gen.docs;
            keys.extend((0..docs.len() as u32).filter(|s| !part.masked(*s)).map(|s| docs.key(s)));
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Where the part holding `gen` is.
    pub fn position(&self, gen: &Arc<Generation>) -> Option<usize> {
        self.parts.iter().position(|p| Arc::ptr_eq(&p.gen, gen))
    }

    /// A merge to make apart from the writer, as [`View::merged`] would
    /// choose it now among the layers from `floor` on, and the store keys
    /// of the live records it takes.
    pub fn merge_plan(&self, floor: usize) -> Option<(Merge, Vec<u64>)> {
        let from = self.merge_from()?.max(floor);
        if self.parts.len() - from < 2 {
            return None;
        }
        let keys = self.live_keys(from);
        Some((Merge { parts: self.parts[from..].to_vec(), number: self.number }, keys))
    }

    /// Where the run of layers `plan` merges is in this view, if it is
    /// still there whole.
    pub fn run_of(&self, plan: &Merge) -> Option<std::ops::Range<usize>> {
        let from = self.position(&plan.parts.first()?.gen)?;
        let to = from + plan.parts.len();
        let same = self
            .parts
            .get(from..to)
            .is_some_and(|now| now.iter().zip(&plan.parts).all(|(a, b)| Arc::ptr_eq(&a.gen, &b.gen)));
        same.then_some(from..to)
    }

    /// This view with the layers `plan` merged replaced by `merged` (built
    /// from their live records as they were when it was planned), masking
    /// in it the records that commits since masked in them; `None` when
    /// they are no longer this view's (a fold or a full commit replaced
    /// them).
    pub fn with_merged(&self, plan: &Merge, merged: Option<Part>) -> Option<View> {
        let std::ops::Range { start: from, end: to } = self.run_of(plan)?;
        let mut parts = self.parts[..from].to_vec();
        if let Some(mut merged) = merged {
            let mut mask = Mask::default();
            for (now, then) in self.parts[from..to].iter().zip(&plan.parts) {
                let Some(m) = &now.mask else { continue };
                for s in m.slots().filter(|s| !then.masked(*s)) {
                    let id = now.gen.docs.record(s).id();
                    if let Some(slot) = merged.gen.docs.slot_of_id(&id) {
                        mask.insert(slot, Active::indexed(merged.gen.docs.record(slot).kind()));
                    }
                }
            }
            if !mask.is_empty() {
                merged.mask = Some(Arc::new(mask));
            }
            parts.push(merged);
        }
        parts.extend_from_slice(&self.parts[to..]);
        Some(View { number: self.number, epoch: self.epoch, parts })
    }

    /// This view with the parts of `folded` (a view it started from)
    /// replaced by `base`, a generation built from the store as it was in
    /// `folded`: what the layers laid over it since replaced is masked in
    /// it. `None` when they are no longer this view's first parts.
    pub fn with_folded(&self, folded: &View, base: Arc<Generation>) -> Option<View> {
        let k = folded.parts.len();
        let same = self
            .parts
            .get(..k)
            .is_some_and(|now| now.iter().zip(&folded.parts).all(|(a, b)| Arc::ptr_eq(&a.gen, &b.gen)));
        if !same {
            return None;
        }
        let later = &self.parts[k..];
        let mut mask = Mask::default();
        for id in later.iter().flat_map(|p| p.replaced.iter()).collect::<BTreeSet<_>>() {
            if let Some(s) = base.docs.slot_of_id(id) {
                mask.insert(s, Active::indexed(base.docs.record(s).kind()));
            }
        }
        let mut first = Part::of(base);
        if !mask.is_empty() {
            first.mask = Some(Arc::new(mask));
        }
        let mut parts = vec![first];
        parts.extend_from_slice(later);
        Some(View { number: self.number, epoch: fresh_epoch(), parts })
    }

    /// The live records of the layers from `from` on, in key order, read
    /// from the store (`txn`).
    pub fn layer_records(&self, from: usize, txn: &mut StoreTxn) -> Result<Vec<(u64, Record)>> {
        read_keys(txn, self.live_keys(from))
    }

    /// Where the run of layers to merge starts: the newest layers, each
    /// at most [`SIZE_RATIO`] times the records of those after it, when
    /// there are [`MIN_RUN`] of them or more; or the newest two when there
    /// are more than [`MAX_LAYERS`]. Layer sizes then fall geometrically
    /// from the oldest, so that a query reads a handful of parts: each
    /// costs it a lookup of every word (about 70 µs a query at 1M
    /// addresses), which outweighs the records merged again a few more
    /// times (docs/PERFORMANCE.md, "eleventh session").
    fn merge_from(&self) -> Option<usize> {
        let n = self.parts.len();
        let (mut newer, mut from) = (0, n);
        for j in (1..n).rev() {
            let size = self.parts[j].gen.docs.len().max(1);
            if j + 1 < n && size > SIZE_RATIO * newer {
                break;
            }
            newer += size;
            from = j;
        }
        if n - from >= MIN_RUN {
            return Some(from);
        }
        (n - 1 > MAX_LAYERS).then(|| n - 2)
    }
}

/// See [`View::merge_from`].
const SIZE_RATIO: usize = 4;
const MIN_RUN: usize = 4;

/// Layers to merge into one, chosen under the writer's lock and built
/// apart from it (see [`crate::Database::merge_in_background`]).
pub(crate) struct Merge {
    /// The layers as they were when chosen.
    parts: Vec<Part>,
    number: u64,
}

impl Merge {
    /// The merged layer of `records` (the live records of the layers, in
    /// key order, as the store had them when the merge was chosen), built
    /// in `dir`; `None` when there is nothing to hold.
    pub fn build(&self, records: &[(u64, Record)], dir: &LayerDir) -> Result<Option<Part>> {
        let replaced: BTreeSet<String> = self.parts.iter().flat_map(|p| p.replaced.iter().cloned()).collect();
        if records.is_empty() && replaced.is_empty() {
            return Ok(None);
        }
        build_layer(dir, self.number, records, replaced.into_iter().collect()).map(Some)
    }
}

/// Layers a view may hold before the newest are merged, whatever their
/// sizes.
const MAX_LAYERS: usize = 8;

fn mask_parts(parts: &mut [Part], replaced: &[(usize, u32)]) {
    let mut by_part: HashMap<usize, Vec<u32>> = HashMap::new();
    for &(p, s) in replaced {
        by_part.entry(p).or_default().push(s);
    }
    for (p, slots) in by_part {
        let part = &mut parts[p];
        let mut mask = part.mask.as_deref().cloned().unwrap_or_default();
        for s in slots {
            mask.insert(s, Active::indexed(part.gen.docs.record(s).kind()));
        }
        part.mask = Some(Arc::new(mask));
    }
}

/// What a live commit changes in a view: the records to lay over it, as
/// whole families, and the part slots they replace.
pub(crate) struct Changes {
    pub records: Vec<(u64, Record)>,
    pub replaced: Vec<(usize, u32)>,
}

/// The changes the store (`txn`, with its writes) makes to `view` by
/// putting or deleting `touched`: every family one of them left or joined
/// (or is, for a record without a parent), as the store now has it, and
/// the slots of those families in the view.
pub(crate) fn changes(view: &View, txn: &mut StoreTxn, touched: &[String]) -> Result<Changes> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut tops: BTreeSet<String> = BTreeSet::new();
    // Touched records by the parent they now have.
    let mut under: HashMap<String, Vec<u64>> = HashMap::new();
    for id in touched {
        if !seen.insert(id.as_str()) {
            continue;
        }
        if let Some((p, s)) = view.locate(id) {
            let docs = &view.parts[p].gen.docs;
            tops.insert(docs.parent(s).map_or_else(|| id.clone(), |ps| docs.record(ps).id()));
        }
        let Some(key) = txn.key_of(id)? else { continue };
        let Some(record) = txn.get_key(key)? else {
            return Err(Error::Store(format!("the ids table names {id:?}, whose record is gone")));
        };
        match record.parent {
            Some(parent) => {
                under.entry(parent.clone()).or_default().push(key);
                tops.insert(parent);
            }
            None => {
                tops.insert(id.clone());
            }
        }
    }
    let mut keys = Vec::new();
    let mut replaced = Vec::new();
    for top in &tops {
        keys.extend(txn.key_of(top)?);
        if let Some((p, s)) = view.locate(top) {
            let docs = &view.parts[p].gen.docs;
            replaced.push((p, s));
            for (c, _) in docs.children(s) {
                replaced.push((p, c));
                let id = docs.record(c).id();
                // A child not touched is the same record under the same key.
                if !seen.contains(id.as_str()) && txn.key_of(&id)? == Some(docs.key(c)) {
                    keys.push(docs.key(c));
                }
            }
        }
        keys.extend(under.get(top).into_iter().flatten());
        // Records put before their parent, in any part: the family now
        // holds them, as a documents file built from the store links them.
        for (p, part) in view.parts.iter().enumerate() {
            for c in part.orphans_of(top) {
                let docs = &part.gen.docs;
                let id = docs.record(c).id();
                if !seen.contains(id.as_str()) && txn.key_of(&id)? == Some(docs.key(c)) {
                    replaced.push((p, c));
                    keys.push(docs.key(c));
                }
            }
        }
    }
    let records = read_keys(txn, keys)?;
    Ok(Changes { records, replaced })
}

/// The records of `keys`, in key order, read through `txn` (a block is
/// decoded once for the keys in it that follow each other).
fn read_keys(txn: &mut StoreTxn, mut keys: Vec<u64>) -> Result<Vec<(u64, Record)>> {
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        match txn.get_key(k)? {
            Some(r) => out.push((k, r)),
            None => return Err(Error::Store(format!("a layer names key {k}, which the store lacks"))),
        }
    }
    Ok(out)
}

/// Builds a layer of `records` (in key order) in `dir`: the files of a
/// generation, not synced (a reopen builds them again from the store).
/// Where a layer is built, and the flag that keeps its files when the
/// database closes.
pub(crate) struct LayerDir {
    pub path: PathBuf,
    pub closing: Arc<std::sync::atomic::AtomicBool>,
}

fn build_layer(at: &LayerDir, number: u64, records: &[(u64, Record)], replaced: Vec<String>) -> Result<Part> {
    debug_assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "a layer's records are in key order");
    let dir = at.path.as_path();
    let _ = fs::remove_dir_all(dir);
    let files = Arc::new(LayerFiles(dir.to_owned(), at.closing.clone()));
    fs::create_dir_all(dir.join("text")).map_err(|e| Error::io(dir, e))?;
    let mut text = LayerTextWriter::create(&dir.join("text"), Active::FILTERS, records.len())?;
    for (key, r) in records {
        if let Some(d) = Active::text_doc(*key, r) {
            text.add(d)?;
        }
    }
    text.finish()?;
    let mut docs = DocsBuilder::create(&dir.join("docs"), Active::child_tag)?.unsynced();
    let mut geo = GeoBuilder::new(&dir.join("geo")).unsynced();
    for (key, r) in records {
        let slot = docs.add(*key, r)?;
        if let Some(p) = r.point {
            geo.add(p, slot)?;
        }
    }
    docs.finish()?;
    geo.write()?;
    let format = dir.join(FORMAT_FILE);
    fs::write(&format, GENERATION_FORMAT).map_err(|e| Error::io(&format, e))?;
    let path = dir.join(REPLACED_FILE);
    fs::write(&path, crate::store::encode_ids(&replaced)).map_err(|e| Error::io(&path, e))?;
    let gen = Generation::open(dir, number, Active::FILTERS, Active::derive)?;
    Ok(Part {
        gen: Arc::new(gen),
        mask: None,
        replaced: Arc::new(replaced),
        orphans: Arc::default(),
        files: Some(files),
    })
}

fn read_replaced(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(REPLACED_FILE);
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut out = Vec::new();
    crate::store::decode_ids(&bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::import::{Format, OnError, Skipped};
    use crate::{Database, Point, ReverseQuery, SearchQuery};

    /// A tiny deterministic generator (tests must not depend on a seed
    /// taken from the clock).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    const NAMES: [&str; 6] = [
        "Rue de la Paix",
        "Avenue Victor Hugo",
        "Chemin des Vignes",
        "Rue Pasteur",
        "Impasse du Moulin",
        "Boulevard Carnot",
    ];
    const TOWNS: [(&str, &str, &str); 3] =
        [("38185", "Grenoble", "38000"), ("69123", "Lyon", "69003"), ("73065", "Chambery", "73000")];

    fn town_line(t: usize, name: &str) -> String {
        let (code, _, postcode) = TOWNS[t];
        format!(
            r#"{{"id": "{code}", "type": "municipality", "name": "{name}", "postcode": "{postcode}", "citycode": "{code}", "city": "{name}", "lon": {}, "lat": 45.1, "importance": 0.6}}"#,
            5.0 + t as f64
        )
    }

    fn street_line(s: usize, name: &str, t: usize, numbers: &[u64]) -> String {
        let (code, city, postcode) = TOWNS[t];
        let lon = 5.0 + t as f64 + s as f64 * 0.001;
        let hn: Vec<String> = numbers
            .iter()
            .map(|n| {
                format!(
                    r#""{n}": {{"id": "s{s}_{n}", "lon": {}, "lat": {}}}"#,
                    lon + *n as f64 * 1e-5,
                    45.1 + *n as f64 * 1e-5
                )
            })
            .collect();
        format!(
            r#"{{"id": "s{s}", "type": "street", "name": "{name}", "postcode": "{postcode}", "citycode": "{code}", "city": "{city}", "lon": {lon}, "lat": 45.1, "importance": 0.{}, "housenumbers": {{{}}}}}"#,
            3 + s % 5,
            hn.join(", ")
        )
    }

    fn number_line(s: usize, n: u64, parent: usize) -> String {
        format!(
            r#"{{"id": "s{s}_{n}", "type": "housenumber", "parent": "s{parent}", "name": "{n} Rue", "housenumber": "{n}", "lon": {}, "lat": 45.2}}"#,
            5.0 + parent as f64 * 0.001
        )
    }

    /// One write: NDJSON lines to import, then ids to delete.
    struct Op {
        lines: Vec<String>,
        deletes: Vec<String>,
    }

    fn random_op(r: &mut Lcg) -> Op {
        let s = r.below(12) as usize;
        let numbers: Vec<u64> = (1..=8).filter(|_| r.below(2) == 0).collect();
        let line = |r: &mut Lcg| street_line(s, NAMES[r.below(6) as usize], r.below(3) as usize, &numbers);
        match r.below(7) {
            0 | 1 => Op { lines: vec![line(r)], deletes: vec![] },
            2 => Op { lines: vec![], deletes: vec![format!("s{s}")] },
            3 => Op { lines: vec![], deletes: vec![format!("s{s}_{}", 1 + r.below(8))] },
            // A housenumber of its own, under its street or another one
            // (it moves when it had another parent).
            4 => Op { lines: vec![number_line(s, 1 + r.below(8), r.below(12) as usize)], deletes: vec![] },
            5 => Op {
                lines: vec![town_line(
                    r.below(3) as usize,
                    ["Grenoble", "Gières", "Lyon", "Chambéry"][r.below(4) as usize],
                )],
                deletes: vec![],
            },
            _ => Op { lines: vec![line(r), line(r)], deletes: vec![format!("s{}", r.below(12))] },
        }
    }

    fn apply(db: &Database, op: &Op, live: bool) {
        let f = |b: &mut crate::Batch| {
            if !op.lines.is_empty() {
                let body = op.lines.join("\n");
                b.import(body.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default())?;
            }
            for id in &op.deletes {
                b.delete(id)?;
            }
            Ok(())
        };
        let done = if live { db.write_live(f) } else { db.write(f) };
        // A housenumber put on a street that is not there may collide;
        // both databases must agree on refusing it.
        let _ = done;
    }

    fn ids() -> Vec<String> {
        let mut ids: Vec<String> = TOWNS.iter().map(|t| t.0.to_owned()).collect();
        for s in 0..12 {
            ids.push(format!("s{s}"));
            ids.extend((1..=8).map(|n| format!("s{s}_{n}")));
        }
        ids
    }

    fn queries() -> Vec<SearchQuery> {
        let mut out = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            for (_, city, _) in TOWNS {
                out.push(SearchQuery::new(format!("{} {name} {city}", 1 + i % 8)));
                out.push(SearchQuery::new(format!("{name} {}", &city[..3])));
            }
        }
        out.extend(["grenoble", "gieres", "lyon", "chambery", "rue", "3 rue pasteur"].map(SearchQuery::new));
        out
    }

    /// Everything a user can observe of the address records.
    fn observe(db: &Database) -> Vec<String> {
        let mut out = vec![format!("len {}", db.len())];
        for id in ids() {
            out.push(format!("{id}: {:?}", db.get(&id).unwrap()));
        }
        // Every answer that matches (the street asked for, in its town).
        // Weak ones, a street of that name elsewhere, may differ: each
        // index picks its candidates by its own BM25 statistics, and a
        // rebuilt index's include records it deleted (tantivy counts them
        // until it merges), so each may miss a weak match the other finds.
        for q in queries() {
            let found = db.search(&q).unwrap();
            let found: Vec<String> = found
                .iter()
                .filter(|f| f.score >= 0.75)
                .map(|f| format!("{} {:.6}", f.prop_str("id").unwrap_or(""), f.score))
                .collect();
            out.push(format!("{}: {found:?}", q.q));
        }
        for t in 0..3 {
            let at = Point { lat: 45.1, lon: 5.0 + f64::from(t) };
            let found = db.reverse(&ReverseQuery { at, limit: 5, filters: vec![] }).unwrap();
            out.push(format!("{at:?}: {:?}", found.iter().map(|f| f.prop_str("id")).collect::<Vec<_>>()));
        }
        out
    }

    fn assert_same(a: &[String], b: &[String], what: &str) {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x, y, "{what}");
        }
        assert_eq!(a.len(), b.len(), "{what}");
    }

    fn base_lines() -> String {
        let mut lines: Vec<String> = (0..3).map(|t| town_line(t, TOWNS[t].1)).collect();
        lines.extend((0..10).map(|s| street_line(s, NAMES[s % 6], s % 3, &[1, 2, 3, 5, 8])));
        lines.join("\n")
    }

    fn import(db: &Database) {
        let body = base_lines();
        db.write(|b| b.import(body.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default())).unwrap();
    }

    /// A housenumber put before its street (an orphan in its layer) joins
    /// the street's family when the street comes, as a rebuilt documents
    /// file links it; the street's next full list of numbers then removes
    /// it, as a full commit does. A fold keeps the generation's number.
    #[test]
    fn a_number_put_before_its_street_joins_it() {
        let dir = tempfile::tempdir().unwrap();
        let live = Database::open(dir.path().join("live")).unwrap();
        let full = Database::open(dir.path().join("full")).unwrap();
        import(&live);
        import(&full);
        let street = |numbers: &str| {
            format!(
                r#"{{"id": "s40", "type": "street", "name": "Rue Zorglub", "postcode": "38000", "citycode": "38185", "city": "Grenoble", "lon": 5.5, "lat": 45.5, "importance": 0.5{numbers}}}"#
            )
        };
        let ops = [
            Op { lines: vec![number_line(40, 7, 40)], deletes: vec![] },
            Op { lines: vec![street("")], deletes: vec![] },
            Op { lines: vec![street(r#", "housenumbers": {}"#)], deletes: vec![] },
            Op { lines: vec![number_line(40, 9, 40)], deletes: vec![] },
            Op { lines: vec![], deletes: vec!["s40".into()] },
        ];
        for (i, op) in ops.iter().enumerate() {
            apply(&live, op, true);
            apply(&full, op, false);
            for id in ["s40", "s40_7", "s40_9"] {
                assert_eq!(live.get(id).unwrap(), full.get(id).unwrap(), "write {i}: {id}");
            }
            assert_eq!(live.len(), full.len(), "write {i}");
            assert_eq!(live.generation(), full.generation(), "write {i}");
        }
        assert!(live.get("s40_7").unwrap().is_none(), "removed with the street's empty list");
        live.set_live_limit(1);
        let op = Op { lines: vec![street_line(1, NAMES[2], 1, &[2, 3])], deletes: vec![] };
        apply(&live, &op, true);
        apply(&full, &op, false);
        assert_eq!(live.view().unwrap().parts.len(), 1, "folded");
        assert_eq!(live.generation(), full.generation(), "a fold is no write");
        assert_same(&observe(&live), &observe(&full), "folded");
    }

    /// Live writes (layers over the base) answer exactly as full commits
    /// (a base rebuilt each time) after every write: records by id, search
    /// answers and scores, reverse answers; and so does the live database
    /// reopened (its layers made again from the write log), and after its
    /// layers were folded into a new base.
    #[test]
    fn live_writes_answer_as_full_commits() {
        differential(false);
    }

    /// The same, with layers merged by a thread of their own, at moments
    /// the writes do not choose: every answer between is compared.
    #[test]
    fn live_writes_merged_in_background_answer_as_full_commits() {
        differential(true);
    }

    /// Writes that land while a merge is built: what they replaced in the
    /// merged layers stays replaced in the merged one.
    #[test]
    fn writes_during_a_merge_stay_seen() {
        let dir = tempfile::tempdir().unwrap();
        let live = Database::open(dir.path().join("live")).unwrap();
        let full = Database::open(dir.path().join("full")).unwrap();
        import(&live);
        import(&full);
        live.leave_merges();
        // Four layers of one size: a merge is due.
        for s in 0..4 {
            let op = Op { lines: vec![street_line(s, NAMES[s % 6], s % 3, &[1, 2])], deletes: vec![] };
            apply(&live, &op, true);
            apply(&full, &op, false);
        }
        assert_eq!(live.view().unwrap().parts.len(), 5);
        let during = [
            // A street of the merged layers renamed, with another list.
            Op { lines: vec![street_line(1, "Rue Zorglub", 1, &[2, 5])], deletes: vec![] },
            // One deleted, one housenumber of another moved.
            Op { lines: vec![number_line(0, 2, 3)], deletes: vec!["s2".into()] },
        ];
        let merged = live
            .merge_layers(|| {
                for op in &during {
                    apply(&live, op, true);
                    apply(&full, op, false);
                }
            })
            .unwrap();
        assert!(merged);
        let parts = live.view().unwrap().parts.len();
        assert_eq!(parts, 4, "the four merged into one, under the two written meanwhile");
        assert_same(&observe(&live), &observe(&full), "merged over writes made meanwhile");
        let reader = Database::open_read_only(dir.path().join("live")).unwrap();
        assert_same(&observe(&reader), &observe(&full), "read-only");
    }

    /// Writes that land while the layers are folded into a new base stay
    /// over it, and what they replaced in it is masked; the store's base
    /// moves, so that a reopen lays only them over it.
    #[test]
    fn writes_during_a_fold_stay_seen() {
        let dir = tempfile::tempdir().unwrap();
        let live = Database::open(dir.path().join("live")).unwrap();
        let full = Database::open(dir.path().join("full")).unwrap();
        import(&live);
        import(&full);
        live.leave_merges();
        live.set_live_limit(1);
        for s in 0..3 {
            let op = Op { lines: vec![street_line(s, NAMES[s % 6], s % 3, &[1, 2])], deletes: vec![] };
            apply(&live, &op, true);
            apply(&full, &op, false);
        }
        let base = live.view().unwrap().base().number;
        let during = [
            Op { lines: vec![street_line(1, "Rue Zorglub", 1, &[2, 5])], deletes: vec![] },
            Op { lines: vec![number_line(0, 2, 3)], deletes: vec!["s2".into()] },
            Op { lines: vec![street_line(9, NAMES[3], 0, &[7])], deletes: vec!["38185".into()] },
        ];
        let folded = live
            .fold_layers_apart(|| {
                for op in &during {
                    apply(&live, op, true);
                    apply(&full, op, false);
                }
            })
            .unwrap();
        assert!(folded);
        let view = live.view().unwrap();
        assert!(view.base().number > base, "a new base");
        assert_eq!(view.parts.len(), 4, "the new base, under the three written meanwhile");
        assert_same(&observe(&live), &observe(&full), "folded over writes made meanwhile");
        let reader = Database::open_read_only(dir.path().join("live")).unwrap();
        assert_same(&observe(&reader), &observe(&full), "read-only");
        drop(reader);
        drop(view);
        drop(live);
        let live = Database::open(dir.path().join("live")).unwrap();
        assert_eq!(live.view().unwrap().parts.len(), 2, "reopened: the new base and the log after it");
        assert_same(&observe(&live), &observe(&full), "reopened");
    }

    /// A writer that closes leaves its layers, with `VIEW`, for readers.
    #[test]
    fn read_only_openers_see_the_layers_of_a_closed_writer() {
        let dir = tempfile::tempdir().unwrap();
        let live = Database::open(dir.path()).unwrap();
        import(&live);
        live.write_live(|b| {
            let body = street_line(11, NAMES[4], 2, &[3]);
            b.import(body.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default())
        })
        .unwrap();
        let seen = observe(&live);
        drop(live);
        let reader = Database::open_read_only(dir.path()).expect("read-only open after the writer closed");
        assert_same(&observe(&reader), &seen, "read-only after close");
    }

    fn differential(background: bool) {
        let dir = tempfile::tempdir().unwrap();
        let live = std::sync::Arc::new(Database::open(dir.path().join("live")).unwrap());
        let full = Database::open(dir.path().join("full")).unwrap();
        import(&live);
        import(&full);
        if background {
            live.merge_in_background();
            // Folds too, in the background, between the writes.
            live.set_live_limit(40);
        }
        assert_same(&observe(&live), &observe(&full), "after the import");
        let first_base = live.view().unwrap().base().number;
        let mut r = Lcg(std::env::var("SEED").map_or(7, |s| s.parse().unwrap()));
        let mut most = 0;
        for step in 0..std::env::var("STEPS").map_or(60, |s| s.parse().unwrap()) {
            let op = random_op(&mut r);
            apply(&live, &op, true);
            apply(&full, &op, false);
            let what = format!("step {step}: {:?} {:?}", op.lines, op.deletes);
            assert_same(&observe(&live), &observe(&full), &what);
            let layers = live.view().unwrap().parts.len() - 1;
            most = most.max(layers);
            if !background {
                assert!(layers <= super::MAX_LAYERS, "{what}");
            }
        }
        if background {
            // The merges catch up once the writes stop.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while live.view().unwrap().merge_due() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(!live.view().unwrap().merge_due(), "merged in the background");
            assert!(most >= 4, "layers piled up to be merged: {most}");
            assert!(live.view().unwrap().base().number > first_base, "folded in the background");
            assert_same(&observe(&live), &observe(&full), "merged");
            // A layer for what follows, which no fold takes.
            live.set_live_limit(u64::MAX);
            let op = Op { lines: vec![street_line(11, NAMES[4], 2, &[3])], deletes: vec![] };
            apply(&live, &op, true);
            apply(&full, &op, false);
        }
        assert!(live.view().unwrap().parts.len() > 1, "the live writes made layers");
        let seen = observe(&live);
        // A read-only opener beside the writer sees what it serves.
        let reader = Database::open_read_only(dir.path().join("live")).unwrap();
        assert_eq!(reader.generation(), live.generation());
        assert_same(&observe(&reader), &seen, "read-only");
        drop(reader);
        // The threads let go of the database, which then closes.
        live.stop_background();
        drop(std::sync::Arc::try_unwrap(live).ok().expect("no thread holds the database"));
        let live = Database::open(dir.path().join("live")).unwrap();
        assert_eq!(live.view().unwrap().parts.len(), 2, "reopened: the base and one layer of the log");
        assert_same(&observe(&live), &seen, "reopened");
        // Past the limit, a live write folds the layers into a new base.
        live.set_live_limit(1);
        let op = Op { lines: vec![street_line(0, NAMES[1], 2, &[1, 4])], deletes: vec![] };
        apply(&live, &op, true);
        apply(&full, &op, false);
        assert_eq!(live.view().unwrap().parts.len(), 1, "folded");
        assert_same(&observe(&live), &observe(&full), "folded");
        drop(live);
        let live = Database::open(dir.path().join("live")).unwrap();
        assert_same(&observe(&live), &observe(&full), "folded, reopened");
    }
}
