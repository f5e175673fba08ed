//! Reading records for a collection: NDJSON, one JSON array (streamed: one
//! element in memory at a time), or CSV with a header naming the fields.

use std::io::{BufRead, Read};

use serde_json::{Map, Value as Json};

use super::schema::Schema;
use super::value::{from_cell, Invalid};
use super::CollectionError;
use crate::OnError;

/// The largest record accepted: a line, an array element or a CSV row.
pub const MAX_RECORD: usize = 16 << 20;
/// Problems kept in a report; the count goes on.
const KEPT_PROBLEMS: usize = 100;

/// How records are written in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON object per line.
    Ndjson,
    /// One JSON array of objects (a single object is one record).
    Json,
    /// A header naming fields, then one record per row; `,`, `;`, tab or
    /// `|` (the one the header uses most).
    Csv,
}

impl ImportFormat {
    /// Guesses from the first bytes: `[` is a JSON array, `{` NDJSON (or
    /// one object), anything else CSV.
    pub fn detect(head: &[u8]) -> ImportFormat {
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => ImportFormat::Json,
            Some(b'{') => ImportFormat::Ndjson,
            _ => ImportFormat::Csv,
        }
    }

    pub fn parse(s: &str) -> Option<ImportFormat> {
        match s {
            "ndjson" | "jsonl" => Some(ImportFormat::Ndjson),
            "json" => Some(ImportFormat::Json),
            "csv" => Some(ImportFormat::Csv),
            _ => None,
        }
    }
}

/// A record that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    /// `line N` (NDJSON, CSV) or `byte N` (a JSON array's element).
    pub at: String,
    /// The field, when one is to blame.
    pub path: Option<String>,
    pub reason: String,
}

/// What an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Records read (good and bad).
    pub read: u64,
    /// Records written.
    pub written: u64,
    /// Records refused (with `OnError::Skip`; with `Fail` the first one
    /// stops the import).
    pub skipped: u64,
    /// The first refused records, in order.
    pub problems: Vec<ImportProblem>,
}

impl ImportReport {
    fn refuse(&mut self, on_error: OnError, p: ImportProblem) -> Result<(), CollectionError> {
        if on_error == OnError::Fail {
            return Err(match p.path {
                Some(path) => CollectionError::BadRecord { at: p.at, path, reason: p.reason },
                None => CollectionError::BadInput { at: p.at, reason: p.reason },
            });
        }
        self.skipped += 1;
        if self.problems.len() < KEPT_PROBLEMS {
            self.problems.push(p);
        }
        Ok(())
    }
}

type Put<'a> = dyn FnMut(Map<String, Json>) -> Result<(), Invalid> + 'a;

/// Reads every record of `input`, giving each to `put`.
pub(crate) fn read(
    input: &mut dyn BufRead,
    format: ImportFormat,
    schema: &Schema,
    on_error: OnError,
    report: &mut ImportReport,
    put: &mut Put<'_>,
) -> Result<(), CollectionError> {
    match format {
        ImportFormat::Ndjson => ndjson(input, on_error, report, put),
        ImportFormat::Json => json_array(input, on_error, report, put),
        ImportFormat::Csv => csv_rows(input, schema, on_error, report, put),
    }
}

fn io_err(at: String, e: &std::io::Error) -> CollectionError {
    CollectionError::BadInput { at, reason: format!("cannot read: {e}") }
}

/// Gives one parsed value to `put`, or files the problem.
fn take(
    value: Result<Json, String>,
    at: String,
    on_error: OnError,
    report: &mut ImportReport,
    put: &mut Put<'_>,
) -> Result<(), CollectionError> {
    report.read += 1;
    let problem = match value {
        Ok(Json::Object(o)) => match put(o) {
            Ok(()) => {
                report.written += 1;
                return Ok(());
            }
            Err(Invalid { path, reason }) => ImportProblem { at, path: Some(path), reason },
        },
        Ok(other) => ImportProblem { at, path: None, reason: format!("a record is a JSON object, not {other}") },
        Err(reason) => ImportProblem { at, path: None, reason },
    };
    report.refuse(on_error, problem)
}

fn ndjson(
    input: &mut dyn BufRead,
    on_error: OnError,
    report: &mut ImportReport,
    put: &mut Put<'_>,
) -> Result<(), CollectionError> {
    let mut line = Vec::new();
    for n in 1u64.. {
        line.clear();
        let got = input
            .take(MAX_RECORD as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err(format!("line {n}"), &e))?;
        if got == 0 {
            break;
        }
        if line.len() > MAX_RECORD {
            return Err(CollectionError::BadInput {
                at: format!("line {n}"),
                reason: format!("longer than {} MiB", MAX_RECORD >> 20),
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = serde_json::from_slice::<Json>(&line).map_err(|e| format!("not JSON: {e}"));
        take(v, format!("line {n}"), on_error, report, put)?;
    }
    Ok(())
}

/// Reads bytes one at a time from a buffered reader, counting them.
struct Bytes<'a> {
    input: &'a mut dyn BufRead,
    offset: u64,
}

impl Bytes<'_> {
    fn peek(&mut self) -> Result<Option<u8>, CollectionError> {
        let at = self.offset;
        let buf = self.input.fill_buf().map_err(|e| io_err(format!("byte {at}"), &e))?;
        Ok(buf.first().copied())
    }

    fn next(&mut self) -> Result<Option<u8>, CollectionError> {
        let b = self.peek()?;
        if b.is_some() {
            self.input.consume(1);
            self.offset += 1;
        }
        Ok(b)
    }

    fn skip_space(&mut self) -> Result<Option<u8>, CollectionError> {
        while let Some(b) = self.peek()? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
            self.next()?;
        }
        Ok(None)
    }
}

/// The elements of one top-level JSON array, each parsed alone, so that a
/// file of any size needs the memory of its largest element.
fn json_array(
    input: &mut dyn BufRead,
    on_error: OnError,
    report: &mut ImportReport,
    put: &mut Put<'_>,
) -> Result<(), CollectionError> {
    let mut r = Bytes { input, offset: 0 };
    let syntax = |at: u64, reason: &str| CollectionError::BadInput { at: format!("byte {at}"), reason: reason.into() };
    match r.skip_space()? {
        Some(b'[') => {
            r.next()?;
        }
        Some(b'{') => {
            // One object: one record.
            let mut all = Vec::new();
            r.input.take(MAX_RECORD as u64 + 1).read_to_end(&mut all).map_err(|e| io_err("byte 0".into(), &e))?;
            if all.len() > MAX_RECORD {
                return Err(syntax(0, "a single object larger than 16 MiB"));
            }
            let v = serde_json::from_slice::<Json>(&all).map_err(|e| format!("not JSON: {e}"));
            return take(v, "byte 0".into(), on_error, report, put);
        }
        _ => return Err(syntax(r.offset, "expected a JSON array [ ... ]")),
    }
    let mut element = Vec::new();
    loop {
        match r.skip_space()? {
            Some(b']') => {
                r.next()?;
                break;
            }
            None => return Err(syntax(r.offset, "the array does not end (no ])")),
            Some(_) => {}
        }
        let start = r.offset;
        element.clear();
        // Scans one element: up to a comma or the closing bracket at depth 0.
        let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
        loop {
            let Some(b) = r.peek()? else { return Err(syntax(r.offset, "the array does not end (no ])")) };
            if !in_string && depth == 0 && (b == b',' || b == b']') {
                break;
            }
            r.next()?;
            element.push(b);
            if element.len() > MAX_RECORD {
                return Err(syntax(start, "an element larger than 16 MiB"));
            }
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return Err(syntax(r.offset - 1, "unbalanced brackets"));
            }
        }
        let v = serde_json::from_slice::<Json>(&element).map_err(|e| format!("not JSON: {e}"));
        take(v, format!("byte {start}"), on_error, report, put)?;
        if r.peek()? == Some(b',') {
            r.next()?;
        }
    }
    if r.skip_space()?.is_some() {
        return Err(syntax(r.offset, "something after the array"));
    }
    Ok(())
}

/// The delimiter a CSV header uses most, of `,` `;` tab `|`.
fn delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    #[allow(clippy::naive_bytecount)] // one header line: no need for a crate
    let count = |d: u8| line.iter().filter(|b| **b == d).count();
    [b',', b';', b'\t', b'|'].into_iter().max_by_key(|d| count(*d)).unwrap_or(b',')
}

fn csv_rows(
    input: &mut dyn BufRead,
    schema: &Schema,
    on_error: OnError,
    report: &mut ImportReport,
    put: &mut Put<'_>,
) -> Result<(), CollectionError> {
    let head = input.fill_buf().map_err(|e| io_err("line 1".into(), &e))?;
    let delim = delimiter(head);
    let mut rd = csv::ReaderBuilder::new().delimiter(delim).flexible(true).from_reader(input);
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| CollectionError::BadInput { at: "line 1".into(), reason: format!("no CSV header: {e}") })?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
        .collect();
    let unknown: Vec<&str> = header.iter().filter(|h| schema.spec(h).is_none()).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(CollectionError::BadInput {
            at: "line 1".into(),
            reason: format!(
                "columns {unknown:?} are not fields of the schema (fields: {:?})",
                schema.fields.keys().collect::<Vec<_>>()
            ),
        });
    }
    if !header.contains(&schema.primary_key) {
        return Err(CollectionError::BadInput {
            at: "line 1".into(),
            reason: format!("no column {:?}, the primary key (columns found: {header:?})", schema.primary_key),
        });
    }
    let kinds: Vec<_> = header.iter().map(|h| schema.spec(h).map(|s| s.kind)).collect();
    let mut row = csv::StringRecord::new();
    loop {
        let line = rd.position().line();
        match rd.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                report.read += 1;
                report.refuse(
                    on_error,
                    ImportProblem { at: format!("line {line}"), path: None, reason: e.to_string() },
                )?;
                continue;
            }
        }
        let mut record = Map::new();
        let mut problem = None;
        for (i, cell) in row.iter().enumerate() {
            let (Some(name), Some(Some(kind))) = (header.get(i), kinds.get(i)) else {
                problem = Some(ImportProblem {
                    at: format!("line {line}"),
                    path: None,
                    reason: format!("{} cells, the header has {}", row.len(), header.len()),
                });
                break;
            };
            match from_cell(*kind, cell) {
                Ok(Json::Null) => {}
                Ok(v) => {
                    record.insert(name.clone(), v);
                }
                Err(reason) => {
                    problem = Some(ImportProblem { at: format!("line {line}"), path: Some(name.clone()), reason });
                    break;
                }
            }
        }
        match problem {
            Some(p) => {
                report.read += 1;
                report.refuse(on_error, p)?;
            }
            None => take(Ok(Json::Object(record)), format!("line {line}"), on_error, report, put)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::{FieldSpec, FieldType};

    fn schema() -> Schema {
        Schema::new("id").field("n", FieldSpec::new(FieldType::Integer))
    }

    fn run(
        input: &str,
        format: ImportFormat,
        on_error: OnError,
    ) -> (Result<(), CollectionError>, Vec<Json>, ImportReport) {
        let s = schema();
        let mut got = Vec::new();
        let mut report = ImportReport::default();
        let r = read(&mut input.as_bytes(), format, &s, on_error, &mut report, &mut |m| {
            super::super::value::check(&s, &m)?;
            got.push(Json::Object(m));
            Ok(())
        });
        (r, got, report)
    }

    #[test]
    fn a_json_array_is_read_element_by_element_with_offsets() {
        let input = r#" [ {"id": "a", "n": 1}, {"id": "b,]", "n": "x"} , {"id": "c"} ] "#;
        let (r, got, report) = run(input, ImportFormat::Json, OnError::Skip);
        r.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(report.skipped, 1);
        assert_eq!(report.problems[0].at, "byte 24");
        assert_eq!(report.problems[0].path.as_deref(), Some("n"));
        let (r, _, _) = run(input, ImportFormat::Json, OnError::Fail);
        assert!(r.unwrap_err().to_string().starts_with("byte 24: field \"n\""));
        let (r, _, _) = run("[{\"id\": \"a\"}", ImportFormat::Json, OnError::Fail);
        assert!(r.unwrap_err().to_string().contains("does not end"));
    }

    #[test]
    fn csv_with_semicolons_and_a_bad_cell_names_line_and_column() {
        let (r, got, report) = run("id;n\na;1\nb;x\n", ImportFormat::Csv, OnError::Skip);
        r.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            report.problems[0],
            ImportProblem { at: "line 3".into(), path: Some("n".into()), reason: "\"x\" is not an integer".into() }
        );
        let (r, _, _) = run("id,m\na,1\n", ImportFormat::Csv, OnError::Skip);
        assert!(r.unwrap_err().to_string().contains("[\"m\"]"));
    }

    #[test]
    fn ndjson_lines_are_numbered() {
        let (r, _, _) = run("{\"id\":\"a\"}\n\n{\"id\":\"b\",\"n\":1.5}\n", ImportFormat::Ndjson, OnError::Fail);
        assert!(r.unwrap_err().to_string().starts_with("line 3: field \"n\""));
    }
}
