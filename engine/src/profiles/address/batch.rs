//! Batch geocoding: a CSV (or NDJSON) stream in, the same rows out with the
//! result columns Addok's CSV endpoint adds, in input order, on all cores.
//!
//! Rows are read in chunks; each chunk is geocoded by `threads` workers and
//! written before the next is read, so memory is bounded by the chunk size
//! whatever the file size.

use std::io::{BufRead, BufReader, Read, Write};

use super::{Feature, ReverseQuery, SearchQuery};
use crate::error::{Error, Result};
use crate::record::Point;
use crate::Database;

const CHUNK_ROWS: usize = 4096;
/// Longest query accepted, as for the HTTP API.
const QUERY_MAX_CHARS: usize = 200;

/// Text encoding of the input. A UTF-8 byte order mark at the start is
/// dropped whatever the encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Each row as UTF-8 when it is valid UTF-8, as Windows-1252 otherwise
    /// (files put together from several sources mix them); every row read
    /// so is reported ([`BatchSummary::transcoded`]).
    #[default]
    Auto,
    /// UTF-8 only: a row that is not is malformed, and written back as it
    /// came.
    Utf8,
    /// Windows-1252, a superset of Latin-1 used by French administrations.
    Latin1,
}

/// Input and output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchFormat {
    #[default]
    Csv,
    /// One JSON object per line; the output adds a `result` object.
    Ndjson,
}

/// What to do with each row.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Columns joined (with spaces) into the query; all columns when empty.
    pub columns: Vec<String>,
    /// Column holding a postcode filter for each row.
    pub postcode_column: Option<String>,
    pub citycode_column: Option<String>,
    /// Result type filter for every row.
    pub kind: Option<String>,
    /// Reverse geocode from these (latitude, longitude) columns instead.
    pub reverse: Option<(String, String)>,
    /// Field delimiter; detected from the header line when `None`.
    pub delimiter: Option<u8>,
    pub encoding: Encoding,
    pub format: BatchFormat,
    /// Rows whose best result scores at or below this stay unmatched (Addok: 0.5).
    pub min_score: f64,
    /// Result columns to add, in this order (Addok's `result_columns`); all when empty.
    pub result_columns: Vec<String>,
    pub threads: usize,
    /// End CSV lines with `\r\n`, as addok-csv (Python's csv module) does:
    /// what the HTTP endpoints answer. The command line writes `\n`.
    pub crlf: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            columns: Vec::new(),
            postcode_column: None,
            citycode_column: None,
            kind: None,
            reverse: None,
            delimiter: None,
            encoding: Encoding::Auto,
            format: BatchFormat::Csv,
            min_score: 0.5,
            result_columns: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            crlf: false,
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    pub rows: u64,
    pub matched: u64,
    pub unmatched: u64,
    /// Malformed rows: count and the first (line, reason).
    pub malformed: u64,
    pub first_malformed: Vec<(u64, String)>,
    /// Rows that were not UTF-8 and were read as Windows-1252 (with
    /// [`Encoding::Auto`]): count and the first lines.
    pub transcoded: u64,
    pub first_transcoded: Vec<u64>,
    /// Rows the encoding asked for does not fit: not valid UTF-8 under
    /// [`Encoding::Utf8`] (those are also malformed), valid UTF-8 with
    /// non-ASCII characters under [`Encoding::Latin1`] (read so, `é`
    /// becomes `Ã©`). Count and the first line, for one warning that says
    /// the encoding forced is likely wrong.
    pub misread: u64,
    pub first_misread: Option<u64>,
}

/// How many lines of each kind a summary names.
const FIRST_LINES: usize = 20;

impl BatchSummary {
    fn note_malformed(&mut self, line: u64, reason: String) {
        self.malformed += 1;
        if self.first_malformed.len() < FIRST_LINES {
            self.first_malformed.push((line, reason));
        }
    }

    fn note_misread(&mut self, line: u64) {
        self.misread += 1;
        self.first_misread.get_or_insert(line);
    }

    fn note_transcoded(&mut self, line: u64) {
        self.transcoded += 1;
        if self.first_transcoded.len() < FIRST_LINES {
            self.first_transcoded.push(line);
        }
    }
}

/// The first result columns: where the result is and how good it is.
const SEARCH_HEAD: [&str; 4] = ["latitude", "longitude", "result_label", "result_score"];
const REVERSE_HEAD: [&str; 4] = ["result_latitude", "result_longitude", "result_label", "result_distance"];
/// The columns both kinds of batch add after their head.
const RESULT_TAIL: [&str; 10] = [
    "result_type",
    "result_id",
    "result_housenumber",
    "result_name",
    "result_street",
    "result_postcode",
    "result_city",
    "result_context",
    "result_citycode",
    "result_status",
];

const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘', '’',
    '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// Windows-1252 bytes as text: every byte is a character.
fn cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9f => CP1252_HIGH[(b - 0x80) as usize],
            _ => char::from(b),
        })
        .collect()
}

/// How a row's bytes read as text.
enum Decoded {
    Text(Vec<String>),
    /// Not UTF-8, read as Windows-1252 ([`Encoding::Auto`]).
    Transcoded(Vec<String>),
    /// Not UTF-8 where only UTF-8 was asked for.
    Undecodable,
    /// Read as Windows-1252 as asked, though it is UTF-8 with non-ASCII
    /// characters: most likely the wrong encoding was forced.
    Misread(Vec<String>),
}

/// The fields of one row as text, all in one encoding: a row that is not
/// UTF-8 throughout is read whole as Windows-1252 under `Auto`.
fn decode_row<'a>(fields: impl Iterator<Item = &'a [u8]> + Clone, encoding: Encoding) -> Decoded {
    let utf8 = || fields.clone().map(|f| std::str::from_utf8(f).map(str::to_owned)).collect::<Result<Vec<_>, _>>();
    match encoding {
        Encoding::Latin1 => {
            let utf8_text =
                fields.clone().any(|f| !f.is_ascii()) && fields.clone().all(|f| std::str::from_utf8(f).is_ok());
            let text = fields.map(cp1252).collect();
            if utf8_text {
                Decoded::Misread(text)
            } else {
                Decoded::Text(text)
            }
        }
        Encoding::Utf8 => utf8().map_or(Decoded::Undecodable, Decoded::Text),
        Encoding::Auto => match utf8() {
            Ok(text) => Decoded::Text(text),
            Err(_) => Decoded::Transcoded(fields.map(cp1252).collect()),
        },
    }
}

/// A UTF-8 byte order mark, dropped from the input whatever its encoding.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The input without its byte order mark, if it has one.
fn without_bom<'a>(input: impl Read + 'a) -> Result<Box<dyn BufRead + 'a>> {
    let mut r = BufReader::with_capacity(1 << 16, input);
    let head = r.fill_buf().map_err(|e| Error::BadInput { line: 1, reason: e.to_string() })?;
    if head.starts_with(BOM) {
        r.consume(BOM.len());
    }
    Ok(Box::new(r))
}

/// The header of a CSV input as the batch reads it (BOM dropped, decoded
/// as `options` says, split by the delimiter given or detected), and that
/// delimiter: what a server checks the columns of a form against before it
/// answers.
pub fn read_header(head: &[u8], options: &BatchOptions) -> Result<(Vec<String>, u8)> {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    if first.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadInput { line: 1, reason: "empty file: a header line is required".into() });
    }
    let delimiter = options.delimiter.unwrap_or_else(|| detect_delimiter(&String::from_utf8_lossy(first)));
    let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).from_reader(first);
    let mut record = csv::ByteRecord::new();
    rdr.read_byte_record(&mut record).map_err(|e| Error::BadInput { line: 1, reason: e.to_string() })?;
    let header = match decode_row(record.iter(), options.encoding) {
        Decoded::Text(h) | Decoded::Transcoded(h) | Decoded::Misread(h) => h,
        Decoded::Undecodable => {
            return Err(Error::BadInput { line: 1, reason: "the header is not valid UTF-8: say its encoding".into() })
        }
    };
    Ok((header.into_iter().map(|h| h.trim().to_owned()).collect(), delimiter))
}

/// The delimiter of a header line: the most frequent of `, ; tab |` outside quotes.
pub fn detect_delimiter(line: &str) -> u8 {
    let mut counts = [0usize; 4];
    let candidates = [b';', b',', b'\t', b'|'];
    let mut quoted = false;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = candidates.iter().position(|c| *c == b) {
                counts[i] += 1;
            }
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], 4 - i)).unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

fn col(headers: &[String], name: &str) -> Result<usize> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::BadInput { line: 1, reason: format!("no column {name:?}; columns are {headers:?}") })
}

/// Column positions resolved once from the header.
struct Plan {
    query: Vec<usize>,
    postcode: Option<usize>,
    citycode: Option<usize>,
    reverse: Option<(usize, usize)>,
}

impl Plan {
    fn new(headers: &[String], o: &BatchOptions) -> Result<Plan> {
        let query = if o.columns.is_empty() {
            (0..headers.len()).collect()
        } else {
            o.columns.iter().map(|c| col(headers, c)).collect::<Result<_>>()?
        };
        Ok(Plan {
            query,
            postcode: o.postcode_column.as_deref().map(|c| col(headers, c)).transpose()?,
            citycode: o.citycode_column.as_deref().map(|c| col(headers, c)).transpose()?,
            reverse: match &o.reverse {
                Some((lat, lon)) => Some((col(headers, lat)?, col(headers, lon)?)),
                None => None,
            },
        })
    }
}

/// The outcome of one row.
enum Outcome {
    Found(Box<Feature>),
    NotFound,
    Skipped,
    Malformed,
}

fn geocode_row(db: &Database, plan: &Plan, o: &BatchOptions, row: &[String]) -> Result<Outcome> {
    let cell = |i: usize| row.get(i).map_or("", |s| s.trim());
    let mut filters = Vec::new();
    if let Some(k) = &o.kind {
        filters.push(("type".to_owned(), vec![k.clone()]));
    }
    for (name, c) in [("postcode", plan.postcode), ("citycode", plan.citycode)] {
        if let Some(v) = c.map(cell).filter(|v| !v.is_empty()) {
            filters.push((name.to_owned(), vec![v.to_owned()]));
        }
    }
    let found = if let Some((la, lo)) = plan.reverse {
        let (Ok(lat), Ok(lon)) = (cell(la).parse::<f64>(), cell(lo).parse::<f64>()) else {
            return Ok(Outcome::Skipped);
        };
        let at = Point { lat, lon };
        if !at.is_valid() {
            return Ok(Outcome::Skipped);
        }
        db.reverse(&ReverseQuery { at, limit: 1, filters })?
    } else {
        let q: Vec<&str> = plan.query.iter().map(|i| cell(*i)).filter(|s| !s.is_empty()).collect();
        let q = q.join(" ");
        if q.is_empty() || q.chars().count() > QUERY_MAX_CHARS * 2 {
            return Ok(Outcome::Skipped);
        }
        let mut sq = SearchQuery::new(q);
        sq.limit = 1;
        sq.autocomplete = false;
        sq.filters = filters;
        db.search(&sq)?
    };
    Ok(match found.into_iter().next() {
        Some(f) if plan.reverse.is_some() || f.score > o.min_score => Outcome::Found(Box::new(f)),
        _ => Outcome::NotFound,
    })
}

impl BatchOptions {
    /// Checks what can be checked before reading any input, so that a server
    /// can refuse a request before it starts answering.
    pub fn check(&self) -> Result<()> {
        result_selection(self).map(|_| ())
    }
}

/// The result columns to write and their positions in [`result_cells`].
fn result_selection(o: &BatchOptions) -> Result<Vec<(&'static str, usize)>> {
    let head = if o.reverse.is_some() { REVERSE_HEAD } else { SEARCH_HEAD };
    let all: Vec<&'static str> = head.iter().chain(RESULT_TAIL.iter()).copied().collect();
    if o.result_columns.is_empty() {
        return Ok(all.iter().copied().zip(0..).collect());
    }
    o.result_columns
        .iter()
        .map(|c| {
            all.iter().position(|a| a == c).map(|i| (all[i], i)).ok_or_else(|| Error::BadInput {
                line: 0,
                reason: format!("unknown result column {c:?}; result columns are {all:?}"),
            })
        })
        .collect()
}

/// A score as addok-csv writes it: rounded to 2 decimals, then printed as
/// Python prints a float ("0.9", "0.95", "1.0").
fn score_cell(score: f64) -> String {
    let s = ((score * 100.0).round() / 100.0).to_string();
    if s.contains('.') {
        s
    } else {
        s + ".0"
    }
}

fn result_cells(outcome: &Outcome, reverse: bool) -> Vec<String> {
    let mut cells = vec![String::new(); SEARCH_HEAD.len() + RESULT_TAIL.len()];
    let status = match outcome {
        Outcome::Found(f) => {
            let p = |n: &str| match f.prop(n) {
                Some(crate::Prop::Str(s)) => s.clone(),
                Some(crate::Prop::Int(i)) => i.to_string(),
                Some(crate::Prop::Num(x)) => x.to_string(),
                Some(crate::Prop::Bool(b)) => b.to_string(),
                None => String::new(),
            };
            cells[0] = f.point.lat.to_string();
            cells[1] = f.point.lon.to_string();
            cells[2] = p("label");
            cells[3] = if reverse { p("distance") } else { score_cell(f.score) };
            cells[4] = p("type");
            cells[5] = p("id");
            cells[6] = p("housenumber");
            // addok-csv writes the street's own name here, without the
            // number that the JSON `name` of a housenumber carries.
            cells[7] = if f.prop("housenumber").is_some() { p("street") } else { p("name") };
            cells[8] = p("street");
            cells[9] = p("postcode");
            cells[10] = p("city");
            cells[11] = p("context");
            cells[12] = p("citycode");
            "ok"
        }
        Outcome::NotFound => "not-found",
        Outcome::Skipped => "skipped",
        Outcome::Malformed => "malformed",
    };
    status.clone_into(&mut cells[13]);
    cells
}

/// One input row.
struct Row {
    cells: Vec<String>,
    /// Geocoded; a malformed row is written back with no result.
    ok: bool,
    /// A row that could not be read as text, written back byte for byte.
    raw: Option<csv::ByteRecord>,
}

/// Runs the rows through `threads` workers, keeping their order.
fn geocode_chunk(db: &Database, plan: &Plan, o: &BatchOptions, rows: &[Row]) -> Result<Vec<Outcome>> {
    let threads = o.threads.clamp(1, 256);
    let per = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| if r.ok { geocode_row(db, plan, o, &r.cells) } else { Ok(Outcome::Malformed) })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for h in handles {
            out.extend(h.join().map_err(|_| Error::Store("a batch worker panicked".into()))??);
        }
        Ok(out)
    })
}

fn tally(summary: &mut BatchSummary, outcome: &Outcome) {
    summary.rows += 1;
    match outcome {
        Outcome::Found(_) => summary.matched += 1,
        _ => summary.unmatched += 1,
    }
}

impl Database {
    /// Geocodes every row of `input` into `output`. `progress` is called
    /// with the number of rows done after each chunk.
    pub fn batch(
        &self,
        input: impl Read,
        output: impl Write,
        options: &BatchOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BatchSummary> {
        let input = without_bom(input)?;
        match options.format {
            BatchFormat::Csv => self.batch_csv(input, output, options, progress),
            BatchFormat::Ndjson => self.batch_ndjson(input, output, options, progress),
        }
    }

    fn batch_csv(
        &self,
        mut input: Box<dyn BufRead + '_>,
        output: impl Write,
        o: &BatchOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BatchSummary> {
        let head = input.fill_buf().map_err(|e| Error::BadInput { line: 1, reason: e.to_string() })?;
        let (headers, delimiter) = read_header(head, o)?;
        let mut rdr =
            csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(input);
        rdr.byte_headers().map_err(|e| Error::BadInput { line: 1, reason: e.to_string() })?;
        let plan = Plan::new(&headers, o)?;
        let io = |e: csv::Error| Error::Store(format!("writing output: {e}"));
        let terminator = if o.crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
        let mut w =
            csv::WriterBuilder::new().delimiter(delimiter).terminator(terminator).flexible(true).from_writer(output);
        let selected = result_selection(o)?;
        // A result column named like an input column is no second column
        // of that name (a reader keyed by name would see one of the two):
        // as addok-csv does, the result goes into the input's column when
        // the row has one, and the input's value stays otherwise.
        let (into_input, extra): (Vec<_>, Vec<_>) =
            selected.into_iter().partition(|(name, _)| headers.iter().any(|h| h == name));
        let into_input: Vec<(usize, usize)> =
            into_input.iter().filter_map(|(name, i)| headers.iter().position(|h| h == name).map(|c| (c, *i))).collect();
        w.write_record(headers.iter().map(String::as_str).chain(extra.iter().map(|(name, _)| *name))).map_err(io)?;
        let mut summary = BatchSummary::default();
        let mut record = csv::ByteRecord::new();
        let mut done = false;
        while !done {
            let mut rows: Vec<Row> = Vec::with_capacity(CHUNK_ROWS);
            while rows.len() < CHUNK_ROWS {
                match rdr.read_byte_record(&mut record) {
                    Ok(false) => {
                        done = true;
                        break;
                    }
                    Ok(true) => rows.push(csv_row(&record, headers.len(), o.encoding, &mut summary)),
                    Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        return Err(Error::BadInput { line, reason: format!("the input cannot be read: {e}") });
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        summary.note_malformed(line, e.to_string());
                        rows.push(Row { cells: Vec::new(), ok: false, raw: None });
                    }
                }
            }
            let outcomes = geocode_chunk(self, &plan, o, &rows)?;
            for (row, outcome) in rows.iter().zip(&outcomes) {
                tally(&mut summary, outcome);
                let result = result_cells(outcome, o.reverse.is_some());
                let extra_cells = extra.iter().map(|(_, i)| result[*i].as_bytes());
                if let Some(raw) = &row.raw {
                    let cells: Vec<&[u8]> = raw.iter().collect();
                    w.write_record(padded(cells, headers.len()).into_iter().chain(extra_cells)).map_err(io)?;
                } else {
                    let mut cells = padded(row.cells.iter().map(String::as_bytes).collect(), headers.len());
                    for (c, i) in &into_input {
                        if !result[*i].is_empty() {
                            cells[*c] = result[*i].as_bytes();
                        }
                    }
                    w.write_record(cells.into_iter().chain(extra_cells)).map_err(io)?;
                }
            }
            progress(rows.len() as u64);
        }
        w.flush().map_err(|e| Error::Store(format!("writing output: {e}")))?;
        Ok(summary)
    }

    fn batch_ndjson(
        &self,
        mut input: Box<dyn BufRead + '_>,
        mut output: impl Write,
        o: &BatchOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BatchSummary> {
        let mut summary = BatchSummary::default();
        let mut line_no = 0u64;
        let mut done = false;
        let write_err = |e: std::io::Error| Error::Store(format!("writing output: {e}"));
        // Fields are read by name into a row, then handled like CSV columns.
        let query_fields = if o.columns.is_empty() { vec!["q".to_owned()] } else { o.columns.clone() };
        let mut headers = query_fields.clone();
        headers.extend([&o.postcode_column, &o.citycode_column].into_iter().flatten().cloned());
        if let Some((la, lo)) = &o.reverse {
            headers.extend([la.clone(), lo.clone()]);
        }
        let plan = Plan::new(&headers, &BatchOptions { columns: query_fields, ..o.clone() })?;
        let extra = result_selection(o)?;
        let mut buf = Vec::new();
        while !done {
            let mut objects: Vec<Option<serde_json::Map<String, serde_json::Value>>> = Vec::new();
            let mut rows: Vec<Row> = Vec::with_capacity(CHUNK_ROWS);
            while rows.len() < CHUNK_ROWS {
                buf.clear();
                let n = input.read_until(b'\n', &mut buf).map_err(|e| Error::BadInput {
                    line: line_no + 1,
                    reason: format!("the input cannot be read: {e}"),
                })?;
                if n == 0 {
                    done = true;
                    break;
                }
                line_no += 1;
                let text = match decode_row(std::iter::once(&buf[..]), o.encoding) {
                    Decoded::Text(mut t) => t.pop().unwrap_or_default(),
                    Decoded::Misread(mut t) => {
                        summary.note_misread(line_no);
                        t.pop().unwrap_or_default()
                    }
                    Decoded::Transcoded(mut t) => {
                        summary.note_transcoded(line_no);
                        t.pop().unwrap_or_default()
                    }
                    Decoded::Undecodable => {
                        summary.note_misread(line_no);
                        summary.note_malformed(line_no, "not valid UTF-8".into());
                        rows.push(Row { cells: Vec::new(), ok: false, raw: None });
                        objects.push(None);
                        continue;
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
                    Ok(obj) => {
                        let cells = headers
                            .iter()
                            .map(|h| match obj.get(h) {
                                Some(serde_json::Value::String(s)) => s.clone(),
                                Some(serde_json::Value::Null) | None => String::new(),
                                Some(v) => v.to_string(),
                            })
                            .collect();
                        rows.push(Row { cells, ok: true, raw: None });
                        objects.push(Some(obj));
                    }
                    Err(e) => {
                        summary.note_malformed(line_no, e.to_string());
                        rows.push(Row { cells: Vec::new(), ok: false, raw: None });
                        objects.push(None);
                    }
                }
            }
            let outcomes = geocode_chunk(self, &plan, o, &rows)?;
            for (obj, outcome) in objects.into_iter().zip(&outcomes) {
                tally(&mut summary, outcome);
                let mut obj = obj.unwrap_or_default();
                let cells = result_cells(outcome, o.reverse.is_some());
                let result: serde_json::Map<String, serde_json::Value> = extra
                    .iter()
                    .map(|(k, i)| (k, cells[*i].clone()))
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| {
                        let key = k.trim_start_matches("result_").to_owned();
                        // Programs want numbers as numbers.
                        let value = match (key.as_str(), v.parse::<f64>().ok().and_then(serde_json::Number::from_f64)) {
                            ("latitude" | "longitude" | "score" | "distance", Some(n)) => serde_json::Value::Number(n),
                            _ => serde_json::Value::String(v),
                        };
                        (key, value)
                    })
                    .collect();
                obj.insert("result".to_owned(), serde_json::Value::Object(result));
                serde_json::to_writer(&mut output, &obj).map_err(|e| Error::Store(format!("writing output: {e}")))?;
                output.write_all(b"\n").map_err(write_err)?;
            }
            progress(rows.len() as u64);
        }
        output.flush().map_err(write_err)?;
        Ok(summary)
    }
}

/// A row's cells with empty ones added up to the header's width: a short
/// row lines up with the header; a long one (malformed) keeps every cell it
/// came with, the result columns after them.
fn padded(mut cells: Vec<&[u8]>, width: usize) -> Vec<&[u8]> {
    if cells.len() < width {
        cells.resize(width, b"");
    }
    cells
}

/// One CSV record as a row: decoded as the options say, reported when it
/// was transcoded or could not be, checked against the header's width.
fn csv_row(record: &csv::ByteRecord, width: usize, encoding: Encoding, summary: &mut BatchSummary) -> Row {
    let line = record.position().map_or(0, csv::Position::line);
    let cells = match decode_row(record.iter(), encoding) {
        Decoded::Text(cells) => cells,
        Decoded::Misread(cells) => {
            summary.note_misread(line);
            cells
        }
        Decoded::Transcoded(cells) => {
            summary.note_transcoded(line);
            cells
        }
        Decoded::Undecodable => {
            summary.note_misread(line);
            summary.note_malformed(line, "not valid UTF-8 (use the auto or latin1 encoding)".into());
            return Row { cells: Vec::new(), ok: false, raw: Some(record.clone()) };
        }
    };
    let ok = cells.len() == width;
    if !ok {
        summary.note_malformed(line, format!("{} fields, the header has {width}", cells.len()));
    }
    Row { cells, ok, raw: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_written_as_addok_csv_writes_them() {
        for (score, cell) in
            [(0.9, "0.9"), (0.9012, "0.9"), (0.951, "0.95"), (0.996, "1.0"), (1.0, "1.0"), (0.0, "0.0")]
        {
            assert_eq!(score_cell(score), cell, "{score}");
        }
    }

    #[test]
    fn delimiters_are_detected_outside_quotes() {
        assert_eq!(detect_delimiter("a;b;c"), b';');
        assert_eq!(detect_delimiter("a,b,c"), b',');
        assert_eq!(detect_delimiter("a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter("a|b|c"), b'|');
        assert_eq!(detect_delimiter("\"a,b,c\";d"), b';');
        assert_eq!(detect_delimiter("single"), b',');
    }

    #[test]
    fn rows_are_read_in_one_encoding_each() {
        let row = |fields: &[&[u8]], e| match decode_row(fields.iter().copied(), e) {
            Decoded::Text(t) => ("text", t),
            Decoded::Transcoded(t) => ("transcoded", t),
            Decoded::Undecodable => ("undecodable", Vec::new()),
            Decoded::Misread(t) => ("misread", t),
        };
        let latin: &[&[u8]] = &[b"rue de l'\xe9glise \x80", "caf\u{e9}".as_bytes()];
        assert_eq!(row(latin, Encoding::Auto), ("transcoded", vec!["rue de l'église €".into(), "cafÃ©".into()]));
        assert_eq!(row(latin, Encoding::Utf8).0, "undecodable");
        let utf8: &[&[u8]] = &["église".as_bytes()];
        assert_eq!(row(utf8, Encoding::Auto), ("text", vec!["église".to_owned()]));
        // Read as asked, and marked: UTF-8 read as Windows-1252 is mojibake.
        assert_eq!(row(utf8, Encoding::Latin1), ("misread", vec!["Ã©glise".to_owned()]));
        let ascii: &[&[u8]] = &[b"rue"];
        assert_eq!(row(ascii, Encoding::Latin1).0, "text");
        let o = BatchOptions::default();
        assert_eq!(
            read_header(b"\xef\xbb\xbfid;adresse\r\nx", &o).unwrap(),
            (vec!["id".into(), "adresse".into()], b';')
        );
        let latin1 = BatchOptions { encoding: Encoding::Latin1, ..BatchOptions::default() };
        assert_eq!(read_header(b"\xef\xbb\xbfid;ville\n", &latin1).unwrap().0, ["id", "ville"]);
    }
}
