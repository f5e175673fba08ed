//! Import formats, read as streams: BAN NDJSON (the Addok import format) and
//! BAN CSV (`adresses-XX.csv`), plain or gzip. Each yields records to a sink;
//! a bad line is reported with its number.

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

/// Reads a whole stream in `format`, handing each record to `sink`.
pub fn read(
    input: impl BufRead,
    format: Format,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    match format {
        Format::BanNdjson => read_ndjson(input, on_error, skipped, sink),
        Format::BanCsv => read_ban_csv(input, on_error, skipped, sink),
    }
}

fn json_value(v: &Json) -> Option<Value> {
    match v {
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(Value::Str(s.clone())),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Num(n.as_f64()?),
        }),
        Json::Bool(b) => Some(Value::Str(b.to_string())),
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
    let num = |k: &str| obj.get(k).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
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

/// Turns one NDJSON document into its records (a street and its numbers).
fn ndjson_records(line: &str) -> std::result::Result<Vec<Record>, String> {
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
    let mut fields: Vec<Field> = obj
        .iter()
        .filter(|(k, _)| !SKIP_KEYS.contains(&k.as_str()))
        .filter_map(|(k, v)| json_value(v).map(|value| Field { name: k.clone(), value }))
        .collect();
    if !fields.iter().any(|f| f.name == "name") {
        return Err(format!("document {id}: missing \"name\""));
    }
    ensure_xy(&mut fields, point);
    let mut out = Vec::new();
    if let Some(hn) = obj.get("housenumbers") {
        let Json::Object(numbers) = hn else {
            return Err(format!("document {id}: \"housenumbers\" is not an object"));
        };
        for (number, data) in numbers {
            let Json::Object(data) = data else {
                return Err(format!("document {id}: housenumber {number:?} is not an object"));
            };
            let p = point_of(data).map_err(|e| format!("document {id}, housenumber {number:?}: {e}"))?;
            let hid = match data.get("id") {
                Some(Json::String(s)) if !s.is_empty() => s.clone(),
                _ => format!("{id}_{number}"),
            };
            let mut hf = vec![Field { name: "housenumber".into(), value: Value::Str(number.clone()) }];
            hf.extend(
                data.iter()
                    .filter(|(k, _)| !SKIP_KEYS.contains(&k.as_str()))
                    .filter_map(|(k, v)| json_value(v).map(|value| Field { name: k.clone(), value })),
            );
            ensure_xy(&mut hf, p);
            out.push(Record {
                id: hid,
                kind: "housenumber".into(),
                parent: Some(id.clone()),
                point: Some(p),
                fields: hf,
            });
        }
    }
    let parent =
        if kind == "housenumber" { obj.get("parent").and_then(|p| p.as_str()).map(str::to_owned) } else { None };
    out.insert(0, Record { id, kind, parent, point: Some(point), fields });
    Ok(out)
}

fn read_ndjson(
    mut input: impl BufRead,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::BadInput { line: line_no + 1, reason: e.to_string() })?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let Ok(line) = std::str::from_utf8(&buf) else {
            skipped.note(on_error, line_no, "not valid UTF-8".into())?;
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match ndjson_records(line) {
            Ok(records) => {
                for r in records {
                    sink(r)?;
                }
            }
            Err(reason) => skipped.note(on_error, line_no, reason)?,
        }
    }
}

#[derive(Default)]
struct Agg {
    name: String,
    postcode: String,
    citycode: String,
    city: String,
    lat: f64,
    lon: f64,
    n: u64,
}

impl Agg {
    fn add(&mut self, p: Point) {
        self.lat += p.lat;
        self.lon += p.lon;
        self.n += 1;
    }
    fn centre(&self) -> Point {
        Point { lat: self.lat / self.n.max(1) as f64, lon: self.lon / self.n.max(1) as f64 }
    }
}

fn department(citycode: &str) -> &str {
    let n = if citycode.starts_with("97") { 3 } else { 2 };
    citycode.get(..n).unwrap_or(citycode)
}

fn read_ban_csv(
    input: impl BufRead,
    on_error: OnError,
    skipped: &mut Skipped,
    sink: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new().delimiter(b';').flexible(true).from_reader(input);
    let headers = rdr.headers().map_err(|e| Error::BadInput { line: 1, reason: e.to_string() })?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim_start_matches('\u{feff}') == name);
    let need =
        |name: &str| col(name).ok_or_else(|| Error::BadInput { line: 1, reason: format!("missing column {name:?}") });
    let (c_id, c_num, c_voie, c_cp, c_insee, c_commune, c_lon, c_lat) = (
        need("id")?,
        need("numero")?,
        need("nom_voie")?,
        need("code_postal")?,
        need("code_insee")?,
        need("nom_commune")?,
        need("lon")?,
        need("lat")?,
    );
    let (c_fantoir, c_rep, c_x, c_y) = (col("id_fantoir"), col("rep"), col("x"), col("y"));
    let mut streets: HashMap<String, Agg> = HashMap::new();
    let mut cities: HashMap<String, Agg> = HashMap::new();
    let mut street_order: Vec<String> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line() + 1;
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                skipped.note(on_error, line, e.to_string())?;
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let opt = |c: Option<usize>| c.map(get).unwrap_or("");
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
        sink(Record {
            id: id.to_owned(),
            kind: "housenumber".into(),
            parent: Some(street_id.clone()),
            point: Some(p),
            fields,
        })?;
        let s = streets.entry(street_id.clone()).or_insert_with(|| {
            street_order.push(street_id.clone());
            Agg {
                name: voie.into(),
                postcode: get(c_cp).into(),
                citycode: insee.into(),
                city: get(c_commune).into(),
                ..Agg::default()
            }
        });
        s.add(p);
        let c = cities.entry(insee.to_owned()).or_insert_with(|| Agg {
            name: get(c_commune).into(),
            postcode: get(c_cp).into(),
            citycode: insee.into(),
            city: get(c_commune).into(),
            ..Agg::default()
        });
        c.add(p);
    }
    // Streets and municipalities have no rows of their own: their point is
    // the centre of their numbers, their importance grows with their size.
    let common = |a: &Agg, importance: f64| -> Vec<Field> {
        let mut f = vec![Field { name: "name".into(), value: Value::Str(a.name.clone()) }];
        if !a.postcode.is_empty() {
            f.push(Field { name: "postcode".into(), value: Value::Str(a.postcode.clone()) });
        }
        f.push(Field { name: "citycode".into(), value: Value::Str(a.citycode.clone()) });
        let (x, y) = lambert93(a.centre());
        f.push(Field { name: "x".into(), value: Value::Num(x) });
        f.push(Field { name: "y".into(), value: Value::Num(y) });
        f.push(Field { name: "city".into(), value: Value::Str(a.city.clone()) });
        f.push(Field { name: "context".into(), value: Value::Str(department(&a.citycode).to_owned()) });
        f.push(Field { name: "importance".into(), value: Value::Num((importance * 1e5).round() / 1e5) });
        f
    };
    for sid in street_order {
        if let Some(a) = streets.remove(&sid) {
            let imp = ((1.0 + a.n as f64).ln() / 20.0).min(1.0);
            sink(Record {
                id: sid,
                kind: "street".into(),
                parent: None,
                point: Some(a.centre()),
                fields: common(&a, imp),
            })?;
        }
    }
    let mut codes: Vec<String> = cities.keys().cloned().collect();
    codes.sort();
    for code in codes {
        if let Some(a) = cities.remove(&code) {
            let imp = ((1.0 + a.n as f64 / 3.0).ln() / 20.0).min(1.0);
            sink(Record {
                id: code,
                kind: "municipality".into(),
                parent: None,
                point: Some(a.centre()),
                fields: common(&a, imp),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &str, format: Format, on_error: OnError) -> (Result<()>, Vec<Record>, Skipped) {
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        let r = read(input.as_bytes(), format, on_error, &mut skipped, &mut |rec| {
            out.push(rec);
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
        r.unwrap();
        assert_eq!(skipped.count, 1);
        let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, vec!["housenumber", "housenumber", "street", "municipality"]);
        assert_eq!(recs[1].get("housenumber"), Some(&Value::Str("39 bis".into())));
        assert_eq!(recs[2].id, "49099_0136");
        assert_eq!(recs[2].get("name"), Some(&Value::Str("Avenue des Bruyères".into())));
        assert_eq!(recs[3].id, "49099");
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect_format(Path::new("adresses-75.csv.gz"), b"").unwrap(), Format::BanCsv);
        assert_eq!(detect_format(Path::new("x.ndjson"), b"").unwrap(), Format::BanNdjson);
        assert_eq!(detect_format(Path::new("data"), b"  {\"id\"").unwrap(), Format::BanNdjson);
        assert!(detect_format(Path::new("data"), b"hello").is_err());
    }
}
