//! The full-text layer: a tantivy index over records, fed with tokens from
//! [`analysis`] so that documents and queries go through the same chain.
//!
//! Fields: `key` (the store key, to map hits back to records), `text`
//! (words), `prefix` (edge n-grams of the words, for the last word typed),
//! `cell` (coarse grid cells, to favour results near a given point) and one
//! keyword field per filter.

pub mod analysis;

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::record::Point;

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
    pub words: Vec<String>,
    /// The last word, matched as a prefix (autocomplete).
    pub prefix: Option<String>,
    /// Every listed field must match one of its values.
    pub filters: Vec<(String, Vec<String>)>,
    /// Favour documents near this point.
    pub near: Option<Point>,
}

/// One tantivy index of a generation, opened for reading.
pub struct TextIndex {
    reader: IndexReader,
    fields: Fields,
    /// The `key` column of each segment, opened once.
    keys: Vec<Column<u64>>,
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
        Ok(TextIndex { reader, fields, keys })
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
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

    /// The store keys of the best `k` candidates, best first, with their
    /// full-text score. Words missing from the index are matched with typo
    /// tolerance: one edit from 4 letters, two from 8.
    pub fn candidates(&self, q: &TextQuery, k: usize) -> Result<Vec<(f32, u64)>> {
        let f = &self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let typo = |w: &str| -> u8 {
            match w.chars().count() {
                0..=3 => 0,
                4..=7 => 1,
                _ => 2,
            }
        };
        let freqs: Vec<u64> = q.words.iter().map(|w| self.word_freq(w)).collect();
        // Words in a tenth of the documents ("rue", "de", a big city) pick
        // no candidate that the rarer words of the same query do not pick
        // better, and they are what a union pays most for; the ranking that
        // follows still compares every word.
        let common = self.num_docs() / 10;
        let prefix_freq = q.prefix.as_deref().map(|p| self.prefix_freq(p));
        // Only words found as typed count: a misspelt one may find nothing.
        let rare = freqs.iter().chain(&prefix_freq).filter(|&&n| n > 0 && n <= common / 2).count();
        for (w, &freq) in q.words.iter().zip(&freqs) {
            if rare >= 2 && freq > common {
                continue;
            }
            let term = Term::from_field_text(f.text, w);
            if freq > 0 || typo(w) == 0 {
                should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
            } else {
                should.push((Occur::Should, Box::new(FuzzyTermQuery::new(term, typo(w), true))));
            }
        }
        if let (Some(p), Some(freq)) = (&q.prefix, prefix_freq) {
            if freq > 0 || typo(p) == 0 {
                let term = Term::from_field_text(f.prefix, analysis::indexed_prefix(p));
                should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
            } else {
                let term = Term::from_field_text(f.text, p);
                should.push((Occur::Should, Box::new(FuzzyTermQuery::new_prefix(term, 1, true))));
            }
        }
        if should.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(p) = q.near {
            for di in -1..=1 {
                for dj in -1..=1 {
                    let cell = cell_term(p.lat + di as f64 * CELL_DEG, p.lon + dj as f64 * CELL_DEG);
                    let term = Term::from_field_text(f.cell, &cell);
                    should.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                }
            }
        }
        // Without filters the query is a flat union of terms, which tantivy
        // runs with block-max WAND: common words stop costing a full scan.
        let query: Box<dyn Query> = if q.filters.is_empty() {
            Box::new(BooleanQuery::new(should))
        } else {
            Box::new(self.filtered(should, &q.filters)?)
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(query.as_ref(), &TopDocs::with_limit(k).order_by_score()).map_err(text_err)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(key) = self.keys.get(addr.segment_ord as usize).and_then(|c| c.first(addr.doc_id)) {
                out.push((score, key));
            }
        }
        Ok(out)
    }

    fn filtered(
        &self,
        should: Vec<(Occur, Box<dyn Query>)>,
        filters: &[(String, Vec<String>)],
    ) -> Result<BooleanQuery> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
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
        Ok(BooleanQuery::new(clauses))
    }
}

/// Writes the next generation's index, starting from a copy of the last.
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
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
        Ok(TextWriter { writer, fields })
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
        Ok(())
    }

    pub fn delete(&mut self, key: u64) {
        self.writer.delete_term(Term::from_field_u64(self.fields.key, key));
    }

    /// Commits and waits for merges, so the directory is complete on return.
    pub fn finish(mut self) -> Result<()> {
        self.writer.commit().map_err(text_err)?;
        self.writer.wait_merging_threads().map_err(text_err)?;
        Ok(())
    }
}
