//! The full-text layer: a tantivy index over records, fed with tokens from
//! [`analysis`] so that documents and queries go through the same chain.
//!
//! Fields: `key` (the store key, to map hits back to records), `text`
//! (words), `prefix` (edge n-grams of the words, for the last word typed),
//! `cell` (coarse grid cells, to favour results near a given point) and one
//! keyword field per filter.

pub mod analysis;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::indexer::{NoMergePolicy, UserOperation};
use tantivy::query::{BooleanQuery, Occur, Query, Scorer, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING};
use tantivy::DocSet;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::live::Mask;

mod unsynced;
use crate::record::Point;

/// Bytes of candidate lists of costly queries kept per generation (see
/// `TextIndex::common`): at 26M addresses nearly every query walks more
/// than `MEMO_MIN_POSTINGS`, and 4,096 lists were evicted before the word
/// sets typed most (a street type and its articles) came back.
const COMMON_MEMO_BYTES: u64 = 16 << 20;
/// Fewest candidates a costly list is made for: the search plan asks for
/// 10, then for 20 when none of the 10 matches the query exactly.
const MEMO_K: usize = 20;
/// Best scores of terms kept per generation (`TextIndex::max_score`).
const MAX_SCORE_MEMO: usize = 4096;
/// Misspelt words whose expansions are kept per generation (at most 12
/// terms each: at most ~6 MB when full).
const TYPO_MEMO: usize = 8192;

/// A candidate fetch that walks more postings than this is kept for the
/// next query with the same words: it costs a few hundred microseconds.
const MEMO_MIN_POSTINGS: u64 = 4096;

/// The rare-first plan ([`TextIndex::rare_first`]) scores every document
/// of the rare words, looking each up in the common words' postings:
/// beyond this many documents ("avenue", 180,877 of 1,973,481 at 26M
/// addresses), block-max WAND over the union skips more than it walks.
const RARE_FIRST_MAX_DOCS: u64 = 4096;

/// Documents of its rarest word scored to seed a union ([`TextIndex::seed`]):
/// the first in index order, the shortest, which score highest. At 26M
/// addresses, with 64 the seed cost 17 µs and the union after it 92 µs
/// (137 unseeded); with all of them, when at most 2,048, 68 and 69 µs.
const SEED_DOCS: usize = 64;

/// Longest word given typo tolerance.
const MAX_TYPO_CHARS: usize = 40;

/// Most terms a misspelt word expands to, the most frequent kept.
const MAX_EXPANSIONS: usize = 12;

/// A Levenshtein automaton walking a term dictionary.
struct Lev<'a>(&'a DFA);

impl tantivy_fst::Automaton for Lev<'_> {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, s: &u32) -> bool {
        matches!(self.0.distance(*s), Distance::Exact(_))
    }

    fn can_match(&self, s: &u32) -> bool {
        *s != SINK_STATE
    }

    fn accept(&self, s: &u32, b: u8) -> u32 {
        self.0.transition(*s, b)
    }
}

/// Building a builder costs milliseconds (tens for two edits): once each.
fn lev_builder(distance: u8) -> &'static LevenshteinAutomatonBuilder {
    static B: [OnceLock<LevenshteinAutomatonBuilder>; 2] = [OnceLock::new(), OnceLock::new()];
    let i = usize::from(distance.clamp(1, 2) - 1);
    B[i].get_or_init(|| LevenshteinAutomatonBuilder::new(i as u8 + 1, true))
}

/// Grid of the `cell` field, in degrees: about 11 km.
const CELL_DEG: f64 = 0.1;
const WRITER_BUDGET: usize = 128 * 1024 * 1024;
/// The most a live layer's index starts with ([`LayerTextWriter`]).
const SMALL_WRITER_BUDGET: usize = 15 * 1024 * 1024;

#[derive(Clone)]
struct Fields {
    key: Field,
    text: Field,
    prefix: Field,
    cell: Field,
    /// See [`rank`]: documents are sorted by it in every segment.
    rank: Field,
    filters: Vec<(String, Field)>,
}

/// A document's place in the index, and among documents of equal text
/// score: fewer words first, then fewer prefixes, then the record stored
/// first (the lower key). Every segment of the index keeps its documents
/// in this order (tantivy's index sorting), so that block-max WAND, which
/// keeps the first of equal scores it meets, keeps these: candidates then
/// depend on the records, not on how the index was built (threads, merges,
/// a primary's commits against its replica's single build).
///
/// Short documents first because they score highest on any word (BM25
/// divides by the length): a union meets its best documents early, its
/// threshold rises early, and block-max WAND skips more of the rest. At
/// 26M addresses, against key order: -9 % engine time on full-address
/// searches, -19 % on autocomplete as typed; at 1M no change. (Ordering
/// by importance first scattered each town's documents over the index, and
/// block-max WAND skipped less: +9 % instructions on searches at 1M.)
///
/// Keys up to 2^50 are packed below the lengths (a store would need 2^34
/// blocks to pass that); a larger one orders after every packed rank,
/// by key.
fn rank(key: u64, words: usize, prefixes: usize) -> u64 {
    const KEY_BITS: u32 = 50;
    if key >> KEY_BITS != 0 {
        return (1 << 63) | key;
    }
    let words = words.min(31) as u64;
    let prefixes = prefixes.min(255) as u64;
    (words << (KEY_BITS + 8)) | (prefixes << KEY_BITS) | key
}

fn schema(filters: &[&str]) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer("raw").set_index_option(IndexRecordOption::WithFreqs),
    );
    let key = b.add_u64_field("key", INDEXED | FAST);
    let text = b.add_text_field("text", words.clone());
    let prefix = b.add_text_field("prefix", words);
    let cell = b.add_text_field("cell", STRING);
    let rank = b.add_u64_field("rank", FAST);
    let filters = filters.iter().map(|f| (f.to_string(), b.add_text_field(&format!("f_{f}"), STRING))).collect();
    (b.build(), Fields { key, text, prefix, cell, rank, filters })
}

/// Whether a live document of `seg` holds `t`. A segment that cannot be
/// read is taken to hold it, as in [`term_info_is_live`]: the count then
/// stays tantivy's, as before deletions were looked at.
fn term_is_live(seg: &tantivy::SegmentReader, t: &Term) -> bool {
    let Ok(inverted) = seg.inverted_index(t.field()) else { return true };
    match inverted.get_term_info(t) {
        Ok(Some(info)) => term_info_is_live(seg, &inverted, &info),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Whether a live document of `seg` holds the term of `info`: at once when
/// the segment has no deletions, or more documents hold it than were
/// deleted; otherwise by its postings, which are then no longer than the
/// segment's deletions.
fn term_info_is_live(
    seg: &tantivy::SegmentReader,
    inverted: &tantivy::InvertedIndexReader,
    info: &tantivy::postings::TermInfo,
) -> bool {
    let Some(alive) = seg.alive_bitset() else { return info.doc_freq > 0 };
    if info.doc_freq > seg.num_deleted_docs() {
        return true;
    }
    let Ok(mut postings) = inverted.read_postings_from_terminfo(info, IndexRecordOption::Basic) else { return true };
    let mut doc = postings.doc();
    while doc != tantivy::TERMINATED {
        if alive.is_alive(doc) {
            return true;
        }
        doc = postings.advance();
    }
    false
}

/// The grid cell of a point, as indexed and queried.
fn cell_term(lat: f64, lon: f64) -> String {
    format!("{}:{}", (lat / CELL_DEG).floor() as i64, (lon / CELL_DEG).floor() as i64)
}

/// What the full-text layer is asked for one query.
#[derive(Debug, Default, Clone)]
pub struct TextQuery<'a> {
    /// Whole words, any order.
    pub words: Vec<Word>,
    /// The last word, matched as a prefix (autocomplete).
    pub prefix: Option<Word>,
    /// Every listed field must match one of its values.
    pub filters: Vec<(String, Vec<String>)>,
    /// Favour documents near this point.
    pub near: Option<Point>,
    /// Slots that are no candidates (records a live write replaced, see
    /// [`crate::live`]): skipped as the best k are collected, so that k
    /// others take their places.
    pub skip: Option<&'a Mask>,
    /// Documents the words' counts are of ([`Counts::num_docs`]): which
    /// words are common is decided on them, not on this index alone.
    pub num_docs: u64,
}

/// A query word with what the index knows of it, looked up once per query
/// (see [`TextIndex::word`]): the query planner and every candidate fetch
/// of the query read it from here.
#[derive(Debug, Default, Clone)]
pub struct Word {
    pub text: String,
    /// Documents with the word (for a prefix: with a word starting with it).
    pub freq: u64,
    /// For a prefix: documents with it as a whole word.
    pub whole: u64,
    /// For a word the index lacks: its typo expansions.
    typos: Expansions,
    /// Another reading of the word ("rue" of "r"): a document with either
    /// matches. `freq` counts the documents of both.
    alternative: Option<Term>,
}

/// A word's typo expansions: terms and their document counts, shared
/// between the memo and the queries that use them.
type Expansions = std::sync::Arc<Vec<(Term, u64)>>;

/// A memoised candidate list (see [`TextIndex::common`]).
type Candidates = std::sync::Arc<Memoised>;

/// The best `k` documents of a query's terms, best first (fewer when
/// there are no more): the first k' of them are its best k' for any k' up
/// to k, since the order of scores and ranks is total.
struct Memoised {
    k: usize,
    list: Vec<(f32, u32)>,
}

/// Weighs a memoised candidate list by the bytes it holds.
#[derive(Clone, Copy)]
struct MemoBytes;

impl quick_cache::Weighter<Vec<u8>, Candidates> for MemoBytes {
    fn weight(&self, key: &Vec<u8>, list: &Candidates) -> u64 {
        // The allocations' headers and the cache's own entry, roughly.
        (key.len() + list.list.len() * std::mem::size_of::<(f32, u32)>() + 96) as u64
    }
}

/// One tantivy index of a generation, opened for reading.
pub struct TextIndex {
    /// The index's one state: it never changes once opened, so the
    /// searcher is taken once, not at each lookup.
    searcher: tantivy::Searcher,
    /// Each segment's inverted index of the `text` and `prefix` fields,
    /// opened once: a plan over many parts (live layers) counts each word
    /// in each of them.
    words: Vec<[std::sync::Arc<tantivy::InvertedIndexReader>; 2]>,
    fields: Fields,
    /// The document slot (see [`crate::docs`]) of each document of each
    /// segment, `u32::MAX` for none, made at open: a candidate is then one
    /// array read away from its record, not a key column read and a search.
    slots: Vec<std::sync::Arc<[DocRef]>>,
    /// Candidates of costly queries, by their terms: those of common words
    /// only ("12 rue de la": WAND has nothing to skip with) or with common
    /// words beside a rare one of many documents ("12 avenue de la"). Few
    /// word sets are that costly, they come back often as people type, and
    /// the housenumber is not part of them.
    common: quick_cache::sync::Cache<Vec<u8>, Candidates, MemoBytes>,
    /// See [`TextIndex::max_score`].
    max_scores: quick_cache::sync::Cache<Vec<u8>, f32>,
    /// Typo expansions by misspelt word (and whether it is a prefix): the
    /// automaton's walk of the term dictionary is a quarter of a misspelt
    /// query's cost, and misspellings of the same street and city names
    /// come back.
    typos: quick_cache::sync::Cache<(String, bool), Expansions>,
}

/// The text indexes a query plan reads (a view's base and layers, see
/// [`crate::live`]), for what it counts: a word's documents in all of
/// them, so that each index is queried with the words a single index of
/// all the records would have chosen (which are common, which are
/// misspelt and expanded how).
pub struct Counts<'a> {
    /// Each index, with the slots of it that are not counted.
    indexes: Vec<(&'a TextIndex, Option<&'a Mask>)>,
}

impl<'a> Counts<'a> {
    pub fn new(indexes: Vec<(&'a TextIndex, Option<&'a Mask>)>) -> Counts<'a> {
        debug_assert!(!indexes.is_empty(), "a plan reads one index at least");
        Counts { indexes }
    }

    /// The one index, when there is one and nothing of it is masked: its
    /// own counts are the plan's.
    fn single(&self) -> Option<&'a TextIndex> {
        match self.indexes.as_slice() {
            [(one, None)] => Some(*one),
            _ => None,
        }
    }

    /// Documents, masked ones left out (as tantivy leaves out deleted ones).
    pub fn num_docs(&self) -> u64 {
        self.indexes.iter().map(|(i, m)| i.num_docs().saturating_sub(m.map_or(0, |m| m.texts() as u64))).sum()
    }

    /// The documents of `t` in every index; 0 for an index where only
    /// masked documents hold it, as for one where only deleted ones do
    /// (see [`TextIndex::live_freq`]).
    fn freq(&self, t: impl Fn(&TextIndex) -> Term) -> u64 {
        let mut sum = 0;
        for (index, mask) in &self.indexes {
            let term = t(index);
            let n = index.live_freq(&term);
            if n > 0 && mask.is_none_or(|m| index.unmasked(&term, m)) {
                sum += n;
            }
        }
        sum
    }

    fn word_freq(&self, word: &str) -> u64 {
        self.freq(|i| Term::from_field_text(i.fields.text, word))
    }

    fn prefix_freq(&self, prefix: &str) -> u64 {
        self.freq(|i| Term::from_field_text(i.fields.prefix, analysis::indexed_prefix(prefix)))
    }

    /// [`TextIndex::word`] over all the indexes: the typo expansions of a
    /// word none has are the most frequent of every index's, their counts
    /// summed.
    pub fn word(&self, text: &str, prefix: bool) -> Result<Word> {
        if let Some(one) = self.single() {
            return one.word(text, prefix);
        }
        let whole = self.word_freq(text);
        let freq = if prefix { self.prefix_freq(text) } else { whole };
        if freq > 0 {
            return Ok(Word {
                text: text.to_owned(),
                freq,
                whole,
                typos: std::sync::Arc::default(),
                alternative: None,
            });
        }
        let mut found: HashMap<Term, u64> = HashMap::new();
        for (i, mask) in &self.indexes {
            for (t, n) in i.typos_of(text, prefix)?.iter() {
                // A term only masked records hold is no correction.
                if mask.is_none_or(|m| i.unmasked(t, m)) {
                    *found.entry(t.clone()).or_default() += n;
                }
            }
        }
        let mut found: Vec<(Term, u64)> = found.into_iter().collect();
        found.sort_unstable_by(|a, b| {
            b.1.cmp(&a.1).then_with(|| a.0.serialized_value_bytes().cmp(b.0.serialized_value_bytes()))
        });
        found.truncate(MAX_EXPANSIONS);
        Ok(Word { text: text.to_owned(), freq, whole, typos: std::sync::Arc::new(found), alternative: None })
    }

    /// [`TextIndex::prefix_or`] over all the indexes.
    pub fn prefix_or(&self, text: &str, other: &str) -> Result<Word> {
        if let Some(one) = self.single() {
            return one.prefix_or(text, other);
        }
        let other_freq = self.prefix_freq(other);
        if other_freq == 0 || (other.starts_with(text) && text.chars().count() >= analysis::MIN_PREFIX) {
            return self.word(text, true);
        }
        let freq = self.prefix_freq(text) + other_freq;
        let f = &self.indexes[0].0.fields;
        let alternative = Some(Term::from_field_text(f.prefix, analysis::indexed_prefix(other)));
        Ok(Word { text: text.to_owned(), freq, whole: 0, typos: std::sync::Arc::default(), alternative })
    }

    /// [`TextIndex::word_or`] over all the indexes.
    pub fn word_or(&self, text: &str, other: &str) -> Result<Word> {
        if let Some(one) = self.single() {
            return one.word_or(text, other);
        }
        let other_freq = self.word_freq(other);
        if other_freq == 0 {
            return self.word(text, false);
        }
        let freq = self.word_freq(text) + other_freq;
        let alternative = Some(Term::from_field_text(self.indexes[0].0.fields.text, other));
        Ok(Word { text: text.to_owned(), freq, whole: freq, typos: std::sync::Arc::default(), alternative })
    }
}

/// The record behind a document of the index, and its [`rank`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct DocRef {
    slot: u32,
    rank: u64,
}

/// Maps a tantivy error on `path` to ours.
fn text_err(e: tantivy::TantivyError) -> Error {
    Error::Text(e)
}

/// `t` as one optional clause of a boolean query.
fn should(t: Term, option: IndexRecordOption) -> (Occur, Box<dyn Query>) {
    (Occur::Should, Box::new(TermQuery::new(t, option)))
}

/// Appends `t` to a memo key, unambiguously (field, value, end mark).
fn push_term(key: &mut Vec<u8>, t: &Term) {
    key.extend_from_slice(&t.field().field_id().to_le_bytes());
    key.extend_from_slice(t.serialized_value_bytes());
    key.push(0xff);
}

impl TextIndex {
    /// Opens the index in `dir`; `slot_of` maps a store key to the slot of
    /// its record in this generation's documents.
    pub fn open(dir: &Path, filters: &[&str], slot_of: &dyn Fn(u64) -> Option<u32>) -> Result<TextIndex> {
        TextIndex::open_with(dir, filters, slot_of, &|_, _| None)
    }

    /// [`TextIndex::open`], taking the slots of a segment's documents from
    /// `saved` (segment id, documents) when it has them, as
    /// [`TextIndex::slot_table`] made them: a generation opens without a
    /// lookup of every document's key in the documents file (at 26M
    /// addresses, a read of its whole key table).
    pub fn open_with(
        dir: &Path,
        filters: &[&str],
        slot_of: &dyn Fn(u64) -> Option<u32>,
        saved: &dyn Fn(&str, u32) -> Option<Vec<u32>>,
    ) -> Result<TextIndex> {
        let (_, fields) = schema(filters);
        let index = Index::open_in_dir(dir).map_err(text_err)?;
        let reader: IndexReader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(text_err)?;
        let mut slots = Vec::new();
        for segment in reader.searcher().segment_readers() {
            let ranks: Column<u64> = segment.fast_fields().u64("rank").map_err(text_err)?;
            let max_doc = segment.max_doc();
            let of = match saved(&segment.segment_id().uuid_string(), max_doc) {
                Some(s) if s.len() == max_doc as usize => s,
                _ => Self::segment_slots(segment, slot_of)?,
            };
            let of_doc: std::sync::Arc<[DocRef]> = (0..max_doc)
                .zip(of)
                .map(|(doc, slot)| match slot {
                    u32::MAX => DocRef { slot, rank: u64::MAX },
                    _ => DocRef { slot, rank: ranks.first(doc).unwrap_or(u64::MAX) },
                })
                .collect();
            slots.push(of_doc);
        }
        let searcher = reader.searcher();
        let words = searcher
            .segment_readers()
            .iter()
            .map(|seg| Ok([seg.inverted_index(fields.text)?, seg.inverted_index(fields.prefix)?]))
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(text_err)?;
        Ok(TextIndex {
            searcher,
            words,
            fields,
            slots,
            common: quick_cache::sync::Cache::with_weighter(
                (COMMON_MEMO_BYTES / 512) as usize,
                COMMON_MEMO_BYTES,
                MemoBytes,
            ),
            max_scores: quick_cache::sync::Cache::new(MAX_SCORE_MEMO),
            typos: quick_cache::sync::Cache::new(TYPO_MEMO),
        })
    }

    /// The slot of each document of a segment (`u32::MAX`: none).
    fn segment_slots(segment: &tantivy::SegmentReader, slot_of: &dyn Fn(u64) -> Option<u32>) -> Result<Vec<u32>> {
        let keys: Column<u64> = segment.fast_fields().u64("key").map_err(text_err)?;
        Ok((0..segment.max_doc()).map(|doc| keys.first(doc).and_then(slot_of).unwrap_or(u32::MAX)).collect())
    }

    /// The slots of every segment's documents, by segment id: what
    /// [`TextIndex::open_with`] takes.
    pub fn slot_table(&self) -> Vec<(String, Vec<u32>)> {
        let searcher = &self.searcher;
        searcher
            .segment_readers()
            .iter()
            .zip(&self.slots)
            .map(|(s, refs)| (s.segment_id().uuid_string(), refs.iter().map(|r| r.slot).collect()))
            .collect()
    }

    pub fn num_docs(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// A query word, whole or (`prefix`) as the start of a word, with its
    /// document counts and, when the index lacks it, its typo expansions.
    pub fn word(&self, text: &str, prefix: bool) -> Result<Word> {
        let whole = self.word_freq(text);
        let freq = if prefix { self.prefix_freq(text) } else { whole };
        let typos = if freq > 0 { std::sync::Arc::default() } else { self.typos_of(text, prefix)? };
        Ok(Word { text: text.to_owned(), freq, whole, typos, alternative: None })
    }

    /// [`TextIndex::typo_terms`], kept.
    fn typos_of(&self, text: &str, prefix: bool) -> Result<Expansions> {
        let key = (text.to_owned(), prefix);
        if let Some(t) = self.typos.get(&key) {
            return Ok(t);
        }
        let t = std::sync::Arc::new(self.typo_terms(text, prefix)?);
        self.typos.insert(key, t.clone());
        Ok(t)
    }

    /// The last word typed, as a prefix, that may also be read as `other`
    /// ("r", typed on the way to "rue ..."): documents with a word starting
    /// with either match, as one word.
    pub fn prefix_or(&self, text: &str, other: &str) -> Result<Word> {
        let other_freq = self.prefix_freq(other);
        // A prefix of the other reading already finds it, once it is long
        // enough to be indexed.
        if other_freq == 0 || (other.starts_with(text) && text.chars().count() >= analysis::MIN_PREFIX) {
            return self.word(text, true);
        }
        let freq = self.prefix_freq(text) + other_freq;
        let alternative = Some(Term::from_field_text(self.fields.prefix, analysis::indexed_prefix(other)));
        // Never taken for a whole word: both are looked for as prefixes.
        Ok(Word { text: text.to_owned(), freq, whole: 0, typos: std::sync::Arc::default(), alternative })
    }

    /// A whole query word that may also be read as `other` ("r" as "rue"):
    /// matched by documents with either, as one word.
    pub fn word_or(&self, text: &str, other: &str) -> Result<Word> {
        let other_freq = self.word_freq(other);
        if other_freq == 0 {
            return self.word(text, false);
        }
        let own = self.word_freq(text);
        let freq = own + other_freq;
        let alternative = Some(Term::from_field_text(self.fields.text, other));
        Ok(Word { text: text.to_owned(), freq, whole: freq, typos: std::sync::Arc::default(), alternative })
    }

    /// Number of indexed documents containing this word.
    pub fn word_freq(&self, word: &str) -> u64 {
        self.live_freq(&Term::from_field_text(self.fields.text, word))
    }

    /// Number of indexed documents with a word starting with `prefix`.
    pub fn prefix_freq(&self, prefix: &str) -> u64 {
        self.live_freq(&Term::from_field_text(self.fields.prefix, analysis::indexed_prefix(prefix)))
    }

    /// The documents of `t` in all segments, deleted ones included (as
    /// [`tantivy::Searcher::doc_freq`] counts), through the inverted
    /// indexes opened once for the word fields.
    fn doc_freq(&self, t: &Term) -> u64 {
        let which = if t.field() == self.fields.text {
            0
        } else if t.field() == self.fields.prefix {
            1
        } else {
            return self.searcher.doc_freq(t).unwrap_or(0);
        };
        self.words.iter().map(|w| u64::from(w[which].doc_freq(t).unwrap_or(0))).sum()
    }

    /// The term's document count as tantivy keeps it (deleted documents
    /// included, as its scores count them), or 0 when no live document has
    /// it: a word left only by replaced or deleted records is not in the
    /// index, and is looked for with typos like any missing word.
    fn live_freq(&self, t: &Term) -> u64 {
        let searcher = &self.searcher;
        let freq = self.doc_freq(t);
        if freq == 0 {
            return 0;
        }
        let segments = searcher.segment_readers();
        let live =
            segments.iter().all(|seg| seg.num_deleted_docs() == 0) || segments.iter().any(|seg| term_is_live(seg, t));
        if live {
            freq
        } else {
            0
        }
    }

    /// Whether a live document whose slot `mask` leaves out holds `t`: at
    /// once when more documents hold it than are masked, otherwise by its
    /// postings.
    fn unmasked(&self, t: &Term, mask: &Mask) -> bool {
        let searcher = &self.searcher;
        if self.doc_freq(t) > mask.len() as u64 {
            return true;
        }
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let Ok(inverted) = seg.inverted_index(t.field()) else { return true };
            let Ok(Some(mut postings)) = inverted.read_postings(t, IndexRecordOption::Basic) else { continue };
            let alive = seg.alive_bitset();
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc))
                    && self.slot(ord as u32, doc).is_some_and(|s| !mask.contains(s))
                {
                    return true;
                }
                doc = postings.advance();
            }
        }
        false
    }

    /// The terms of `field` within `distance` edits of `word` (or of a
    /// prefix of them, with `prefix`), with their document counts: at most
    /// [`MAX_EXPANSIONS`] of them, the most frequent first.
    fn expand(&self, field: Field, word: &str, distance: u8, prefix: bool) -> Result<Vec<(Term, u64)>> {
        let b = lev_builder(distance);
        let dfa = if prefix { b.build_prefix_dfa(word) } else { b.build_dfa(word) };
        let mut found: HashMap<Vec<u8>, u64> = HashMap::new();
        for seg in self.searcher.segment_readers() {
            let inverted = seg.inverted_index(field).map_err(text_err)?;
            let mut terms = inverted.terms().search(Lev(&dfa)).into_stream().map_err(|e| Error::Text(e.into()))?;
            while terms.advance() {
                let info = terms.value();
                if !term_info_is_live(seg, &inverted, info) {
                    continue;
                }
                *found.entry(terms.key().to_vec()).or_default() += u64::from(info.doc_freq);
            }
        }
        let mut found: Vec<(Vec<u8>, u64)> = found.into_iter().collect();
        found.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        found.truncate(MAX_EXPANSIONS);
        Ok(found.into_iter().map(|(t, n)| (Term::from_field_bytes(field, &t), n)).collect())
    }

    /// A word not in the index, as the words one edit from it (two for
    /// words of 8 letters or more, when one finds none); none for words of
    /// 3 letters or fewer, where one edit makes another common word, nor
    /// for words longer than any street name's, whose automaton would cost
    /// more than it could find.
    fn typo_terms(&self, word: &str, prefix: bool) -> Result<Vec<(Term, u64)>> {
        let n = word.chars().count();
        if n <= 3 || n > MAX_TYPO_CHARS {
            return Ok(Vec::new());
        }
        let terms = self.expand(self.fields.text, word, 1, prefix)?;
        if terms.is_empty() && n >= 8 && !prefix {
            return self.expand(self.fields.text, word, 2, false);
        }
        Ok(terms)
    }

    /// The document slots of the best `k` candidates, best first, with their
    /// full-text score: a union of the query's terms, which tantivy runs
    /// with block-max WAND. Words missing from the index are matched with
    /// typo tolerance (see [`TextIndex::typo_terms`]).
    pub fn candidates(&self, q: &TextQuery<'_>, k: usize) -> Result<Vec<(f32, u32)>> {
        let f = &self.fields;
        // Words in a tenth of the documents ("rue", "de", a big city) are
        // what a union pays most for: block-max WAND skips their documents
        // only once k documents score above anything they can give.
        let common = q.num_docs / 10;
        let (mut rare, mut common_terms) = (Vec::new(), Vec::new());
        let mut common_docs = 0;
        // Rare words found as typed; typo expansions do not count, since a
        // wrong correction picks poorly.
        let mut found = 0;
        let words = q.words.iter().map(|w| (w, Term::from_field_text(f.text, &w.text)));
        // A last word that only ever occurs whole ("... 13010") is looked
        // for as the word it is: in the prefix field it shares its weight
        // with every n-gram of the document, and a record with longer
        // labels (two city names) then falls behind dozens of records that
        // lack the word. Same documents either way.
        let prefix = q.prefix.iter().map(|p| {
            let term = if p.freq > 0 && p.whole == p.freq {
                Term::from_field_text(f.text, &p.text)
            } else {
                Term::from_field_text(f.prefix, analysis::indexed_prefix(&p.text))
            };
            (p, term)
        });
        // Terms as typed and their document counts: the rarest seeds the
        // union (another reading of a word has no count of its own).
        let mut counted: Vec<(Term, u64, bool)> = Vec::new();
        for (w, term) in words.chain(prefix) {
            if w.freq > 0 {
                counted.push((term.clone(), w.freq, w.freq > common));
            }
            if w.freq > common {
                common_terms.push(term);
                common_terms.extend(w.alternative.clone());
                common_docs += w.freq;
            } else if w.freq > 0 {
                found += 1;
                rare.push((term, w.freq));
                rare.extend(w.alternative.clone().map(|t| (t, 0)));
            } else {
                rare.extend(w.typos.iter().cloned());
            }
        }
        // The common words are left out when the rare ones pick well without
        // them: two or more found as typed, or all their documents fit in k
        // (then every one of them is a candidate anyway, and WAND would have
        // nothing to skip the common words' documents with).
        let rare_docs: u64 = rare.iter().map(|(_, n)| n).sum();
        let rare: Vec<Term> = rare.into_iter().map(|(t, _)| t).collect();
        let without_common = |k: usize| !(rare.is_empty() || (found < 2 && rare_docs > k as u64));
        if without_common(k) {
            common_terms.clear();
            common_docs = 0;
            counted.retain(|(_, _, common)| !common);
        }
        if rare.is_empty() && common_terms.is_empty() {
            return Ok(Vec::new());
        }
        let costly = rare.is_empty() || rare_docs + common_docs > MEMO_MIN_POSTINGS;
        let memo = costly && q.near.is_none();
        // A memoised list is made for at least MEMO_K candidates, which
        // serves the wider fetch that often follows the first (see
        // `Memoised`), when the same words would be looked for.
        let asked = k;
        let k = if memo && without_common(k) == without_common(k.max(MEMO_K)) { k.max(MEMO_K) } else { k };
        let memo_key = memo.then(|| {
            let mut key = Vec::new();
            for t in rare.iter().chain(&common_terms) {
                push_term(&mut key, t);
            }
            for (name, values) in &q.filters {
                key.extend_from_slice(name.as_bytes());
                for v in values {
                    key.push(0xfe);
                    key.extend_from_slice(v.as_bytes());
                }
                key.push(0xff);
            }
            key
        });
        if let Some(hit) = memo_key.as_ref().and_then(|key| self.common.get(key)) {
            if hit.k >= asked {
                // A list kept before more records were replaced: usable
                // while none of the first `asked` is (masks only grow
                // until the next base, which has an index of its own).
                let first = hit.list.iter().take(asked);
                if first.clone().all(|(_, s)| q.skip.is_none_or(|m| !m.contains(*s))) {
                    return Ok(first.copied().collect());
                }
            }
        }
        let cells: Vec<Term> = match q.near {
            None => Vec::new(),
            Some(p) => (-1..=1)
                .flat_map(|di| (-1..=1).map(move |dj| (di, dj)))
                .map(|(di, dj)| {
                    let cell = cell_term(p.lat + f64::from(di) * CELL_DEG, p.lon + f64::from(dj) * CELL_DEG);
                    Term::from_field_text(f.cell, &cell)
                })
                .collect(),
        };
        let searcher = &self.searcher;
        let mut seed = f32::MIN;
        if !rare.is_empty() && !common_terms.is_empty() && rare_docs <= common.min(RARE_FIRST_MAX_DOCS) {
            match self.rare_first(searcher, &rare, &common_terms, &cells, &q.filters, k, q.skip)? {
                Ok(top) => return Ok(self.memoised(memo_key, k, top, asked)),
                Err(s) => seed = s,
            }
        }
        let rarest = counted.iter().min_by_key(|(_, n, _)| *n).map(|(t, _, _)| t);
        if let (f32::MIN, Some(term)) = (seed, rarest) {
            let mut others: Vec<Term> = rare.iter().chain(&common_terms).cloned().collect();
            if let Some(i) = others.iter().position(|t| t == term) {
                others.remove(i);
                seed = self.seed(searcher, term, &others, &cells, &q.filters, k, q.skip)?;
            }
        }
        let top = self.union(searcher, &[&rare, &common_terms], &cells, &q.filters, k, seed, q.skip)?;
        Ok(self.memoised(memo_key, k, top, asked))
    }

    /// The first `asked` of `top` (the best `k`), `top` kept under `key`
    /// when there is one.
    fn memoised(&self, key: Option<Vec<u8>>, k: usize, mut top: Vec<(f32, u32)>, asked: usize) -> Vec<(f32, u32)> {
        if let Some(key) = key {
            self.common.insert(key, std::sync::Arc::new(Memoised { k, list: top.clone() }));
        }
        top.truncate(asked);
        top
    }

    /// The slots of the documents whose filter field `name` holds `value`
    /// ("type", "municipality"), in index order.
    pub fn slots_where(&self, name: &str, value: &str) -> Result<Vec<u32>> {
        let field = self.filter_field(name)?;
        let term = Term::from_field_text(field, value);
        let mut out = Vec::new();
        let searcher = &self.searcher;
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let index = segment.inverted_index(field).map_err(text_err)?;
            let Some(mut postings) =
                index.read_postings(&term, IndexRecordOption::Basic).map_err(|e| text_err(e.into()))?
            else {
                continue;
            };
            let alive = segment.alive_bitset();
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    out.extend(self.slot(ord as u32, doc));
                }
                doc = postings.advance();
            }
        }
        Ok(out)
    }

    /// The slot of the record behind a document, if it has one.
    fn slot(&self, segment_ord: u32, doc: tantivy::DocId) -> Option<u32> {
        self.doc_ref(segment_ord, doc).map(|d| d.slot)
    }

    fn doc_ref(&self, segment_ord: u32, doc: tantivy::DocId) -> Option<DocRef> {
        match self.slots.get(segment_ord as usize).and_then(|s| s.get(doc as usize)) {
            Some(&d) if d.slot != u32::MAX => Some(d),
            _ => None,
        }
    }

    /// The keyword field of filter `name`.
    fn filter_field(&self, name: &str) -> Result<Field> {
        match self.fields.filters.iter().find(|(n, _)| n == name) {
            Some((_, field)) => Ok(*field),
            None => Err(Error::InvalidQuery(format!("unknown filter {name}"))),
        }
    }

    /// The best `k` documents of the union of `words` and `cells`, by
    /// tantivy's block-max WAND, among those that pass the filters, as
    /// (score, slot), best first. Only documents scoring above `seed` are
    /// looked at: it must be below the k-th best score (see
    /// [`TopK::seed`]).
    #[allow(clippy::too_many_arguments)]
    fn union(
        &self,
        searcher: &tantivy::Searcher,
        words: &[&[Term]],
        cells: &[Term],
        filters: &[(String, Vec<String>)],
        k: usize,
        seed: f32,
        skip: Option<&Mask>,
    ) -> Result<Vec<(f32, u32)>> {
        let words = words.iter().flat_map(|w| w.iter()).map(|t| should(t.clone(), IndexRecordOption::WithFreqs));
        let cells = cells.iter().map(|t| should(t.clone(), IndexRecordOption::Basic));
        let union = words.chain(cells).collect();
        let query = self.filtered(union, filters)?;
        searcher.search(&query, &BySlot { k, slots: &self.slots, seed, skip }).map_err(text_err)
    }

    /// A score below the union's k-th best, from the first [`SEED_DOCS`]
    /// (or twice k) documents of `term`, or `f32::MIN` when they are fewer
    /// than k.
    ///
    /// (Seeding a union of common words only, "rue du pa", from the first
    /// documents that hold them all gave thresholds far closer to the
    /// union's, yet its 400 slowest autocompletes at 26M took as long.)
    ///
    /// Block-max WAND skips a block of postings only once k documents
    /// score above what the block can give; started from nothing, it walks
    /// most documents of every word before the threshold rises (at 26M
    /// addresses, a full address's union cost 137 µs from nothing and 63
    /// µs started from its final threshold). Documents of the rarest word,
    /// scored with every other term of the union, are union documents with
    /// their union scores: their k-th is a threshold the union's k-th
    /// cannot be below.
    #[allow(clippy::too_many_arguments)]
    fn seed(
        &self,
        searcher: &tantivy::Searcher,
        term: &Term,
        others: &[Term],
        cells: &[Term],
        filters: &[(String, Vec<String>)],
        k: usize,
        skip: Option<&Mask>,
    ) -> Result<f32> {
        let top = self.driven(
            searcher,
            std::slice::from_ref(term),
            others,
            cells,
            filters,
            k,
            f32::INFINITY,
            SEED_DOCS.max(2 * k),
            skip,
        )?;
        Ok(top.seed())
    }

    /// The union's best `k` when they all hold a rare word, found without
    /// walking the common words' documents: `Ok` with them, or `Err` with
    /// a seed for the union (see [`TextIndex::seed`]) when that cannot be
    /// shown and the union must run.
    ///
    /// A union of one rare word and common ones ("rue de la 95350") is
    /// what block-max WAND does worst: its threshold stays low until it
    /// meets the rare word's documents, which may come last in the index,
    /// so it scores most documents of "rue", "de" and "la" first. Here the
    /// documents of the rare words are scored alone, each with the common
    /// words it holds, which gives the same score as in the union. A
    /// document without a rare word scores at most the sum of the best
    /// scores of the other terms; when the k-th score found is above that,
    /// no such document can enter the union's top k, and this top k is the
    /// union's.
    #[allow(clippy::too_many_arguments)]
    fn rare_first(
        &self,
        searcher: &tantivy::Searcher,
        rare: &[Term],
        common: &[Term],
        cells: &[Term],
        filters: &[(String, Vec<String>)],
        k: usize,
        skip: Option<&Mask>,
    ) -> Result<std::result::Result<Vec<(f32, u32)>, f32>> {
        let mut bound = 0.0f32;
        for t in common {
            bound += self.max_score(searcher, t, IndexRecordOption::WithFreqs)?;
        }
        // A document lies in one cell.
        let mut best_cell = 0.0f32;
        for t in cells {
            best_cell = best_cell.max(self.max_score(searcher, t, IndexRecordOption::Basic)?);
        }
        bound += best_cell;
        for (name, values) in filters {
            // An unknown filter fails here as it would in `filter` below.
            let field = self.filter_field(name)?;
            for v in values {
                bound += self.max_score(searcher, &Term::from_field_text(field, v), IndexRecordOption::Basic)?;
            }
        }
        let top = self.driven(searcher, rare, common, cells, filters, k, bound, usize::MAX, skip)?;
        let seed = top.seed();
        let top = top.into_sorted();
        // Sums of the same scores in another order may differ in their last
        // bits: the margin keeps such a near tie on the union's side.
        let shown = top.len() == k && top.last().is_some_and(|(s, _)| *s - SCORE_QUANTUM > bound * 1.001 + 1e-6);
        Ok(if shown { Ok(top) } else { Err(seed) })
    }

    /// The best `k` of the first `walk` documents holding a term of
    /// `driver`, each scored as in the union of `driver`, `optional` and
    /// `cells` that passes `filters`. A document whose driver terms score
    /// below the k-th by more than `bound` (what the other terms add at
    /// most) is not looked up in their postings.
    #[allow(clippy::too_many_arguments)]
    fn driven(
        &self,
        searcher: &tantivy::Searcher,
        driver: &[Term],
        optional: &[Term],
        cells: &[Term],
        filters: &[(String, Vec<String>)],
        k: usize,
        bound: f32,
        walk: usize,
        skip: Option<&Mask>,
    ) -> Result<TopK> {
        let scoring = || tantivy::query::EnableScoring::enabled_from_searcher(searcher);
        let term_weight = |t: &Term, o: IndexRecordOption| TermQuery::new(t.clone(), o).weight(scoring());
        let any = driver.iter().map(|t| should(t.clone(), IndexRecordOption::WithFreqs)).collect();
        let driver_weight = BooleanQuery::new(any).weight(scoring()).map_err(text_err)?;
        let mut others = Vec::with_capacity(optional.len() + cells.len());
        for t in optional {
            others.push(term_weight(t, IndexRecordOption::WithFreqs).map_err(text_err)?);
        }
        for t in cells {
            others.push(term_weight(t, IndexRecordOption::Basic).map_err(text_err)?);
        }
        let mut clauses = Vec::with_capacity(filters.len());
        self.filter(&mut clauses, filters)?;
        let mut required = Vec::with_capacity(clauses.len());
        for (_, q) in clauses {
            required.push(q.weight(scoring()).map_err(text_err)?);
        }
        let mut top = TopK::new(k);
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let mut driver = driver_weight.scorer(segment, 1.0).map_err(text_err)?;
            let mut optional =
                others.iter().map(|w| w.scorer(segment, 1.0)).collect::<tantivy::Result<Vec<_>>>().map_err(text_err)?;
            let mut required = required
                .iter()
                .map(|w| w.scorer(segment, 1.0))
                .collect::<tantivy::Result<Vec<_>>>()
                .map_err(text_err)?;
            let alive = segment.alive_bitset();
            let mut doc = driver.doc();
            let mut walked = 0;
            'docs: while doc != tantivy::TERMINATED && walked < walk {
                walked += 1;
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    let mut score = driver.score();
                    // The other clauses add at most `bound` (a quantum more
                    // for sums in another order): a document that could not
                    // enter with it is not looked up in their postings.
                    if !top.admits(score + bound + SCORE_QUANTUM) {
                        doc = driver.advance();
                        continue;
                    }
                    for s in &mut optional {
                        if s.doc() < doc {
                            s.seek(doc);
                        }
                        if s.doc() == doc {
                            score += s.score();
                        }
                    }
                    for s in &mut required {
                        if s.doc() < doc {
                            s.seek(doc);
                        }
                        if s.doc() != doc {
                            doc = driver.advance();
                            continue 'docs;
                        }
                        score += s.score();
                    }
                    // The record behind a document is a cache miss in a
                    // table of every document: looked up only for a score
                    // that can enter the top k (a tie needs its rank).
                    if top.admits(score) {
                        if let Some(d) = self.doc_ref(ord as u32, doc) {
                            if skip.is_none_or(|m| !m.contains(d.slot)) {
                                top.push(score, d);
                            }
                        }
                    }
                }
                doc = driver.advance();
            }
        }
        Ok(top)
    }

    /// The best score `term` gives any document, by a walk of its postings
    /// (kept per generation: the terms asked for are few, common words,
    /// cells, filter values).
    fn max_score(&self, searcher: &tantivy::Searcher, term: &Term, option: IndexRecordOption) -> Result<f32> {
        let mut key = vec![u8::from(option == IndexRecordOption::Basic)];
        push_term(&mut key, term);
        if let Some(s) = self.max_scores.get(&key) {
            return Ok(s);
        }
        let weight = TermQuery::new(term.clone(), option)
            .weight(tantivy::query::EnableScoring::enabled_from_searcher(searcher))
            .map_err(text_err)?;
        let mut best = 0.0f32;
        for segment in searcher.segment_readers() {
            let mut scorer = weight.scorer(segment, 1.0).map_err(text_err)?;
            while scorer.doc() != tantivy::TERMINATED {
                best = best.max(scorer.score());
                scorer.advance();
            }
        }
        self.max_scores.insert(key, best);
        Ok(best)
    }

    /// `clauses`, and one required clause per filter when there are filters.
    fn filtered(
        &self,
        clauses: Vec<(Occur, Box<dyn Query>)>,
        filters: &[(String, Vec<String>)],
    ) -> Result<BooleanQuery> {
        if filters.is_empty() {
            return Ok(BooleanQuery::new(clauses));
        }
        let mut all: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(BooleanQuery::new(clauses)))];
        self.filter(&mut all, filters)?;
        Ok(BooleanQuery::new(all))
    }

    /// Adds a required clause per filter: one of its values.
    fn filter(&self, clauses: &mut Vec<(Occur, Box<dyn Query>)>, filters: &[(String, Vec<String>)]) -> Result<()> {
        for (name, values) in filters {
            let field = self.filter_field(name)?;
            let any =
                values.iter().map(|v| should(Term::from_field_text(field, v), IndexRecordOption::Basic)).collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        Ok(())
    }
}

/// Text scores are compared to this step: the same record's score, summed
/// term by term in another order by another layout of the index (a
/// primary's segments against its replica's one), may differ in its last
/// bits, and must not decide between candidates.
const SCORE_QUANTUM: f32 = 1.0 / 256.0;

fn quantized(score: f32) -> f32 {
    (score / SCORE_QUANTUM).round() * SCORE_QUANTUM
}

/// The best `k` of scored documents, ties to the lower [`rank`] (the
/// record stored first): a query of common words ("12 route de") gives
/// thousands of documents one score, and which of them are candidates must
/// not depend on the index's layout.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
    /// See [`TopK::admits`]: kept beside the heap, since the test runs for
    /// every document scored and the heap changes far less often.
    floor: f32,
}

/// Higher score first, then lower rank.
#[derive(PartialEq)]
struct Ranked(f32, DocRef);

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then_with(|| other.1.rank.cmp(&self.1.rank))
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k + 1), floor: f32::NEG_INFINITY }
    }

    fn push(&mut self, score: f32, d: DocRef) {
        let score = quantized(score);
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(Ranked(score, d)));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            // In place of the worst: one sift, not a pop and a push.
            if Ranked(score, d) > worst.0 {
                *worst = std::cmp::Reverse(Ranked(score, d));
            }
        }
        if self.heap.len() == self.k {
            if let Some(w) = self.heap.peek() {
                // In quanta, a whole number: exact in an f32.
                self.floor = w.0 .0 / SCORE_QUANTUM - 0.5;
            }
        }
    }

    /// Whether a document scoring `score` (not negative) may enter: false
    /// only when it quantizes below the k-th, whatever its rank. A score
    /// rounds to at least n quanta when it is at least n - 1/2 of them
    /// (halves round up).
    fn admits(&self, score: f32) -> bool {
        debug_assert!(
            score.is_nan()
                || (score >= 0.0
                    && (score / SCORE_QUANTUM >= self.floor)
                        == self
                            .heap
                            .peek()
                            .filter(|_| self.heap.len() == self.k)
                            .is_none_or(|w| quantized(score) >= w.0 .0)),
            "admits({score}) disagrees with quantizing"
        );
        score / SCORE_QUANTUM >= self.floor
    }

    /// The score a document must pass to be offered: one that quantizes
    /// above the k-th's. A document that ties with the k-th comes after it
    /// in its segment's order, which is rank order, so it loses the tie.
    fn threshold(&self) -> f32 {
        match self.heap.peek() {
            Some(w) if self.heap.len() == self.k => (w.0 .0 + SCORE_QUANTUM / 2.0).next_down(),
            _ => f32::MIN,
        }
    }

    /// A threshold for a search of documents that include these: below
    /// every score that quantizes to the k-th's or above (by a quantum
    /// more, for sums of the same scores in another order), `f32::MIN`
    /// while there are fewer than k.
    fn seed(&self) -> f32 {
        match self.heap.peek() {
            Some(w) if self.heap.len() == self.k => (w.0 .0 - 1.5 * SCORE_QUANTUM).next_down(),
            _ => f32::MIN,
        }
    }

    fn into_ranked(self) -> Vec<(f32, DocRef)> {
        // Ascending order of `Reverse` is best first.
        self.heap.into_sorted_vec().into_iter().map(|std::cmp::Reverse(Ranked(s, d))| (s, d)).collect()
    }

    fn into_sorted(self) -> Vec<(f32, u32)> {
        self.into_ranked().into_iter().map(|(s, d)| (s, d.slot)).collect()
    }
}

/// tantivy's top-k by score (with block-max WAND), ties decided as
/// [`TopK`] decides them: `TopDocs` breaks them by document order.
struct BySlot<'a> {
    k: usize,
    /// [`TextIndex::slots`].
    slots: &'a [std::sync::Arc<[DocRef]>],
    /// Documents scoring at most this are not offered (see
    /// [`TextIndex::union`]).
    seed: f32,
    skip: Option<&'a Mask>,
}

struct BySlotSegment {
    top: TopK,
    slots: std::sync::Arc<[DocRef]>,
}

impl BySlotSegment {
    fn collect_unless(&mut self, doc: tantivy::DocId, score: f32, skip: Option<&Mask>) {
        if let Some(&d) = self.slots.get(doc as usize).filter(|d| d.slot != u32::MAX) {
            if skip.is_none_or(|m| !m.contains(d.slot)) {
                self.top.push(score, d);
            }
        }
    }
}

impl SegmentCollector for BySlotSegment {
    type Fruit = Vec<(f32, DocRef)>;

    fn collect(&mut self, doc: tantivy::DocId, score: f32) {
        self.collect_unless(doc, score, None);
    }

    fn harvest(self) -> Self::Fruit {
        self.top.into_ranked()
    }
}

impl Collector for BySlot<'_> {
    type Fruit = Vec<(f32, u32)>;
    type Child = BySlotSegment;

    fn for_segment(&self, ord: tantivy::SegmentOrdinal, _: &tantivy::SegmentReader) -> tantivy::Result<Self::Child> {
        let slots = self.slots.get(ord as usize).cloned().unwrap_or_else(|| std::sync::Arc::from(Vec::new()));
        Ok(BySlotSegment { top: TopK::new(self.k), slots })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(f32, DocRef)>>) -> tantivy::Result<Self::Fruit> {
        let mut top = TopK::new(self.k);
        for (score, d) in fruits.into_iter().flatten() {
            top.push(score, d);
        }
        Ok(top.into_sorted())
    }

    fn collect_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        ord: u32,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<Vec<(f32, DocRef)>> {
        let mut segment = self.for_segment(ord, reader)?;
        let alive = reader.alive_bitset();
        let (seed, skip) = (self.seed, self.skip);
        weight.for_each_pruning(seed, reader, &mut |doc, score| {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                segment.collect_unless(doc, score, skip);
            }
            segment.top.threshold().max(seed)
        })?;
        Ok(segment.harvest())
    }
}

/// The index in `dir` (created when empty) with the schema of `filters`,
/// its documents sorted by [`rank`].
fn open_index(dir: impl Into<Box<dyn tantivy::Directory>>, filters: &[&str]) -> Result<(Index, Fields)> {
    let (builder, fields) = index_builder(filters);
    let index = builder.open_or_create(dir).map_err(text_err)?;
    Ok((index, fields))
}

/// An index with the schema of `filters`, its documents sorted by [`rank`].
fn index_builder(filters: &[&str]) -> (tantivy::IndexBuilder, Fields) {
    let (schema, fields) = schema(filters);
    let settings = tantivy::IndexSettings {
        sort_by_field: Some(tantivy::IndexSortByField { field: "rank".into(), order: tantivy::Order::Asc }),
        ..Default::default()
    };
    (Index::builder().schema(schema).settings(settings), fields)
}

/// Builds a live layer's index: one segment, on the calling thread (no
/// indexing, merging or updating thread started for a few documents), in
/// a directory never synced (a layer is made again from the store after a
/// crash). Its hash table is sized for the documents to come.
pub struct LayerTextWriter {
    writer: tantivy::SingleSegmentIndexWriter,
    fields: Fields,
}

impl LayerTextWriter {
    /// A new index in `dir` (empty), for about `docs` documents.
    pub fn create(dir: &Path, filters: &[&str], docs: usize) -> Result<LayerTextWriter> {
        let unsynced = unsynced::Unsynced::open(dir).map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        let (builder, fields) = index_builder(filters);
        // A few kilobytes of table a document, within tantivy's bounds: a
        // layer of a few records zeroes a small table, not 15 MB's.
        let budget = docs.saturating_mul(8 << 10).clamp(1 << 20, SMALL_WRITER_BUDGET);
        let writer = builder.single_segment_index_writer(unsynced, budget).map_err(text_err)?;
        Ok(LayerTextWriter { writer, fields })
    }

    pub fn add(&mut self, d: TextDoc<'_>) -> Result<()> {
        self.writer.add_document(document(&self.fields, d)).map_err(text_err)
    }

    /// Writes the segment and its metas: the directory is complete on
    /// return.
    pub fn finish(self) -> Result<()> {
        self.writer.finalize().map(|_| ()).map_err(text_err)
    }
}

/// The tantivy document of `d`.
fn document(f: &Fields, d: TextDoc<'_>) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(f.key, d.key);
    let prefixes = analysis::edge_ngrams(&d.words);
    doc.add_u64(f.rank, rank(d.key, d.words.len(), prefixes.len()));
    // One value per word, each one token by the field's "raw"
    // tokenizer: the same terms, frequencies and field length as the
    // list given as tokens, without tantivy writing that list out as
    // JSON and reading it back (a tenth of an import's main thread).
    for w in &d.words {
        doc.add_text(f.text, w);
    }
    for p in &prefixes {
        doc.add_text(f.prefix, p);
    }
    if let Some(p) = d.point.filter(Point::is_valid) {
        doc.add_text(f.cell, cell_term(p.lat, p.lon));
    }
    for (name, values) in d.filters {
        if let Some((_, field)) = f.filters.iter().find(|(n, _)| n == name) {
            for v in values {
                doc.add_text(*field, v);
            }
        }
    }
    doc
}

/// Writes the next generation's index, starting from a copy of the last.
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
    /// Documents in the index when it was opened, and added since.
    before: u64,
    added: u64,
    /// Added, not yet sent to the indexing threads.
    pending: Vec<UserOperation>,
}

/// Documents sent to tantivy's indexing threads at once.
const ADD_BATCH: usize = 256;

/// What one record contributes to the index.
pub struct TextDoc<'a> {
    pub key: u64,
    pub words: Vec<String>,
    pub filters: Vec<(&'a str, Vec<String>)>,
    pub point: Option<Point>,
}

impl TextWriter {
    /// Opens the index in `dir`, creating it if the directory is empty.
    pub fn open(dir: &Path, filters: &[&str]) -> Result<TextWriter> {
        let mmap = MmapDirectory::open(dir).map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        let (index, fields) = open_index(mmap, filters)?;
        let writer = index.writer(WRITER_BUDGET).map_err(text_err)?;
        let metas = index.searchable_segment_metas().map_err(text_err)?;
        let before = metas.iter().map(|m| u64::from(m.num_docs())).sum();
        Ok(TextWriter { writer, fields, before, added: 0, pending: Vec::with_capacity(ADD_BATCH) })
    }

    pub fn add(&mut self, d: TextDoc<'_>) -> Result<()> {
        let doc = document(&self.fields, d);
        self.pending.push(UserOperation::Add(doc));
        self.added += 1;
        if self.pending.len() >= ADD_BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the documents added since the last call to tantivy's indexing
    /// threads, in one message: one at a time, waking a thread for each
    /// cost a twentieth of an import's main thread.
    fn send(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.writer.run(self.pending.drain(..)).map_err(text_err)?;
        }
        Ok(())
    }

    pub fn delete(&mut self, key: u64) {
        // In the same queue as the additions, so that it applies to those
        // made before it and not to those made after.
        self.pending.push(UserOperation::Delete(Term::from_field_u64(self.fields.key, key)));
    }

    /// Commits and waits for merges, so the directory is complete on return.
    ///
    /// A commit that wrote most of the index (an import, a restore) merges
    /// it into one segment: each query runs its union once per segment, and
    /// the score threshold that lets block-max WAND skip is learnt afresh
    /// in each, so two segments cost nearly twice one. Small commits leave
    /// merging to tantivy's policy, which keeps their cost small.
    pub fn finish(mut self) -> Result<()> {
        self.send()?;
        let bulk = self.added > 0 && self.added >= self.before;
        if bulk {
            // So that the commit starts no merge of its own over the segments
            // merged below.
            self.writer.set_merge_policy(Box::new(NoMergePolicy));
        }
        self.writer.commit().map_err(text_err)?;
        if bulk {
            // One segment is merged too when it holds deleted documents (an
            // import that replaced its own records): the merge drops them,
            // and the words only they held. (The metas are dropped before
            // the merge: while one is held, its segment's files are kept
            // from the garbage collection that ends the merge.)
            let (segments, deletes) = {
                let metas = self.writer.index().searchable_segment_metas().map_err(text_err)?;
                (
                    metas.iter().map(tantivy::SegmentMeta::id).collect::<Vec<_>>(),
                    metas.iter().any(tantivy::SegmentMeta::has_deletes),
                )
            };
            if segments.len() > 1 || deletes {
                // Only an optimisation: should a merge started while indexing
                // still hold some of these segments, this one fails, and the
                // commit stands as it is, in several segments.
                let _ = self.writer.merge(&segments).wait();
            }
        }
        self.writer.wait_merging_threads().map_err(text_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens with store keys for slots, so that tests speak of keys.
    fn open(dir: &Path, filters: &[&str]) -> TextIndex {
        TextIndex::open(dir, filters, &|key| u32::try_from(key).ok()).unwrap()
    }

    fn add(w: &mut TextWriter, key: u64, words: &[&str]) {
        let words: Vec<String> = words.iter().map(std::string::ToString::to_string).collect();
        w.add(TextDoc { key, words, filters: Vec::new(), point: None }).unwrap();
    }

    fn add_typed(w: &mut TextWriter, key: u64, words: &[&str], kind: &str) {
        let words: Vec<String> = words.iter().map(std::string::ToString::to_string).collect();
        w.add(TextDoc { key, words, filters: vec![("type", vec![kind.to_owned()])], point: None }).unwrap();
    }

    fn text_query(index: &TextIndex, words: &[&str], filters: &[(&str, &str)]) -> TextQuery<'static> {
        TextQuery {
            words: words.iter().map(|w| index.word(w, false).unwrap()).collect(),
            filters: filters.iter().map(|(n, v)| (n.to_string(), vec![v.to_string()])).collect(),
            num_docs: index.num_docs(),
            ..Default::default()
        }
    }

    /// The union's top `k`, as `candidates` would give them without the
    /// rare-first plan.
    fn union_top(index: &TextIndex, q: &TextQuery, k: usize) -> Vec<(f32, u32)> {
        let f = &index.fields;
        let terms: Vec<Term> = q.words.iter().map(|w| Term::from_field_text(f.text, &w.text)).collect();
        index.union(&index.searcher.clone(), &[&terms], &[], &q.filters, k, f32::MIN, None).unwrap()
    }

    /// Two top lists agree: the same scores, and the same documents but
    /// among those tied at the last score, where either may keep any (the
    /// union sums a document's scores in another order, so a tie may differ
    /// in its last bits).
    fn assert_same_top<D: PartialEq + Ord + Copy + std::fmt::Debug>(a: &[(f32, D)], b: &[(f32, D)], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: {a:?} against {b:?}");
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
        for ((x, _), (y, _)) in a.iter().zip(b) {
            assert!(close(*x, *y), "{what}: score {x} against {y}: {a:?} against {b:?}");
        }
        let Some(&(last, _)) = b.last() else { return };
        let above = |t: &[(f32, D)]| {
            let mut d: Vec<D> = t.iter().filter(|(s, _)| !close(*s, last)).map(|(_, d)| *d).collect();
            d.sort();
            d
        };
        assert_eq!(above(a), above(b), "{what}: {a:?} against {b:?}");
    }

    /// Streets of "rue de la <name>" in many towns, those of the rare town
    /// "brunoy" last in index order, where the union meets them last.
    fn towns(dir: &Path) -> TextIndex {
        let names = ["paix", "gare", "poste", "mairie", "fontaine", "croix", "forge", "source"];
        let mut w = TextWriter::open(dir, &["type"]).unwrap();
        for i in 0..4_000u64 {
            let town = format!("town{}", i % 200);
            let kind = if i % 3 == 0 { "locality" } else { "street" };
            add_typed(&mut w, i, &["rue", "de", "la", names[i as usize % names.len()], &town], kind);
        }
        for i in 4_000..4_060u64 {
            let kind = if i % 3 == 0 { "locality" } else { "street" };
            let name = names[i as usize % names.len()];
            if i % 4 == 0 {
                add_typed(&mut w, i, &["chemin", name, "brunoy"], kind);
            } else {
                add_typed(&mut w, i, &["rue", "de", "la", name, "brunoy"], kind);
            }
        }
        w.finish().unwrap();
        open(dir, &["type"])
    }

    #[test]
    fn a_rare_word_among_common_ones_gives_the_union_s_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let index = towns(dir.path());
        let searcher = index.searcher.clone();
        let text = |w: &str| Term::from_field_text(index.fields.text, w);
        let rare = [text("brunoy")];
        for (common, filters) in [
            (vec![text("rue"), text("de"), text("la")], vec![]),
            (vec![text("la")], vec![]),
            (vec![text("rue"), text("de"), text("la")], vec![("type".to_owned(), vec!["street".to_owned()])]),
        ] {
            for k in [5, 10, 20] {
                let first = index.rare_first(&searcher, &rare, &common, &[], &filters, k, None).unwrap();
                let first = first.unwrap_or_else(|_| panic!("{common:?} {filters:?} k={k}: the plan gave up"));
                let union = index.union(&searcher, &[&rare, &common], &[], &filters, k, f32::MIN, None).unwrap();
                assert_same_top(&first, &union, &format!("{common:?} {filters:?} k={k}"));
            }
        }
        // And through `candidates`, which chooses the plan.
        let q = text_query(&index, &["rue", "de", "la", "brunoy"], &[]);
        assert!(q.words.iter().filter(|w| w.freq > index.num_docs() / 10).count() == 3);
        let got = index.candidates(&q, 10).unwrap();
        assert_same_top(&got, &union_top(&index, &q, 10), "candidates");
        assert!(got.iter().all(|c| c.1 >= 4_000), "only brunoy's streets score that high: {got:?}");
    }

    /// The rare-first plan passes over documents of the rare word that
    /// cannot enter even with every common word (long ones, once short
    /// ones fill the top): what it keeps must still be the union's.
    #[test]
    fn rare_first_skipping_long_documents_keeps_the_union_s_top() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        let mut key = 0;
        let mut add_n = |w: &mut TextWriter, n: u64, words: &dyn Fn(u64) -> Vec<String>| {
            for i in 0..n {
                let words = words(i);
                add(w, key, &words.iter().map(String::as_str).collect::<Vec<_>>());
                key += 1;
            }
        };
        add_n(&mut w, 8_000, &|i| vec![format!("x{}", i % 50), "y".into()]);
        // Common words: in more than a tenth of the documents.
        add_n(&mut w, 1_500, &|i| vec!["rue".into(), "de".into(), "la".into(), format!("t{}", i % 7)]);
        // Four words, met first (shorter), with one common word: they fill
        // the top before the better ones below come.
        add_n(&mut w, 300, &|i| vec!["brunoy".into(), "rue".into(), format!("a{i}"), "b".into()]);
        // Five words: a lower score of the rare word alone, a higher one
        // with all the common words.
        add_n(&mut w, 20, &|i| vec!["brunoy".into(), "rue".into(), "de".into(), "la".into(), format!("c{i}")]);
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        let searcher = index.searcher.clone();
        let text = |w: &str| Term::from_field_text(index.fields.text, w);
        let rare = [text("brunoy")];
        let common = [text("rue"), text("de"), text("la")];
        for k in [1, 3, 10] {
            let union = index.union(&searcher, &[&rare, &common], &[], &[], k, f32::MIN, None).unwrap();
            assert!(union.iter().all(|c| c.1 >= 9_800), "the five-word documents lead: {union:?}");
            let first = index.rare_first(&searcher, &rare, &common, &[], &[], k, None).unwrap();
            let first = first.unwrap_or_else(|_| panic!("k={k}: the plan gave up"));
            assert_same_top(&first, &union, &format!("k={k}"));
        }
    }

    /// A union seeded by the first documents of its rarest word keeps the
    /// top of the union started from nothing, ties included: documents
    /// without the word that tie the k-th (or beat it) and come before the
    /// seed's documents in index order.
    #[test]
    fn a_seeded_union_keeps_the_union_s_top() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        for i in 0..3_000u64 {
            // Two to six words: documents of one length tie on each word.
            let mut words = vec![["rue", "avenue", "chemin"][i as usize % 3].to_owned(), format!("n{}", i % 37)];
            words.extend((0..i % 5).map(|j| ["de", "la", "haut", "bas", "grand"][j as usize].to_owned()));
            if i % 7 == 0 {
                words.push("brunoy".into());
            }
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            add(&mut w, i, &words);
        }
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        let searcher = index.searcher.clone();
        let text = |w: &str| Term::from_field_text(index.fields.text, w);
        let mut seeded = 0;
        for words in
            [&["rue", "brunoy"][..], &["rue", "de", "brunoy"], &["la", "haut", "n3"], &["avenue", "grand", "bas", "n5"]]
        {
            let terms: Vec<Term> = words.iter().map(|w| text(w)).collect();
            let rarest = terms.iter().min_by_key(|t| searcher.doc_freq(t).unwrap()).unwrap();
            let others: Vec<Term> = terms.iter().filter(|t| *t != rarest).cloned().collect();
            for k in [1, 5, 20, 60, 100] {
                let union = index.union(&searcher, &[&terms], &[], &[], k, f32::MIN, None).unwrap();
                let seed = index.seed(&searcher, rarest, &others, &[], &[], k, None).unwrap();
                let kth = union.last().map_or(f32::MIN, |c| c.0);
                assert!(seed < kth, "{words:?} k={k}: seed {seed} not below the k-th {kth}");
                seeded += usize::from(seed > f32::MIN);
                let got = index.union(&searcher, &[&terms], &[], &[], k, seed, None).unwrap();
                assert_eq!(got, union, "{words:?} k={k}, seed {seed}");
            }
        }
        assert!(seeded >= 10, "the seed found k documents in {seeded} cases only");
    }

    /// A costly list made for more candidates serves a query asking for
    /// fewer with the very ones it would have found.
    #[test]
    fn a_memoised_list_serves_fewer_candidates_alike() {
        let dir = tempfile::tempdir().unwrap();
        drop(towns(dir.path()));
        let q = |index: &TextIndex| text_query(index, &["rue", "de", "la", "paix"], &[]);
        let fresh = |k| {
            let index = open(dir.path(), &["type"]);
            index.candidates(&q(&index), k).unwrap()
        };
        let index = open(dir.path(), &["type"]);
        let mut asked = Vec::new();
        for k in [100, 10, 20, 5, 150, 1] {
            asked.push(k);
            assert_eq!(index.candidates(&q(&index), k).unwrap(), fresh(k), "k={k} after {asked:?}");
        }
        assert_eq!(index.common.len(), 1, "one list for the words, whatever k");
    }

    /// `TopK::admits` decides as quantizing would, at and around the
    /// rounding edges of the k-th score.
    #[test]
    fn admission_agrees_with_quantized_scores() {
        let d = |slot| DocRef { slot, rank: u64::from(slot) };
        for kth in [0.0f32, 0.5, 1.0 / 3.0, 2.76, 7.25, 31.9] {
            let mut top = TopK::new(1);
            assert!(top.admits(0.0), "an empty top admits anything");
            top.push(kth, d(0));
            let w = quantized(kth);
            let edge = w - SCORE_QUANTUM / 2.0;
            for s in [edge.next_down(), edge, edge.next_up(), w, kth, kth.next_up(), kth + 1.0, (kth - 1.0).max(0.0)] {
                if s < 0.0 {
                    continue;
                }
                assert_eq!(top.admits(s), quantized(s) >= w, "k-th {kth} (quantized {w}), score {s}");
            }
        }
    }

    /// Documents are ordered by their number of words, then of prefixes,
    /// then by key; a key too large to pack still orders after them all
    /// and apart from any other.
    #[test]
    fn ranks_order_short_documents_first_and_stay_distinct() {
        assert!(rank(900, 2, 9) < rank(1, 3, 4));
        assert!(rank(900, 3, 9) < rank(1, 3, 10));
        assert!(rank(1, 3, 10) < rank(2, 3, 10));
        assert!(rank(1, 200, 900) == rank(1, 31, 255), "lengths are capped");
        assert!(rank(1, 200, 900) != rank(2, 200, 900), "keys stay apart when lengths are capped");
        let big = 1u64 << 50;
        assert!(rank(big, 1, 1) > rank(big - 1, 31, 255));
        assert!(rank(big, 31, 255) < rank(big + 1, 1, 1), "by key alone");
    }

    /// Candidates of equal score are the same whatever order the index
    /// got the documents in (a primary's index and its replica's are built
    /// otherwise): the first stored (the lower key) first.
    #[test]
    fn ties_do_not_depend_on_the_order_of_documents() {
        let build = |order: &mut dyn Iterator<Item = u64>| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = TextWriter::open(dir.path(), &[]).unwrap();
            for key in order {
                add(&mut w, key, &["rue", "de", "la", "gare"]);
                // Some in segments of their own, merged or not.
                if key % 17 == 0 {
                    w.writer.commit().unwrap();
                }
            }
            w.finish().unwrap();
            let index = open(dir.path(), &[]);
            (dir, index)
        };
        let (_a, forward) = build(&mut (0..60));
        let (_b, backward) = build(&mut (0..60).rev());
        for k in [1, 5, 20] {
            let q = text_query(&forward, &["rue", "gare"], &[]);
            let got: Vec<u32> = forward.candidates(&q, k).unwrap().into_iter().map(|c| c.1).collect();
            let q = text_query(&backward, &["rue", "gare"], &[]);
            let other: Vec<u32> = backward.candidates(&q, k).unwrap().into_iter().map(|c| c.1).collect();
            assert_eq!(got, other, "k {k}");
            assert_eq!(got, (0..k as u32).collect::<Vec<_>>(), "k {k}");
        }
    }

    #[test]
    fn typo_expansions_are_kept_per_word_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        add(&mut w, 1, &["rue", "de", "paris"]);
        add(&mut w, 2, &["rue", "des", "parisiens"]);
        add(&mut w, 3, &["avenue", "de", "pariset"]);
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        let texts = |w: &Word| -> Vec<String> {
            let mut t: Vec<String> =
                w.typos.iter().map(|(t, _)| String::from_utf8_lossy(t.serialized_value_bytes()).into_owned()).collect();
            t.sort();
            t
        };
        // "parsi" is one edit from "paris"; as the start of a word, also
        // from the start of "parisiens" and "pariset". Either kind asked
        // first, then again: each gets its own expansions every time (the
        // memo is keyed by both).
        let whole = ["paris"];
        let prefix = ["paris", "pariset", "parisiens"];
        assert_eq!(texts(&index.word("parsi", false).unwrap()), whole);
        assert_eq!(texts(&index.word("parsi", true).unwrap()), prefix);
        assert_eq!(texts(&index.word("parsi", false).unwrap()), whole);
        assert_eq!(texts(&index.word("parsi", true).unwrap()), prefix);
        assert_eq!(texts(&index.word("prais", true).unwrap()), prefix);
        assert_eq!(texts(&index.word("prais", false).unwrap()), whole);
        assert_eq!(texts(&index.word("prais", true).unwrap()), prefix);
        // A word the index has is not misspelt.
        assert!(index.word("paris", false).unwrap().typos.is_empty());
    }

    #[test]
    fn a_last_word_typed_in_full_weighs_as_a_word() {
        // One street name in 40 towns; the one in Marseille has the longest
        // labels (two city names), so each of its words weighs less. (The
        // case that made the plan look for a whole last word as a word is in
        // tests/cli.rs, on real data; here, that it finds what it should.)
        let dir = tempfile::tempdir().unwrap();
        let street = ["rue", "du", "2eme", "regiment", "de", "dragons"];
        let context = ["13", "bouches", "du", "rhone", "provence", "alpes", "cote", "d", "azur"];
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        for i in 0..40u64 {
            let (town, postcode) = (format!("town{i}"), format!("{}", 35_000 + i));
            add(&mut w, i, &[&street[..], &[postcode.as_str(), town.as_str()], &context[..]].concat());
        }
        let marseille = ["13010", "marseille", "marseille", "10e", "arrondissement"];
        add(&mut w, 999, &[&street[..], &marseille[..], &context[..]].concat());
        // The postcode elsewhere, not in this street.
        for i in 0..20u64 {
            add(&mut w, 2_000 + i, &[&["place", "carnot", "13010", "marseille"][..], &context[..]].concat());
        }
        // Other streets, so that the street's words are rare ones.
        for i in 0..4_000u64 {
            let (name, town) = (format!("name{i}"), format!("town{}", i % 100));
            add(&mut w, 10_000 + i, &[&["rue", "de", "la", &name, "35000", &town][..], &context[..]].concat());
        }
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        // "... 13010" as typed: the last word is completed as a prefix.
        let mut q = text_query(&index, &street, &[]);
        q.prefix = Some(index.word("13010", true).unwrap());
        let got = index.candidates(&q, 10).unwrap();
        assert_eq!(got.first().map(|c| c.1), Some(999), "{got:?}");
        // Half-typed, it is still completed.
        q.prefix = Some(index.word("1301", true).unwrap());
        assert_eq!(index.candidates(&q, 10).unwrap().first().map(|c| c.1), Some(999));
        q.words.clear();
        for typed in ["13010", "1301"] {
            q.prefix = Some(index.word(typed, true).unwrap());
            let mut all: Vec<u32> = index.candidates(&q, 100).unwrap().into_iter().map(|c| c.1).collect();
            all.sort_unstable();
            let mut want: Vec<u32> = (2_000..2_020).collect();
            want.insert(0, 999);
            assert_eq!(all, want, "{typed}");
        }
    }

    #[test]
    fn a_rare_word_that_cannot_outscore_common_ones_falls_back_to_the_union() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        // Short documents where the common words weigh most.
        for i in 0..2_000u64 {
            add(&mut w, i, &["rue", "rue", "de", "de", "la", "la"]);
            add(&mut w, 10_000 + i, &["chemin", if i % 2 == 0 { "des" } else { "du" }]);
        }
        // The rare word only in long documents, with one common word.
        for i in 0..30u64 {
            let filler: Vec<String> = (0..30).map(|j| format!("w{i}x{j}")).collect();
            let mut words: Vec<&str> = filler.iter().map(String::as_str).collect();
            words.extend(["rare", "la"]);
            add(&mut w, 20_000 + i, &words);
        }
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        let q = text_query(&index, &["rue", "de", "la", "rare"], &[]);
        let got = index.candidates(&q, 10).unwrap();
        assert_same_top(&got, &union_top(&index, &q, 10), "candidates");
        assert!(got.iter().any(|c| c.1 < 20_000), "documents without the rare word are among the best: {got:?}");
    }

    #[test]
    fn deleted_documents_are_not_candidates_of_the_rare_first_plan() {
        let dir = tempfile::tempdir().unwrap();
        drop(towns(dir.path()));
        let mut w = TextWriter::open(dir.path(), &["type"]).unwrap();
        for key in 4_000..4_030u64 {
            w.delete(key);
        }
        w.finish().unwrap();
        let index = open(dir.path(), &["type"]);
        let q = text_query(&index, &["rue", "de", "la", "brunoy"], &[]);
        let got = index.candidates(&q, 10).unwrap();
        assert_same_top(&got, &union_top(&index, &q, 10), "candidates");
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|c| c.1 >= 4_030), "{got:?}");
    }

    #[test]
    fn a_deletion_applies_to_the_documents_added_before_it_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        // All in one batch of the writer's queue.
        add(&mut w, 1, &["rue", "lilas"]);
        add(&mut w, 2, &["rue", "roses"]);
        w.delete(1);
        add(&mut w, 1, &["chemin", "lilas"]);
        w.finish().unwrap();
        let index = open(dir.path(), &[]);
        let keys = |words: &[&str]| {
            let mut k: Vec<u32> =
                index.candidates(&text_query(&index, words, &[]), 10).unwrap().iter().map(|c| c.1).collect();
            k.sort_unstable();
            k
        };
        assert_eq!(keys(&["rue"]), vec![2]);
        assert_eq!(keys(&["chemin"]), vec![1]);
        assert_eq!(keys(&["lilas"]), vec![1]);
    }

    #[test]
    fn a_word_only_replaced_documents_held_is_looked_for_with_typos() {
        let dir = tempfile::tempdir().unwrap();
        let lilac = |index: &TextIndex, word: &str| -> Vec<u32> {
            let w = index.word(word, false).unwrap();
            let q = TextQuery { words: vec![w], num_docs: index.num_docs(), ..TextQuery::default() };
            index.candidates(&q, 10).unwrap().iter().map(|c| c.1).collect()
        };
        drop(towns(dir.path()));
        // A small commit (the index is not rewritten): "lilas" is left only
        // in a deleted document of the new segment.
        let mut w = TextWriter::open(dir.path(), &["type"]).unwrap();
        add(&mut w, 9_000, &["impasse", "des", "lilas"]);
        w.delete(9_000);
        add(&mut w, 9_001, &["impasse", "des", "lilac"]);
        w.finish().unwrap();
        let index = open(dir.path(), &["type"]);
        assert_eq!(index.word_freq("lilas"), 0);
        assert_eq!(lilac(&index, "lilas"), vec![9_001], "found through the typo");

        // An import into an empty index that replaced its own record: merged
        // even in one segment, so no deleted document stays behind.
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        add(&mut w, 1, &["impasse", "des", "lilas"]);
        w.delete(1);
        add(&mut w, 2, &["impasse", "des", "lilac"]);
        w.finish().unwrap();
        let metas = Index::open_in_dir(dir.path()).unwrap().searchable_segment_metas().unwrap();
        assert!(metas.iter().all(|m| !m.has_deletes()), "{metas:?}");
        let index = open(dir.path(), &[]);
        assert_eq!(lilac(&index, "lilas"), vec![2]);
    }

    fn segments(dir: &Path) -> usize {
        Index::open_in_dir(dir).unwrap().searchable_segment_ids().unwrap().len()
    }

    #[test]
    fn a_bulk_commit_leaves_one_segment_and_small_ones_add_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        for i in 0..20_000u64 {
            add(&mut w, i, &["rue", "des", if i % 2 == 0 { "lilas" } else { "roses" }]);
        }
        w.finish().unwrap();
        assert_eq!(segments(dir.path()), 1);
        // The merged segments' files are gone, not left beside it.
        let idx = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "idx"))
            .count();
        assert_eq!(idx, 1);
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        add(&mut w, 20_000, &["impasse", "des", "mimosas"]);
        w.finish().unwrap();
        assert_eq!(segments(dir.path()), 2);
        let index = open(dir.path(), &[]);
        assert_eq!(index.num_docs(), 20_001);
        let q = TextQuery {
            words: vec![index.word("mimosas", false).unwrap()],
            num_docs: index.num_docs(),
            ..Default::default()
        };
        assert_eq!(index.candidates(&q, 5).unwrap().iter().map(|c| c.1).collect::<Vec<_>>(), vec![20_000]);
    }
}
