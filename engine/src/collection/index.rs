//! The indexes of one collection at one version, in memory: a column per
//! field, built from the stored records in id order, so that a row number
//! is also the rank of its id (the tie-break of every sort).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::schema::{Analyzer, FieldType, Schema};
use super::value::{typed, Typed};

/// A set of rows.
#[derive(Clone)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub fn new(rows: usize) -> Bits {
        Bits(vec![0; rows.div_ceil(64)])
    }

    #[inline]
    pub fn set(&mut self, row: u32) {
        self.0[row as usize / 64] |= 1 << (row % 64);
    }

    #[inline]
    pub fn get(&self, row: u32) -> bool {
        self.0.get(row as usize / 64).is_some_and(|w| w & (1 << (row % 64)) != 0)
    }
}

pub(crate) struct KeywordColumn {
    /// Every value, sorted: a term id is a rank, so ids compare as values.
    pub dict: Vec<Box<str>>,
    /// Row `r`'s term ids are `values[offsets[r]..offsets[r + 1]]`, ascending.
    pub offsets: Vec<u32>,
    pub values: Vec<u32>,
    /// Rows of each term, ascending.
    pub postings: Vec<Vec<u32>>,
    /// The rows of each frequent term (in at least one row of
    /// [`DENSE_SHARE`]) as a bit set, by term id: a row is tested with
    /// one bit in a set that stays in cache, not two reads far apart.
    pub dense: Vec<(u32, Bits)>,
}

/// A term in one row of this many or more gets a bit set of its rows; so
/// a column has at most this many sets, of `rows / 8` bytes each.
pub(crate) const DENSE_SHARE: usize = 32;

impl KeywordColumn {
    #[inline]
    pub fn of(&self, row: u32) -> &[u32] {
        let r = row as usize;
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// The bit set of term `t`'s rows, when it is frequent.
    pub fn dense(&self, t: u32) -> Option<&Bits> {
        self.dense.iter().find(|(d, _)| *d == t).map(|(_, b)| b)
    }

    pub fn term(&self, value: &str) -> Option<u32> {
        self.dict.binary_search_by(|t| (**t).cmp(value)).ok().map(|i| i as u32)
    }

    /// Term ids of the values that start with `prefix` (a contiguous range).
    pub fn prefix(&self, prefix: &str) -> std::ops::Range<u32> {
        let start = self.dict.partition_point(|t| (**t) < *prefix);
        let end = start + self.dict[start..].partition_point(|t| t.starts_with(prefix));
        start as u32..end as u32
    }
}

/// Integers and dates (`i64`), floats (`f64`).
pub(crate) struct NumColumn<T> {
    pub values: Vec<T>,
    pub present: Bits,
    /// Rows with a value, by (value, row).
    pub sorted: Vec<u32>,
    /// Their values, in the same order: a bound is found, and a walk reads
    /// its values, in one array without jumping about `values`.
    pub sorted_values: Vec<T>,
}

impl NumColumn<i64> {
    /// Where the values in `lo..=hi` are in `sorted`.
    pub fn between(&self, lo: i64, hi: i64) -> (usize, usize) {
        let a = self.sorted_values.partition_point(|&v| v < lo);
        let b = self.sorted_values.partition_point(|&v| v <= hi);
        (a, b.max(a))
    }
}

pub(crate) struct GeoColumn {
    /// Each row's (lat, lon), side by side so that a test reads one place;
    /// NaN where a row has no point.
    pub points: Vec<[f64; 2]>,
}

pub(crate) struct TextColumn {
    pub analyzer: Analyzer,
    /// Per word: (row, occurrences), rows ascending.
    pub postings: HashMap<Box<str>, Vec<(u32, u32)>>,
    /// Every word, sorted, for typo and prefix expansion.
    pub words: Vec<Box<str>>,
    /// Words in each row's value.
    pub lens: Vec<u32>,
    pub average_len: f32,
}

pub(crate) enum Column {
    Keyword(KeywordColumn),
    Int(NumColumn<i64>),
    Float(NumColumn<f64>),
    Bool(Vec<u8>),
    Geo(GeoColumn),
    Text(TextColumn),
    Stored,
}

/// Cuts a text value into words as its analyzer says.
pub(crate) fn words(analyzer: Analyzer, s: &str) -> Vec<String> {
    match analyzer {
        Analyzer::Address => crate::text::analysis::tokens(s),
        Analyzer::None => vec![s.to_lowercase()],
        Analyzer::Standard => crate::text::analysis::fold(s).split_whitespace().map(str::to_owned).collect(),
        Analyzer::French => {
            // Elisions: "l'arbre" is "arbre"; `fold` made the apostrophe a space.
            const ELIDED: [&str; 9] = ["l", "d", "j", "m", "n", "s", "t", "c", "qu"];
            crate::text::analysis::fold(s)
                .split_whitespace()
                .filter(|w| !ELIDED.contains(w))
                .map(str::to_owned)
                .collect()
        }
    }
}

/// The indexes of a collection.
pub(crate) struct Index {
    pub ids: Vec<Box<str>>,
    /// In the order of `names`.
    pub columns: Vec<Column>,
    pub names: Vec<String>,
}

enum Builder {
    Keyword { terms: HashMap<String, u32>, offsets: Vec<u32>, values: Vec<u32> },
    Int { values: Vec<i64>, present: Vec<u32> },
    Float { values: Vec<f64>, present: Vec<u32> },
    Bool(Vec<u8>),
    Geo { lat: Vec<f64>, lon: Vec<f64> },
    Text { analyzer: Analyzer, postings: HashMap<Box<str>, Vec<(u32, u32)>>, lens: Vec<u32> },
    Stored,
}

impl Builder {
    fn new(kind: FieldType, analyzer: Option<Analyzer>) -> Builder {
        match kind {
            FieldType::Keyword => Builder::Keyword { terms: HashMap::new(), offsets: vec![0], values: Vec::new() },
            FieldType::Integer | FieldType::Date => Builder::Int { values: Vec::new(), present: Vec::new() },
            FieldType::Float => Builder::Float { values: Vec::new(), present: Vec::new() },
            FieldType::Bool => Builder::Bool(Vec::new()),
            FieldType::GeoPoint => Builder::Geo { lat: Vec::new(), lon: Vec::new() },
            FieldType::Text => {
                Builder::Text { analyzer: analyzer.unwrap_or_default(), postings: HashMap::new(), lens: Vec::new() }
            }
            FieldType::Json => Builder::Stored,
        }
    }

    fn push(&mut self, row: u32, value: Option<Typed>) {
        match (self, value) {
            (Builder::Keyword { terms, offsets, values }, v) => {
                let start = values.len();
                if let Some(Typed::Keywords(kws)) = v {
                    for k in kws {
                        let n = terms.len() as u32;
                        values.push(*terms.entry(k).or_insert(n));
                    }
                }
                debug_assert!(values.len() - start < u32::MAX as usize);
                offsets.push(values.len() as u32);
            }
            (Builder::Int { values, present }, v) => match v {
                Some(Typed::Int(i) | Typed::Date(i)) => {
                    values.push(i);
                    present.push(row);
                }
                _ => values.push(0),
            },
            (Builder::Float { values, present }, v) => match v {
                Some(Typed::Float(f)) => {
                    values.push(f);
                    present.push(row);
                }
                _ => values.push(0.0),
            },
            (Builder::Bool(values), v) => values.push(match v {
                Some(Typed::Bool(b)) => u8::from(b),
                _ => 2,
            }),
            (Builder::Geo { lat, lon }, v) => {
                let (a, o) = match v {
                    Some(Typed::Geo { lat, lon }) => (lat, lon),
                    _ => (f64::NAN, f64::NAN),
                };
                lat.push(a);
                lon.push(o);
            }
            (Builder::Text { analyzer, postings, lens }, v) => {
                let mut n = 0u32;
                if let Some(Typed::Text(s)) = v {
                    let mut counts: HashMap<String, u32> = HashMap::new();
                    for w in words(*analyzer, &s) {
                        *counts.entry(w).or_default() += 1;
                        n += 1;
                    }
                    for (w, c) in counts {
                        postings.entry(w.into_boxed_str()).or_default().push((row, c));
                    }
                }
                lens.push(n);
            }
            (Builder::Stored, _) => {}
        }
    }

    fn finish(self, rows: usize) -> Column {
        match self {
            Builder::Keyword { terms, offsets, values } => {
                let mut dict: Vec<(String, u32)> = terms.into_iter().collect();
                dict.sort_unstable();
                let mut rank = vec![0u32; dict.len()];
                for (i, (_, old)) in dict.iter().enumerate() {
                    rank[*old as usize] = i as u32;
                }
                let mut values: Vec<u32> = values.into_iter().map(|v| rank[v as usize]).collect();
                let mut postings = vec![Vec::new(); dict.len()];
                for r in 0..rows {
                    let (a, b) = (offsets[r] as usize, offsets[r + 1] as usize);
                    values[a..b].sort_unstable();
                    for &t in &values[a..b] {
                        postings[t as usize].push(r as u32);
                    }
                }
                let dict = dict.into_iter().map(|(s, _)| s.into_boxed_str()).collect();
                let dense = (0..postings.len() as u32)
                    .filter(|&t| postings[t as usize].len() * DENSE_SHARE >= rows)
                    .map(|t| {
                        let mut bits = Bits::new(rows);
                        postings[t as usize].iter().for_each(|&r| bits.set(r));
                        (t, bits)
                    })
                    .collect();
                Column::Keyword(KeywordColumn { dict, offsets, values, postings, dense })
            }
            Builder::Int { values, mut present } => {
                present.sort_by_key(|&r| (values[r as usize], r));
                let mut bits = Bits::new(rows);
                for &r in &present {
                    bits.set(r);
                }
                let sorted_values = present.iter().map(|&r| values[r as usize]).collect();
                Column::Int(NumColumn { values, present: bits, sorted: present, sorted_values })
            }
            Builder::Float { values, mut present } => {
                present.sort_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]).then(a.cmp(&b)));
                let mut bits = Bits::new(rows);
                for &r in &present {
                    bits.set(r);
                }
                let sorted_values = present.iter().map(|&r| values[r as usize]).collect();
                Column::Float(NumColumn { values, present: bits, sorted: present, sorted_values })
            }
            Builder::Bool(v) => Column::Bool(v),
            Builder::Geo { lat, lon } => {
                Column::Geo(GeoColumn { points: lat.into_iter().zip(lon).map(|(a, o)| [a, o]).collect() })
            }
            Builder::Text { analyzer, postings, lens } => {
                let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
                let mut words: Vec<Box<str>> = postings.keys().cloned().collect();
                words.sort_unstable();
                #[allow(clippy::cast_precision_loss)] // an average
                let average_len = if rows == 0 { 1.0 } else { (total as f64 / rows as f64).max(1.0) as f32 };
                Column::Text(TextColumn { analyzer, postings, words, lens, average_len })
            }
            Builder::Stored => Column::Stored,
        }
    }
}

/// Builds the indexes from records given in id order.
pub(crate) struct IndexBuilder {
    ids: Vec<Box<str>>,
    builders: Vec<Builder>,
    names: Vec<String>,
    specs: Vec<super::FieldSpec>,
}

impl IndexBuilder {
    pub fn new(schema: &Schema) -> IndexBuilder {
        let specs: Vec<_> = schema.fields.values().cloned().collect();
        IndexBuilder {
            ids: Vec::new(),
            builders: specs.iter().map(|s| Builder::new(s.kind, s.analyzer)).collect(),
            names: schema.fields.keys().cloned().collect(),
            specs,
        }
    }

    /// Adds the next record. Records were checked when written; a value
    /// that no longer fits (never expected) is indexed as absent.
    pub fn add(&mut self, id: &str, record: &Map<String, Json>) {
        debug_assert!(self.ids.last().is_none_or(|last| **last < *id), "records come in id order");
        let row = self.ids.len() as u32;
        self.ids.push(id.into());
        for ((name, spec), b) in self.names.iter().zip(&self.specs).zip(&mut self.builders) {
            let v = record.get(name).filter(|v| !v.is_null()).and_then(|v| typed(spec, v).ok().flatten());
            b.push(row, v);
        }
    }

    pub fn finish(self) -> Index {
        let rows = self.ids.len();
        Index { columns: self.builders.into_iter().map(|b| b.finish(rows)).collect(), ids: self.ids, names: self.names }
    }
}

impl Index {
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// The row of a record id (rows are in id order).
    pub fn row_of(&self, id: &str) -> Option<u32> {
        self.ids.binary_search_by(|i| (**i).cmp(id)).ok().map(|r| r as u32)
    }

    pub fn column(&self, name: &str) -> Option<(usize, &Column)> {
        let i = self.names.iter().position(|n| n == name)?;
        Some((i, &self.columns[i]))
    }
}
