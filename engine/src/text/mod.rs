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

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::record::Point;

/// Candidate lists of queries made only of common words, kept per generation.
const COMMON_MEMO: usize = 4096;

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

#[derive(Clone)]
struct Fields {
    key: Field,
    text: Field,
    prefix: Field,
    cell: Field,
    filters: Vec<(String, Field)>,
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
    let filters = filters.iter().map(|f| (f.to_string(), b.add_text_field(&format!("f_{f}"), STRING))).collect();
    (b.build(), Fields { key, text, prefix, cell, filters })
}

fn pretokenized(tokens: &[String]) -> PreTokenizedString {
    let mut offset = 0;
    let tokens = tokens
        .iter()
        .enumerate()
        .map(|(position, t)| {
            let tok = Token {
                offset_from: offset,
                offset_to: offset + t.len(),
                position,
                text: t.clone(),
                position_length: 1,
            };
            offset += t.len() + 1;
            tok
        })
        .collect();
    PreTokenizedString { text: String::new(), tokens }
}

/// The grid cell of a point, as indexed and queried.
fn cell_term(lat: f64, lon: f64) -> String {
    format!("{}:{}", (lat / CELL_DEG).floor() as i64, (lon / CELL_DEG).floor() as i64)
}

/// What the full-text layer is asked for one query.
#[derive(Debug, Default, Clone)]
pub struct TextQuery {
    /// Whole words, any order.
    pub words: Vec<Word>,
    /// The last word, matched as a prefix (autocomplete).
    pub prefix: Option<Word>,
    /// Every listed field must match one of its values.
    pub filters: Vec<(String, Vec<String>)>,
    /// Favour documents near this point.
    pub near: Option<Point>,
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
    typos: Vec<(Term, u64)>,
}

/// One tantivy index of a generation, opened for reading.
pub struct TextIndex {
    reader: IndexReader,
    fields: Fields,
    /// The `key` column of each segment, opened once.
    keys: Vec<Column<u64>>,
    /// Candidates of queries made only of common words, by query. They cost
    /// milliseconds each ("12 rue de la": WAND has nothing to skip with), but
    /// there are few such word sets, and the housenumber is not part of them.
    common: quick_cache::sync::Cache<Vec<u8>, std::sync::Arc<Vec<(f32, u64)>>>,
}

/// Maps a tantivy error on `path` to ours.
fn text_err(e: tantivy::TantivyError) -> Error {
    Error::Text(e)
}

impl TextIndex {
    pub fn open(dir: &Path, filters: &[&str]) -> Result<TextIndex> {
        let (_, fields) = schema(filters);
        let index = Index::open_in_dir(dir).map_err(text_err)?;
        let reader: IndexReader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(text_err)?;
        let keys = reader
            .searcher()
            .segment_readers()
            .iter()
            .map(|s| s.fast_fields().u64("key"))
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(text_err)?;
        Ok(TextIndex { reader, fields, keys, common: quick_cache::sync::Cache::new(COMMON_MEMO) })
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// A query word, whole or (`prefix`) as the start of a word, with its
    /// document counts and, when the index lacks it, its typo expansions.
    pub fn word(&self, text: &str, prefix: bool) -> Result<Word> {
        let whole = self.word_freq(text);
        let freq = if prefix { self.prefix_freq(text) } else { whole };
        let typos = if freq == 0 { self.typo_terms(text, prefix)? } else { Vec::new() };
        Ok(Word { text: text.to_owned(), freq, whole, typos })
    }

    /// Number of indexed documents containing this word.
    pub fn word_freq(&self, word: &str) -> u64 {
        let t = Term::from_field_text(self.fields.text, word);
        self.reader.searcher().doc_freq(&t).unwrap_or(0)
    }

    /// Number of indexed documents with a word starting with `prefix`.
    pub fn prefix_freq(&self, prefix: &str) -> u64 {
        let t = Term::from_field_text(self.fields.prefix, analysis::indexed_prefix(prefix));
        self.reader.searcher().doc_freq(&t).unwrap_or(0)
    }

    /// The terms of `field` within `distance` edits of `word` (or of a
    /// prefix of them, with `prefix`), with their document counts: at most
    /// [`MAX_EXPANSIONS`] of them, the most frequent first.
    fn expand(&self, field: Field, word: &str, distance: u8, prefix: bool) -> Result<Vec<(Term, u64)>> {
        let b = lev_builder(distance);
        let dfa = if prefix { b.build_prefix_dfa(word) } else { b.build_dfa(word) };
        let mut found: HashMap<Vec<u8>, u64> = HashMap::new();
        for seg in self.reader.searcher().segment_readers() {
            let inverted = seg.inverted_index(field).map_err(text_err)?;
            let mut terms = inverted.terms().search(Lev(&dfa)).into_stream().map_err(|e| Error::Text(e.into()))?;
            while terms.advance() {
                *found.entry(terms.key().to_vec()).or_default() += u64::from(terms.value().doc_freq);
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

    /// The store keys of the best `k` candidates, best first, with their
    /// full-text score: a union of the query's terms, which tantivy runs
    /// with block-max WAND. Words missing from the index are matched with
    /// typo tolerance (see [`TextIndex::typo_terms`]).
    pub fn candidates(&self, q: &TextQuery, k: usize) -> Result<Vec<(f32, u64)>> {
        let f = &self.fields;
        // Words in a tenth of the documents ("rue", "de", a big city) are
        // what a union pays most for: block-max WAND skips their documents
        // only once k documents score above anything they can give.
        let common = self.num_docs() / 10;
        let (mut rare, mut common_terms) = (Vec::new(), Vec::new());
        // Rare words found as typed; typo expansions do not count, since a
        // wrong correction picks poorly.
        let mut found = 0;
        let words = q.words.iter().map(|w| (w, Term::from_field_text(f.text, &w.text)));
        let prefix = q.prefix.iter().map(|p| (p, Term::from_field_text(f.prefix, analysis::indexed_prefix(&p.text))));
        for (w, term) in words.chain(prefix) {
            if w.freq > common {
                common_terms.push(term);
            } else if w.freq > 0 {
                found += 1;
                rare.push((term, w.freq));
            } else {
                rare.extend(w.typos.iter().cloned());
            }
        }
        // The common words are left out when the rare ones pick well without
        // them: two or more found as typed, or all their documents fit in k
        // (then every one of them is a candidate anyway, and WAND would have
        // nothing to skip the common words' documents with).
        let rare_docs: u64 = rare.iter().map(|(_, n)| n).sum();
        let only_common = rare.is_empty();
        let mut terms: Vec<Term> = rare.into_iter().map(|(t, _)| t).collect();
        if terms.is_empty() || (found < 2 && rare_docs > k as u64) {
            terms.extend(common_terms);
        }
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let memo_key = (only_common && q.near.is_none()).then(|| {
            let mut key = (k as u64).to_le_bytes().to_vec();
            for t in &terms {
                key.extend_from_slice(&t.field().field_id().to_le_bytes());
                key.extend_from_slice(t.serialized_value_bytes());
                key.push(0xff);
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
            return Ok(hit.as_ref().clone());
        }
        let mut should: Vec<(Occur, Box<dyn Query>)> = terms
            .into_iter()
            .map(|t| (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>))
            .collect();
        if let Some(p) = q.near {
            for di in -1..=1 {
                for dj in -1..=1 {
                    let cell = cell_term(p.lat + di as f64 * CELL_DEG, p.lon + dj as f64 * CELL_DEG);
                    let term = Term::from_field_text(f.cell, &cell);
                    should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                }
            }
        }
        let query = if q.filters.is_empty() {
            BooleanQuery::new(should)
        } else {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
            self.filter(&mut clauses, &q.filters)?;
            BooleanQuery::new(clauses)
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score()).map_err(text_err)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(key) = self.keys.get(addr.segment_ord as usize).and_then(|c| c.first(addr.doc_id)) {
                out.push((score, key));
            }
        }
        if let Some(key) = memo_key {
            self.common.insert(key, std::sync::Arc::new(out.clone()));
        }
        Ok(out)
    }

    /// Adds a required clause per filter: one of its values.
    fn filter(&self, clauses: &mut Vec<(Occur, Box<dyn Query>)>, filters: &[(String, Vec<String>)]) -> Result<()> {
        let f = &self.fields;
        for (name, values) in filters {
            let Some((_, field)) = f.filters.iter().find(|(n, _)| n == name) else {
                return Err(Error::InvalidQuery(format!("unknown filter {name}")));
            };
            let any: Vec<(Occur, Box<dyn Query>)> = values
                .iter()
                .map(|v| {
                    let t = Term::from_field_text(*field, v);
                    (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>)
                })
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        Ok(())
    }
}

/// Writes the next generation's index, starting from a copy of the last.
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
    /// Documents in the index when it was opened, and added since.
    before: u64,
    added: u64,
}

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
        let (schema, fields) = schema(filters);
        let mmap = MmapDirectory::open(dir).map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        let index = Index::open_or_create(mmap, schema).map_err(text_err)?;
        let writer = index.writer(WRITER_BUDGET).map_err(text_err)?;
        let metas = index.searchable_segment_metas().map_err(text_err)?;
        let before = metas.iter().map(|m| u64::from(m.num_docs())).sum();
        Ok(TextWriter { writer, fields, before, added: 0 })
    }

    pub fn add(&mut self, d: TextDoc<'_>) -> Result<()> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.key, d.key);
        let prefixes = analysis::edge_ngrams(&d.words);
        doc.add_pre_tokenized_text(f.text, pretokenized(&d.words));
        doc.add_pre_tokenized_text(f.prefix, pretokenized(&prefixes));
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
        self.writer.add_document(doc).map_err(text_err)?;
        self.added += 1;
        Ok(())
    }

    pub fn delete(&mut self, key: u64) {
        self.writer.delete_term(Term::from_field_u64(self.fields.key, key));
    }

    /// Commits and waits for merges, so the directory is complete on return.
    ///
    /// A commit that wrote most of the index (an import, a restore) merges
    /// it into one segment: each query runs its union once per segment, and
    /// the score threshold that lets block-max WAND skip is learnt afresh
    /// in each, so two segments cost nearly twice one. Small commits leave
    /// merging to tantivy's policy, which keeps their cost small.
    pub fn finish(mut self) -> Result<()> {
        let bulk = self.added > 0 && self.added >= self.before;
        if bulk {
            // So that the commit starts no merge of its own over the segments
            // merged below.
            self.writer.set_merge_policy(Box::new(NoMergePolicy));
        }
        self.writer.commit().map_err(text_err)?;
        if bulk {
            let segments = self.writer.index().searchable_segment_ids().map_err(text_err)?;
            if segments.len() > 1 {
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

    fn add(w: &mut TextWriter, key: u64, words: &[&str]) {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        w.add(TextDoc { key, words, filters: Vec::new(), point: None }).unwrap();
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
        let mut w = TextWriter::open(dir.path(), &[]).unwrap();
        add(&mut w, 20_000, &["impasse", "des", "mimosas"]);
        w.finish().unwrap();
        assert_eq!(segments(dir.path()), 2);
        let index = TextIndex::open(dir.path(), &[]).unwrap();
        assert_eq!(index.num_docs(), 20_001);
        let q = TextQuery { words: vec![index.word("mimosas", false).unwrap()], ..Default::default() };
        assert_eq!(index.candidates(&q, 5).unwrap().iter().map(|c| c.1).collect::<Vec<_>>(), vec![20_000]);
    }
}
