//! Import formats, read as streams: BAN NDJSON (the Addok import format) and
//! BAN CSV (`adresses-XX.csv`), plain or gzip. Each yields [`Entry`]s to a
//! sink; a bad line is reported with its number.
//!
//! What the formats mean for records already in the database:
//! - an NDJSON street (or any document) that carries a `housenumbers` object
//!   lists its numbers in full: numbers it no longer lists are removed when
//!   it is imported again ([`Entry::Family`]); one without that key leaves the
//!   numbers it had;
//! - a BAN CSV row is one housenumber, added or replaced. Streets and
//!   municipalities have no rows of their own: they are derived, when the
//!   import commits, from every housenumber the database then holds for
//!   them, not only from the rows of the files imported ([`Derived`]);
//! - an id the importer makes up (`<street>_<number>` for a housenumber
//!   without one, a CSV street's id) never replaces a record of another kind
//!   or another street: that is refused as [`Error::IdCollision`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::docs::id_hash;
use crate::error::{Error, Result};
use crate::geo::lambert93;
use crate::record::{Field, Point, Record, Value};

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document per line: municipality, street, locality or
    /// housenumber, streets carrying their `housenumbers`.
    BanNdjson,
    /// `;`-separated, one housenumber a row; streets and municipalities are
    /// derived from the rows.
    BanCsv,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "ban-ndjson" | "ndjson" => Ok(Format::BanNdjson),
            "ban-csv" | "csv" => Ok(Format::BanCsv),
            other => Err(Error::UnknownFormat(other.to_owned())),
        }
    }
}

/// What an importer hands to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// One record, added or replacing the record with its id.
    Record(Record),
    /// A document that lists its children in full (a street and its
    /// housenumbers): children it no longer lists are removed.
    Family { parent: Record, children: Vec<Child> },
}

/// A child of a [`Entry::Family`].
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub record: Record,
    /// The id was made up by the importer, not given by the data: it may
    /// only replace the same street's housenumber.
    pub generated_id: bool,
}

/// Streets and municipalities that BAN CSV rows name, to be derived from
/// their housenumbers when the import commits.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// Street id -> its name, postcode, commune: from its first row in a
    /// file, from the last file that names it.
    pub streets: HashMap<String, Place>,
    /// INSEE code -> the commune's name and postcode, likewise.
    pub communes: HashMap<String, Place>,
}

/// What a CSV row says of the street or commune it is in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub name: String,
    pub postcode: String,
    pub citycode: String,
    pub city: String,
}

impl Derived {
    pub fn is_empty(&self) -> bool {
        self.streets.is_empty() && self.communes.is_empty()
    }

    /// Adds what another file named; later files win.
    pub fn merge(&mut self, other: Derived) {
        self.streets.extend(other.streets);
        self.communes.extend(other.communes);
    }
}

/// The field that marks a street or municipality derived from its
/// housenumbers, not given by a document of its own: only such a record is
/// derived again, and a feature does not show it.
pub const DERIVED_FIELD: &str = "_derived";

/// Whether a record was derived from its housenumbers.
pub(crate) fn is_derived(r: &Record) -> bool {
    r.get(DERIVED_FIELD).is_some()
}

/// What a derived record says of its street or commune.
pub(crate) fn place_of(r: &Record) -> Place {
    let get = |name: &str| r.get(name).and_then(|v| v.first_str()).unwrap_or("").to_owned();
    Place { name: get("name"), postcode: get("postcode"), citycode: get("citycode"), city: get("city") }
}

/// The record of a derived street or municipality: its point is the centre
/// of its `n` housenumbers, its importance grows with their number.
pub(crate) fn derived_record(id: &str, kind: &str, p: &Place, centre: Point, n: u64) -> Record {
    let importance = if kind == "municipality" {
        ((1.0 + n as f64 / 3.0).ln() / 20.0).min(1.0)
    } else {
        ((1.0 + n as f64).ln() / 20.0).min(1.0)
    };
    let mut f = vec![Field { name: "name".into(), value: Value::Str(p.name.clone()) }];
    if !p.postcode.is_empty() {
        f.push(Field { name: "postcode".into(), value: Value::Str(p.postcode.clone()) });
    }
    f.push(Field { name: "citycode".into(), value: Value::Str(p.citycode.clone()) });
    let (x, y) = lambert93(centre);
    f.push(Field { name: "x".into(), value: Value::Num(x) });
    f.push(Field { name: "y".into(), value: Value::Num(y) });
    f.push(Field { name: "city".into(), value: Value::Str(p.city.clone()) });
    f.push(Field { name: "context".into(), value: Value::Str(department(&p.citycode).to_owned()) });
    f.push(Field { name: "importance".into(), value: Value::Num((importance * 1e5).round() / 1e5) });
    f.push(Field { name: DERIVED_FIELD.into(), value: Value::Bool(true) });
    Record { id: id.to_owned(), kind: kind.to_owned(), parent: None, point: Some(centre), fields: f }
}

/// Opens a file as a stream of text, decompressing gzip when the file starts
/// with the gzip magic number. `counter` sees the bytes read from disk.
pub fn open_input(path: &Path, counter: impl FnMut(u64) + Send + 'static) -> Result<Box<dyn BufRead + Send>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut raw = BufReader::with_capacity(1 << 16, Counting { inner: file, counter });
    let magic = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(raw))))
    } else {
        Ok(Box::new(raw))
    }
}

struct Counting<R, F> {
    inner: R,
    counter: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.counter)(n as u64);
        Ok(n)
    }
}

/// Guesses the format from the file name, then from the first byte.
pub fn detect_format(path: &Path, head: &[u8]) -> Result<Format> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name = name.trim_end_matches(".gz");
    if name.ends_with(".csv") {
        return Ok(Format::BanCsv);
    }
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") || name.ends_with(".json") {
        return Ok(Format::BanNdjson);
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(Format::BanNdjson),
        Some(_) if head.contains(&b';') => Ok(Format::BanCsv),
        _ => Err(Error::UnknownFormat(path.display().to_string())),
    }
}

/// What to do with a malformed line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Stop; nothing of this import is committed.
    #[default]
    Fail,
    /// Report the line and go on.
    Skip,
}

/// Lines skipped, with the first reasons.
#[derive(Debug, Default, Clone)]
pub struct Skipped {
    pub count: u64,
    /// (line number, reason) of the first skipped lines.
    pub first: Vec<(u64, String)>,
}

impl Skipped {
    fn note(&mut self, on_error: OnError, line: u64, reason: String) -> Result<()> {
        if on_error == OnError::Fail {
            return Err(Error::BadInput { line, reason });
        }
        self.count += 1;
        if self.first.len() < 20 {
            self.first.push((line, reason));
        }
        Ok(())
    }
}

/// The sink of [`read`].
pub type Sink<'a> = dyn FnMut(Entry) -> Result<()> + 'a;

/// Reads a whole stream in `format`, handing each entry to `sink`; returns
/// the streets and municipalities its rows name, to derive at commit.
pub fn read(
    input: impl BufRead + Send,
    format: Format,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut Sink<'_>,
) -> Result<Derived> {
    match format {
        Format::BanNdjson => read_ndjson(input, on_error, skipped, sink).map(|()| Derived::default()),
        Format::BanCsv => read_ban_csv(input, on_error, skipped, sink),
    }
}

/// Hands an entry to the sink; an id collision is the line's fault, and is
/// skipped like any bad line when the caller asked for that.
fn deliver(sink: &mut Sink<'_>, entry: Entry, on_error: OnError, skipped: &mut Skipped, line: u64) -> Result<()> {
    match sink(entry) {
        Err(e @ Error::IdCollision { .. }) => skipped.note(on_error, line, e.to_string()),
        other => other,
    }
}

/// A stream that cannot be read any further (a truncated or corrupt gzip
/// file, a disk error) fails the import whatever `OnError` says: skipping
/// it would commit a database that silently lacks the rest of the file.
/// The longest line an import reads (a whole street with its housenumbers
/// is a few hundred KB at most): memory stays bounded whatever comes,
/// a gzip body that inflates to one endless line included.
pub const MAX_LINE: usize = 16 << 20;

fn too_long(line: u64) -> Error {
    Error::BadInput { line, reason: format!("the line is longer than {} MiB", MAX_LINE >> 20) }
}

fn unreadable(line: u64, e: impl std::fmt::Display) -> Error {
    Error::BadInput {
        line,
        reason: format!("the input cannot be read past this point: {e} (truncated or corrupt file?)"),
    }
}

/// Fields that hold numbers: given as a string ("0.9", as some exports
/// write them), they are stored as the number, so that they rank and come
/// back as numbers; a string that is no number is refused.
const NUMERIC_FIELDS: [&str; 4] = ["importance", "population", "x", "y"];

fn numeric(key: &str, v: &Json) -> std::result::Result<Option<Value>, String> {
    match v {
        Json::String(s) if NUMERIC_FIELDS.contains(&key) => match s.trim() {
            "" => Ok(None),
            t => match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(Value::Num(x))),
                _ => Err(format!("\"{key}\" must be a number, not {s:?}")),
            },
        },
        _ => Ok(json_value(v)),
    }
}

/// The fields of a JSON object, but for the keys the format gives a
/// meaning of their own.
fn json_fields(obj: &Map<String, Json>) -> std::result::Result<Vec<Field>, String> {
    let mut fields = Vec::with_capacity(obj.len());
    for (k, v) in obj.iter().filter(|(k, _)| !SKIP_KEYS.contains(&k.as_str())) {
        if let Some(value) = numeric(k, v)? {
            fields.push(Field { name: k.clone(), value });
        }
    }
    Ok(fields)
}

fn json_value(v: &Json) -> Option<Value> {
    match v {
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(Value::Str(s.clone())),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Num(n.as_f64()?),
        }),
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Array(items) => {
            let list: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    Json::String(s) => Some(s.clone()),
                    Json::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect();
            match list.len() {
                0 => None,
                1 => list.into_iter().next().map(Value::Str),
                _ => Some(Value::List(list)),
            }
        }
        Json::Null | Json::Object(_) => None,
    }
}

fn point_of(obj: &Map<String, Json>) -> std::result::Result<Point, String> {
    let num = |k: &str| obj.get(k).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
    let (Some(lat), Some(lon)) = (num("lat"), num("lon")) else {
        return Err("missing or non-numeric lat/lon".into());
    };
    let p = Point { lat, lon };
    if !p.is_valid() {
        return Err(format!("coordinates out of range: lat {lat}, lon {lon}"));
    }
    Ok(p)
}

/// Adds Lambert-93 x/y when the source did not give them.
fn ensure_xy(fields: &mut Vec<Field>, p: Point) {
    if !fields.iter().any(|f| f.name == "x") {
        let (x, y) = lambert93(p);
        fields.push(Field { name: "x".into(), value: Value::Num(x) });
        fields.push(Field { name: "y".into(), value: Value::Num(y) });
    }
}

const SKIP_KEYS: [&str; 5] = ["id", "type", "lat", "lon", "housenumbers"];

/// Turns one NDJSON document into its entry (a street and its numbers).
fn ndjson_entry(line: &str) -> std::result::Result<Entry, String> {
    let obj: Map<String, Json> = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let id = match obj.get("id") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err("missing \"id\"".into()),
    };
    let kind = match obj.get("type") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(format!("document {id}: missing \"type\"")),
    };
    let point = point_of(&obj).map_err(|e| format!("document {id}: {e}"))?;
    let mut fields = json_fields(&obj).map_err(|e| format!("document {id}: {e}"))?;
    if !fields.iter().any(|f| f.name == "name") {
        return Err(format!("document {id}: missing \"name\""));
    }
    ensure_xy(&mut fields, point);
    let parent =
        if kind == "housenumber" { obj.get("parent").and_then(|p| p.as_str()).map(str::to_owned) } else { None };
    let Some(hn) = obj.get("housenumbers") else {
        return Ok(Entry::Record(Record { id, kind, parent, point: Some(point), fields }));
    };
    let Json::Object(numbers) = hn else {
        return Err(format!("document {id}: \"housenumbers\" is not an object"));
    };
    let mut children = Vec::with_capacity(numbers.len());
    for (number, data) in numbers {
        let Json::Object(data) = data else {
            return Err(format!("document {id}: housenumber {number:?} is not an object"));
        };
        if number.trim().is_empty() {
            return Err(format!("document {id}: a housenumber with an empty number"));
        }
        let p = point_of(data).map_err(|e| format!("document {id}, housenumber {number:?}: {e}"))?;
        let (hid, generated_id) = match data.get("id") {
            Some(Json::String(s)) if !s.is_empty() => (s.clone(), false),
            _ => (format!("{id}_{number}"), true),
        };
        let mut hf = vec![Field { name: "housenumber".into(), value: Value::Str(number.clone()) }];
        hf.extend(json_fields(data).map_err(|e| format!("document {id}, housenumber {number:?}: {e}"))?);
        ensure_xy(&mut hf, p);
        let record =
            Record { id: hid, kind: "housenumber".into(), parent: Some(id.clone()), point: Some(p), fields: hf };
        children.push(Child { record, generated_id });
    }
    Ok(Entry::Family { parent: Record { id, kind, parent, point: Some(point), fields }, children })
}

/// Lines parsed by the reading thread, in order: each with its number,
/// and its entry or why it is skipped.
type Parsed = Vec<(u64, std::result::Result<Entry, String>)>;

/// Lines parsed and handed over at once.
const PARSED_BATCH: usize = 64;

/// Reads and parses the lines on a thread of its own while the caller's
/// thread writes what they hold: parsing was a third of an import's main
/// thread. Entries are delivered, and bad lines noted, in line order, as
/// they would be on one thread; at most a few batches are held between the
/// two.
fn read_ndjson(
    input: impl BufRead + Send,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut Sink<'_>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(8);
        let reader = scope.spawn(move || parse_lines(input, &tx));
        // On an error below, `rx` is dropped on return, which stops the
        // reader at its next batch.
        for batch in rx {
            for (line_no, parsed) in batch {
                match parsed {
                    Ok(entry) => deliver(sink, entry, on_error, skipped, line_no)?,
                    Err(reason) => skipped.note(on_error, line_no, reason)?,
                }
            }
        }
        // The channel closed: the reader is done, at the end of the input
        // or on an error reading it.
        reader.join().unwrap_or_else(|_| Err(Error::Store("the thread reading the input panicked".into())))
    })
}

/// The reading thread of [`read_ndjson`]: sends every line's entry, in
/// batches, until the input ends, cannot be read (the error is returned
/// after every line before it was sent), or nobody receives.
fn parse_lines(mut input: impl BufRead, tx: &std::sync::mpsc::SyncSender<Parsed>) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    let mut batch = Vec::with_capacity(PARSED_BATCH);
    loop {
        buf.clear();
        let n = match input.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(batch);
                return Err(unreadable(line_no + 1, e));
            }
        };
        if n == 0 {
            let _ = tx.send(batch);
            return Ok(());
        }
        line_no += 1;
        if n > MAX_LINE {
            let _ = tx.send(batch);
            return Err(too_long(line_no));
        }
        match std::str::from_utf8(&buf) {
            Err(_) => batch.push((line_no, Err("not valid UTF-8".into()))),
            Ok(line) => {
                let line = line.trim();
                if !line.is_empty() {
                    batch.push((line_no, ndjson_entry(line)));
                }
            }
        }
        if batch.len() >= PARSED_BATCH
            && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(PARSED_BATCH))).is_err()
        {
            return Ok(());
        }
    }
}

fn department(citycode: &str) -> &str {
    let n = if citycode.starts_with("97") { 3 } else { 2 };
    citycode.get(..n).unwrap_or(citycode)
}

/// The columns BAN CSV needs.
const CSV_COLUMNS: [&str; 8] = ["id", "numero", "nom_voie", "code_postal", "code_insee", "nom_commune", "lon", "lat"];

/// The delimiters a BAN CSV may come split by: `;` is BAN's own, the others
/// are what a spreadsheet or a script writes when it saves the file again.
const CSV_DELIMITERS: [u8; 4] = [b';', b',', b'\t', b'|'];

/// A header cell as a column name (a UTF-8 BOM and spaces are no part of it).
fn column_name(h: &str) -> &str {
    h.trim_start_matches('\u{feff}').trim()
}

/// The delimiter of a BAN CSV, read from its header line before any column
/// is looked for: the one whose split finds the most needed columns (`;`
/// first on a tie, so a file with none is reported as BAN's own format).
fn csv_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let found = |d: u8| {
        let mut rdr = csv::ReaderBuilder::new().delimiter(d).has_headers(false).from_reader(line);
        let mut record = csv::StringRecord::new();
        match rdr.read_record(&mut record) {
            Ok(true) => CSV_COLUMNS.iter().filter(|c| record.iter().any(|h| column_name(h) == **c)).count(),
            _ => 0,
        }
    };
    let mut best = (CSV_DELIMITERS[0], found(CSV_DELIMITERS[0]));
    for d in &CSV_DELIMITERS[1..] {
        let n = found(*d);
        if n > best.1 {
            best = (*d, n);
        }
    }
    best.0
}

/// How a delimiter is named in a message.
fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".into(),
        d => format!("{:?}", d as char),
    }
}

/// The positions of the needed columns, or an error naming every missing
/// one and the columns the header has.
fn csv_columns(headers: &csv::StringRecord, delimiter: u8) -> Result<[usize; 8]> {
    let col = |name: &str| headers.iter().position(|h| column_name(h) == name);
    let missing: Vec<&str> = CSV_COLUMNS.iter().copied().filter(|c| col(c).is_none()).collect();
    if missing.is_empty() {
        return Ok(CSV_COLUMNS.map(|c| col(c).unwrap_or_default()));
    }
    // A header that is no header (a data line) must not make a message of
    // thousands of columns.
    let mut found: Vec<&str> = headers.iter().map(column_name).take(40).collect();
    if headers.len() > found.len() {
        found.push("...");
    }
    let reason = format!(
        "missing column{} {} (the header, split by {}, has {} column{}: {})",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", "),
        delimiter_name(delimiter),
        headers.len(),
        if headers.len() > 1 { "s" } else { "" },
        found.join(", ")
    );
    Err(Error::BadInput { line: 1, reason })
}

/// What [`UnixLines`] has passed on so far.
#[derive(Clone, Copy, Default)]
struct Ends {
    bytes: u64,
    last: u8,
    eof: bool,
}

/// The input with every line end made `\n` (CRLF, and a lone CR): the
/// csv reader counts lines by `\n` and ends a CRLF record at its `\r`, so
/// a Windows file named every line after the first blank one a line early.
struct UnixLines<R> {
    inner: R,
    /// The last byte read was a `\r`: a `\n` right after it is dropped.
    cr: bool,
    /// Read by the caller through the csv reader (`get_ref`).
    ends: Ends,
    /// Bytes passed on since the last line end: a line over [`MAX_LINE`]
    /// is an error, or the csv reader would hold all of it.
    line: usize,
}

impl<R: BufRead> Read for UnixLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let input = self.inner.fill_buf()?;
            if input.is_empty() || buf.is_empty() {
                self.ends.eof |= input.is_empty();
                return Ok(0);
            }
            let mut used = usize::from(self.cr && input[0] == b'\n');
            self.cr = false;
            let mut out = 0;
            // Runs without a CR are copied whole: a Unix file costs a memchr.
            while used < input.len() && out < buf.len() {
                let rest = &input[used..input.len().min(used + buf.len() - out)];
                let Some(i) = memchr::memchr(b'\r', rest) else {
                    buf[out..out + rest.len()].copy_from_slice(rest);
                    (used, out) = (used + rest.len(), out + rest.len());
                    continue;
                };
                buf[out..out + i].copy_from_slice(&rest[..i]);
                buf[out + i] = b'\n';
                (used, out) = (used + i + 1, out + i + 1);
                match input.get(used) {
                    Some(b'\n') => used += 1,
                    Some(_) => {}
                    None => self.cr = true,
                }
            }
            self.inner.consume(used);
            // The line this read ended (if any), and the one it left open.
            let ended = memchr::memchr(b'\n', &buf[..out]).map_or(0, |i| self.line + i);
            self.line = match memchr::memrchr(b'\n', &buf[..out]) {
                Some(i) => out - i - 1,
                None => self.line + out,
            };
            if self.line.max(ended) > MAX_LINE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a line is longer than {} MiB", MAX_LINE >> 20),
                ));
            }
            if out > 0 {
                self.ends = Ends { bytes: self.ends.bytes + out as u64, last: buf[out - 1], eof: false };
                return Ok(out);
            }
        }
    }
}

/// The line a record just read starts on. The csv reader's own position for
/// it is where it started reading, before the blank lines it skipped; what
/// it read since is those lines, the record's own line ends (in quoted
/// fields), and its end, unless the input ended first: in the last field
/// of an unclosed quote, the input's last line end is the field's.
fn record_line(before: u64, after: &csv::Position, ends: Ends, record: &csv::ByteRecord) -> u64 {
    let inner: usize = record.iter().map(|f| memchr::memchr_iter(b'\n', f).count()).sum();
    let swallowed = record.iter().next_back().is_some_and(|f| f.ends_with(b"\n"));
    let at_end = ends.eof && after.byte() == ends.bytes;
    let ended = !(at_end && (ends.last != b'\n' || swallowed));
    let blank = (after.line() - before).saturating_sub(inner as u64 + u64::from(ended));
    before + blank
}

fn read_ban_csv(
    mut input: impl BufRead,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut Sink<'_>,
) -> Result<Derived> {
    let head = input.fill_buf().map_err(|e| unreadable(1, e))?;
    let delimiter = csv_delimiter(head);
    let input = UnixLines { inner: input, cr: false, ends: Ends::default(), line: 0 };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(input);
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(unreadable(1, e)),
        Err(e) => return Err(Error::BadInput { line: 1, reason: e.to_string() }),
    };
    let [c_id, c_num, c_voie, c_cp, c_insee, c_commune, c_lon, c_lat] = csv_columns(&headers, delimiter)?;
    let col = |name: &str| headers.iter().position(|h| column_name(h) == name);
    let (c_fantoir, c_rep, c_x, c_y) = (col("id_fantoir"), col("rep"), col("x"), col("y"));
    let mut derived = Derived::default();
    let mut record = csv::StringRecord::new();
    loop {
        // The last record's buffers, reused.
        let mut bytes = std::mem::take(&mut record).into_byte_record();
        let before = rdr.position().line();
        let read = rdr.read_byte_record(&mut bytes);
        let line = record_line(before, rdr.position(), rdr.get_ref().ends, &bytes);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(unreadable(line, e)),
        }
        // Read as bytes, so that the line of a record that is not UTF-8 is
        // known too (its line ends counted).
        let Ok(read) = csv::StringRecord::from_byte_record(bytes) else {
            skipped.note(on_error, line, "not valid UTF-8".into())?;
            continue;
        };
        record = read;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let opt = |c: Option<usize>| c.map_or("", get);
        let (id, numero, voie, insee) = (get(c_id), get(c_num), get(c_voie), get(c_insee));
        if id.is_empty() || numero.is_empty() || voie.is_empty() || insee.is_empty() {
            skipped.note(on_error, line, "empty id, numero, nom_voie or code_insee".into())?;
            continue;
        }
        let (Ok(lat), Ok(lon)) = (get(c_lat).parse::<f64>(), get(c_lon).parse::<f64>()) else {
            skipped.note(on_error, line, "lat/lon are not numbers".into())?;
            continue;
        };
        let p = Point { lat, lon };
        if !p.is_valid() {
            skipped.note(on_error, line, format!("coordinates out of range: lat {lat}, lon {lon}"))?;
            continue;
        }
        let street_id = match opt(c_fantoir) {
            "" => format!("{insee}_{:08x}", id_hash(&crate::text::analysis::fold(voie)) as u32),
            f => f.to_owned(),
        };
        let rep = opt(c_rep);
        let number = if rep.is_empty() { numero.to_owned() } else { format!("{numero} {rep}") };
        let mut fields = vec![Field { name: "housenumber".into(), value: Value::Str(number) }];
        if let (Ok(x), Ok(y)) = (opt(c_x).parse::<f64>(), opt(c_y).parse::<f64>()) {
            fields.push(Field { name: "x".into(), value: Value::Num(x) });
            fields.push(Field { name: "y".into(), value: Value::Num(y) });
        }
        ensure_xy(&mut fields, p);
        let hn = Record {
            id: id.to_owned(),
            kind: "housenumber".into(),
            parent: Some(street_id.clone()),
            point: Some(p),
            fields,
        };
        deliver(sink, Entry::Record(hn), on_error, skipped, line)?;
        let place = |name: &str| Place {
            name: name.to_owned(),
            postcode: get(c_cp).to_owned(),
            citycode: insee.to_owned(),
            city: get(c_commune).to_owned(),
        };
        derived.streets.entry(street_id).or_insert_with(|| place(voie));
        derived.communes.entry(insee.to_owned()).or_insert_with(|| place(get(c_commune)));
    }
    Ok(derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of what `read` yields, families flattened, and the
    /// streets and communes it names.
    fn collect(input: &str, format: Format, on_error: OnError) -> (Result<Derived>, Vec<Record>, Skipped) {
        collect_bytes(input.as_bytes(), format, on_error)
    }

    fn collect_bytes(input: &[u8], format: Format, on_error: OnError) -> (Result<Derived>, Vec<Record>, Skipped) {
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        let r = read(input, format, on_error, &mut skipped, &mut |entry| {
            match entry {
                Entry::Record(r) => out.push(r),
                Entry::Family { parent, children } => {
                    out.push(parent);
                    out.extend(children.into_iter().map(|c| c.record));
                }
            }
            Ok(())
        });
        (r, out, skipped)
    }

    const STREET: &str = r#"{"id": "75102_1", "type": "street", "name": "Rue de la Paix", "postcode": "75002", "citycode": ["75102", "75056"], "lon": 2.33, "lat": 48.87, "city": "Paris", "importance": 0.7, "housenumbers": {"12": {"id": "75102_1_00012", "lon": 2.331, "lat": 48.871}, "12 bis": {"lon": 2.332, "lat": 48.872}}}"#;

    #[test]
    fn ndjson_street_with_numbers() {
        let (r, recs, _) = collect(STREET, Format::BanNdjson, OnError::Fail);
        r.unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].kind, "street");
        assert_eq!(recs[0].get("citycode"), Some(&Value::List(vec!["75102".into(), "75056".into()])));
        assert!(recs[0].get("x").is_some(), "x/y are computed when missing");
        assert_eq!(recs[1].id, "75102_1_00012");
        assert_eq!(recs[1].parent.as_deref(), Some("75102_1"));
        assert_eq!(recs[2].id, "75102_1_12 bis");
        assert_eq!(recs[2].get("housenumber"), Some(&Value::Str("12 bis".into())));
    }

    #[test]
    fn ndjson_bad_lines_fail_or_skip_with_line_numbers() {
        let input = format!(
            "{STREET}\nnot json\n{{\"id\": \"x\", \"type\": \"street\", \"name\": \"a\", \"lat\": 99, \"lon\": 1}}\n"
        );
        let (r, _, _) = collect(&input, Format::BanNdjson, OnError::Fail);
        assert!(matches!(r, Err(Error::BadInput { line: 2, .. })), "{r:?}");
        let (r, recs, skipped) = collect(&input, Format::BanNdjson, OnError::Skip);
        r.unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(skipped.count, 2);
        assert_eq!(skipped.first[0].0, 2);
        assert_eq!(skipped.first[1].0, 3);
    }

    #[test]
    fn ban_csv_derives_streets_and_municipalities() {
        let csv = "id;id_fantoir;numero;rep;nom_voie;code_postal;code_insee;nom_commune;code_insee_ancienne_commune;nom_ancienne_commune;x;y;lon;lat;type_position;alias;nom_ld;libelle_acheminement;nom_afnor;source_position;source_nom_voie;certification_commune;cad_parcelles\n\
49099_0136_00037;49099_0136;37;;Avenue des Bruyères;49300;49099;Cholet;;;405795.69;6672050.9;-0.879363;47.083655;entrée;;;CHOLET;AVENUE DES BRUYERES;commune;commune;1;\n\
49099_0136_00039_bis;49099_0136;39;bis;Avenue des Bruyères;49300;49099;Cholet;;;;;-0.8794;47.0837;entrée;;;CHOLET;AVENUE DES BRUYERES;commune;commune;1;\n\
bad;49099_0136;41;;Avenue des Bruyères;49300;49099;Cholet;;;;;abc;47.0837;entrée;;;CHOLET;AVENUE DES BRUYERES;commune;commune;1;\n";
        let (r, _, _) = collect(csv, Format::BanCsv, OnError::Fail);
        assert!(matches!(r, Err(Error::BadInput { line: 4, .. })), "{r:?}");
        let (r, recs, skipped) = collect(csv, Format::BanCsv, OnError::Skip);
        let derived = r.unwrap();
        assert_eq!(skipped.count, 1);
        let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, vec!["housenumber", "housenumber"]);
        assert_eq!(recs[1].get("housenumber"), Some(&Value::Str("39 bis".into())));
        assert_eq!(recs[1].parent.as_deref(), Some("49099_0136"));
        // Streets and communes are derived at commit, from every row.
        assert_eq!(derived.streets["49099_0136"].name, "Avenue des Bruyères");
        assert_eq!(derived.communes["49099"].city, "Cholet");
    }

    /// A line longer than [`MAX_LINE`] (a gzip body can inflate to one) is
    /// refused with its number, in either format, not read whole.
    #[test]
    fn a_line_too_long_is_refused_with_its_number() {
        let long = format!("{STREET}\n{{\"id\": \"{}\"}}\n", "x".repeat(MAX_LINE));
        let (r, _, _) = collect(&long, Format::BanNdjson, OnError::Skip);
        let Err(Error::BadInput { line: 2, reason }) = r else { panic!("{r:?}") };
        assert!(reason.contains("longer than 16 MiB"), "{reason}");
        let csv = format!(
            "id;numero;nom_voie;code_postal;code_insee;nom_commune;lon;lat\na1;1;{};1;1;1;1;1\n",
            "x".repeat(MAX_LINE)
        );
        let (r, recs, _) = collect(&csv, Format::BanCsv, OnError::Skip);
        let Err(Error::BadInput { reason, .. }) = r else { panic!("{r:?}") };
        assert!(reason.contains("longer than 16 MiB"), "{reason}");
        assert!(recs.is_empty());
        let fits = format!("{STREET}\n{}\n", " ".repeat(MAX_LINE - 1));
        assert!(collect(&fits, Format::BanNdjson, OnError::Fail).0.is_ok(), "a line of the limit is read");
    }

    /// Line ends are made `\n` across any split of the input into reads.
    #[test]
    fn line_ends_are_unix_whatever_the_reads() {
        let text = b"a\r\nb\rc\r\n\r\nd\n\re\r";
        for cap in 1..=text.len() {
            for out in [1, 2, 3, 64] {
                let inner = BufReader::with_capacity(cap, &text[..]);
                let mut lines = UnixLines { inner, cr: false, ends: Ends::default(), line: 0 };
                let (mut got, mut buf) = (Vec::new(), vec![0; out]);
                loop {
                    let n = lines.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                assert_eq!(String::from_utf8_lossy(&got), "a\nb\nc\n\nd\n\ne\n", "capacity {cap}, reads of {out}");
                let ends = lines.ends;
                assert!(ends.eof && ends.bytes == got.len() as u64 && ends.last == b'\n');
            }
        }
    }

    /// A file saved with Windows (or old Mac) line ends names the same
    /// lines as with Unix ones, after blank lines, a quoted field that
    /// spans two lines, and with or without a last line end.
    #[test]
    fn ban_csv_bad_rows_are_named_by_their_line_whatever_the_line_ends() {
        let rows = "id;numero;nom_voie;code_postal;code_insee;nom_commune;lon;lat\n\
a1;1;Rue A;49300;49099;Cholet;-0.87;47.08\n\
\n\
a2;2;Rue A;49300;49099;Cholet;x;47.08\n\
a3;3;\"Rue\nB\";49300;49099;Cholet;-0.87;47.08\n\
a5;5;Rue A;49300;49099;Cholet;-0.87;y\n\
a6;6;\"Rue\n¤\";49300;49099;Cholet;-0.87;47.08\n\
\n\
a4;\"4;Rue A;49300;49099;Cholet;-0.87;47.08\n";
        for end in ["\n", "\r\n", "\r"] {
            for last in [true, false] {
                let mut text = rows.replace('\n', end);
                if !last {
                    text.truncate(text.len() - end.len());
                }
                // A row that is not UTF-8, over two lines.
                let bytes: Vec<u8> =
                    text.replace('¤', "\u{1}").bytes().map(|b| if b == 1 { 0xff } else { b }).collect();
                let (r, recs, skipped) = collect_bytes(&bytes, Format::BanCsv, OnError::Skip);
                r.unwrap();
                let what = format!("line end {end:?}, last line ended: {last}: {:?}", skipped.first);
                assert_eq!(recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a1", "a3"], "{what}");
                let lines: Vec<u64> = skipped.first.iter().map(|(l, _)| *l).collect();
                assert_eq!(lines, [4, 7, 8, 11], "{what}");
            }
        }
    }

    /// Issue 24, item 4: the delimiter is found before the columns are
    /// looked for, so a BAN CSV saved again by a spreadsheet (`,`, tab)
    /// imports; a header that lacks columns names them all, with the
    /// columns it has.
    #[test]
    fn ban_csv_delimiter_is_detected_before_the_header_is_checked() {
        let rows = "id;numero;nom_voie;code_postal;code_insee;nom_commune;lon;lat\n\
49099_0136_00037;37;Avenue des Bruyères;49300;49099;Cholet;-0.879363;47.083655\n";
        for d in [",", "\t", "|"] {
            let (r, recs, _) = collect(&rows.replace(';', d), Format::BanCsv, OnError::Fail);
            r.unwrap_or_else(|e| panic!("split by {d:?}: {e}"));
            assert_eq!(recs.len(), 1, "split by {d:?}");
            assert_eq!(recs[0].id, "49099_0136_00037");
            assert_eq!(recs[0].get("housenumber"), Some(&Value::Str("37".into())));
        }
        let (r, _, _) = collect("id,numero,voie,code_postal,lat\n1,2,x,49300,47\n", Format::BanCsv, OnError::Fail);
        let Err(Error::BadInput { line: 1, reason }) = r else { panic!("{r:?}") };
        assert_eq!(
            reason,
            "missing columns nom_voie, code_insee, nom_commune, lon (the header, split by ',', has 5 columns: id, numero, voie, code_postal, lat)"
        );
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect_format(Path::new("adresses-75.csv.gz"), b"").unwrap(), Format::BanCsv);
        assert_eq!(detect_format(Path::new("x.ndjson"), b"").unwrap(), Format::BanNdjson);
        assert_eq!(detect_format(Path::new("data"), b"  {\"id\"").unwrap(), Format::BanNdjson);
        assert!(detect_format(Path::new("data"), b"hello").is_err());
    }
}
