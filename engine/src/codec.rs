//! How a record is coded, in the documents file and in the store's blocks:
//! schema-coded, so that a housenumber takes about 30 bytes instead of the
//! 250 its rkyv archive took
//! (field names, ids and the parent's id written out in every record, every
//! number as 8 bytes, every value padded for alignment).
//!
//! - field names and kinds are numbers into a table kept once per file;
//! - a string value that repeats (a city, a context, a postcode) is written
//!   once and then as a number into a dictionary kept once per file;
//! - an id shares its prefix with the previous record's id (the records of
//!   a street's housenumbers follow each other: `69123_0199_00003` after
//!   `69123_0199_00001` is 2 bytes); every [`RESTART`]th record writes its
//!   id whole, so reading one id reads at most that many records (8: 16
//!   made autocomplete 10 % slower at 1M, for 1 % of the file);
//! - a parent's id is the prefix it shares with the record's own id, plus
//!   the rest;
//! - a number with at most nine decimals is a varint of its decimal
//!   mantissa (`45.761934` is four bytes), written only when it reads back
//!   to the very same `f64`; any other number is its 8 bytes.
//!
//! Reading is in place: a [`crate::docs::RecordRef`] borrows the file's
//! bytes and its tables, and decodes a field only when asked for it. A
//! store block ([`pack`]) carries its own tables and is decoded whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rkyv::string::ArchivedString;
use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::record::{Field, Point, Record, Value};

/// Every this many records, an id is written whole.
pub(crate) const RESTART: u32 = 8;
/// Strings shorter than this are always written inline: a dictionary
/// number would not be shorter.
const MIN_SHARED: usize = 3;
/// At most this many distinct strings are remembered while building, to
/// bound the builder's memory; later ones are written inline.
const MAX_SEEN: usize = 4 << 20;

const FLAG_PARENT: u8 = 1;
const FLAG_POINT: u8 = 2;

const STR: u8 = 0;
const STR_SHARED: u8 = 1;
const LIST: u8 = 2;
const INT: u8 = 3;
const F64: u8 = 4;
const FALSE: u8 = 5;
const TRUE: u8 = 6;
/// `DECIMAL + s`: a mantissa scaled by `10^-s`, `s` in `0..=MAX_SCALE`.
const DECIMAL: u8 = 16;
const MAX_SCALE: u8 = 9;

const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The decimal form of `v`, if one reads back to exactly `v`.
fn decimal(v: f64) -> Option<(u8, i64)> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    for s in 0..=MAX_SCALE {
        let m = (v * POW10[s as usize]).round();
        if m.abs() >= 9.0e15 {
            return None;
        }
        let m = m as i64;
        if (m as f64 / POW10[s as usize]).to_bits() == v.to_bits() {
            return Some((s, m));
        }
    }
    None
}

fn put_num(out: &mut Vec<u8>, v: f64) {
    if let Some((s, m)) = decimal(v) {
        out.push(DECIMAL + s);
        put_varint(out, zigzag(m));
    } else {
        out.push(F64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn shared_prefix(a: &str, b: &str) -> usize {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // On a character boundary, so that each part is a string of its own.
    (0..=n).rev().find(|i| a.is_char_boundary(*i)).unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Seen {
    Once,
    Shared(u32),
}

/// The tables a file's records are coded against, filled while they are
/// written.
#[derive(Default)]
pub(crate) struct Encoder {
    /// Field names and kinds.
    pub names: Vec<String>,
    name_of: HashMap<String, u32>,
    /// Strings seen at least twice.
    pub strings: Vec<String>,
    seen: HashMap<Box<str>, Seen>,
    prev_id: String,
}

impl Encoder {
    fn name(&mut self, name: &str) -> u32 {
        if let Some(i) = self.name_of.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.name_of.insert(name.to_owned(), i);
        i
    }

    fn string(&mut self, out: &mut Vec<u8>, s: &str) {
        if s.len() >= MIN_SHARED {
            let room = self.seen.len() < MAX_SEEN;
            match self.seen.get_mut(s) {
                Some(Seen::Shared(i)) => {
                    out.push(STR_SHARED);
                    put_varint(out, u64::from(*i));
                    return;
                }
                Some(seen @ Seen::Once) => {
                    let i = self.strings.len() as u32;
                    self.strings.push(s.to_owned());
                    *seen = Seen::Shared(i);
                    out.push(STR_SHARED);
                    put_varint(out, u64::from(i));
                    return;
                }
                None if room => {
                    self.seen.insert(s.into(), Seen::Once);
                }
                None => {}
            }
        }
        out.push(STR);
        put_bytes(out, s.as_bytes());
    }

    /// Appends the coded `r` to `out`; `slot` is the record's place in the
    /// file, which tells whether its id is written whole.
    pub fn encode(&mut self, slot: u32, r: &Record, out: &mut Vec<u8>) {
        let kind = self.name(&r.kind);
        put_varint(out, u64::from(kind));
        out.push(if r.parent.is_some() { FLAG_PARENT } else { 0 } | if r.point.is_some() { FLAG_POINT } else { 0 });
        let shared = if slot.is_multiple_of(RESTART) { 0 } else { shared_prefix(&r.id, &self.prev_id) };
        put_varint(out, shared as u64);
        put_bytes(out, &r.id.as_bytes()[shared..]);
        if let Some(p) = &r.parent {
            let shared = shared_prefix(p, &r.id);
            put_varint(out, shared as u64);
            put_bytes(out, &p.as_bytes()[shared..]);
        }
        if let Some(p) = r.point {
            put_num(out, p.lat);
            put_num(out, p.lon);
        }
        put_varint(out, r.fields.len() as u64);
        for f in &r.fields {
            let name = self.name(&f.name);
            put_varint(out, u64::from(name));
            match &f.value {
                Value::Str(s) => self.string(out, s),
                Value::List(l) => {
                    out.push(LIST);
                    put_varint(out, l.len() as u64);
                    for s in l {
                        self.string(out, s);
                    }
                }
                Value::Int(i) => {
                    out.push(INT);
                    put_varint(out, zigzag(*i));
                }
                Value::Num(n) => put_num(out, *n),
                Value::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
            }
        }
        self.prev_id.clear();
        self.prev_id.push_str(&r.id);
    }
}

/// A reader over coded bytes; `None` past the end or on bytes no encoder
/// wrote.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte holds bit 63 alone: more is no varint we wrote.
            if shift == 63 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// Bytes written with their length before them.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn num(&mut self, tag: u8) -> Option<f64> {
        self.raw_num(tag).map(RawNum::get)
    }

    /// A number as written, to be decoded when asked for.
    fn raw_num(&mut self, tag: u8) -> Option<RawNum> {
        match tag {
            F64 => Some(RawNum { tag, bits: u64::from_le_bytes(self.take(8)?.try_into().ok()?) }),
            t if (DECIMAL..=DECIMAL + MAX_SCALE).contains(&t) => Some(RawNum { tag, bits: self.varint()? }),
            _ => None,
        }
    }

    /// Moves past a value without reading it: no string is checked and no
    /// number divided.
    fn skip_value(&mut self) -> Option<()> {
        let tag = self.byte()?;
        match tag {
            STR | STR_SHARED => self.skip_string(tag)?,
            INT => {
                self.varint()?;
            }
            LIST => {
                for _ in 0..self.varint()? {
                    let t = self.byte()?;
                    self.skip_string(t)?;
                }
            }
            FALSE | TRUE => {}
            t => {
                self.raw_num(t)?;
            }
        }
        Some(())
    }

    /// Moves past a string written with `tag`, inline or shared.
    fn skip_string(&mut self, tag: u8) -> Option<()> {
        match tag {
            STR => self.bytes().map(drop),
            STR_SHARED => self.varint().map(drop),
            _ => None,
        }
    }
}

/// A number as the record holds it: its tag and its mantissa or bits.
#[derive(Clone, Copy)]
pub(crate) struct RawNum {
    tag: u8,
    bits: u64,
}

impl RawNum {
    fn get(self) -> f64 {
        if self.tag == F64 {
            f64::from_bits(self.bits)
        } else {
            unzigzag(self.bits) as f64 / POW10[usize::from(self.tag.saturating_sub(DECIMAL).min(MAX_SCALE))]
        }
    }
}

/// A record's point as written, decoded when asked for: the division that
/// decodes a decimal is the dearest part of reading a record.
#[derive(Clone, Copy)]
pub(crate) struct RawPoint(RawNum, RawNum);

impl RawPoint {
    pub fn get(self) -> Point {
        Point { lat: self.0.get(), lon: self.1.get() }
    }
}

/// The tables of a file, as its index holds them.
#[derive(Clone, Copy)]
pub(crate) struct Tables<'a> {
    pub names: &'a ArchivedVec<ArchivedString>,
    pub strings: &'a ArchivedVec<ArchivedString>,
}

impl<'a> Tables<'a> {
    pub fn name(&self, i: u64) -> Option<&'a str> {
        self.names.get(usize::try_from(i).ok()?).map(ArchivedString::as_str)
    }

    fn string(&self, c: &mut Cursor<'a>, tag: u8) -> Option<&'a str> {
        match tag {
            STR => c.str(),
            STR_SHARED => self.strings.get(usize::try_from(c.varint()?).ok()?).map(ArchivedString::as_str),
            _ => None,
        }
    }

    fn value(&self, c: &mut Cursor<'a>) -> Option<ValueRef<'a>> {
        let tag = c.byte()?;
        Some(match tag {
            STR | STR_SHARED => ValueRef::Str(self.string(c, tag)?),
            LIST => {
                let n = c.varint()?;
                let start = *c;
                for _ in 0..n {
                    let t = c.byte()?;
                    self.string(c, t)?;
                }
                ValueRef::List(ListRef { tables: *self, items: start, len: n })
            }
            INT => ValueRef::Int(unzigzag(c.varint()?)),
            FALSE => ValueRef::Bool(false),
            TRUE => ValueRef::Bool(true),
            t => ValueRef::Num(c.num(t)?),
        })
    }
}

/// The parts of a record that come before its fields.
pub(crate) struct Head<'a> {
    /// The kind, as a number into the names.
    pub kind: u64,
    /// How much of the previous record's id this one's begins with.
    pub id_shared: usize,
    /// Checked as UTF-8 only when the id is asked for.
    pub id_rest: &'a [u8],
    /// The parent's id: how much of this record's id it begins with, and
    /// the rest.
    pub parent: Option<(usize, &'a [u8])>,
    pub point: Option<RawPoint>,
    /// The fields, from their count on.
    pub fields: Cursor<'a>,
}

/// How much of the previous record's id a record's begins with, and the
/// rest: the head of a record, read no further.
pub(crate) fn read_id(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (_, _, shared, rest) = Cursor::new(bytes).id_head()?;
    Some((shared, rest))
}

impl<'a> Cursor<'a> {
    /// A record's kind, flags, and its id's shared length and rest.
    fn id_head(&mut self) -> Option<(u64, u8, usize, &'a [u8])> {
        let kind = self.varint()?;
        let flags = self.byte()?;
        let shared = usize::try_from(self.varint()?).ok()?;
        Some((kind, flags, shared, self.bytes()?))
    }
}

impl<'a> Head<'a> {
    /// The id of the record's parent, given the record's own id: `Some(None)`
    /// when it has none, `None` on bytes no encoder wrote.
    pub fn parent_id(&self, id: &str) -> Option<Option<String>> {
        let Some((shared, rest)) = self.parent else { return Some(None) };
        let mut p = id.get(..shared)?.to_owned();
        p.push_str(std::str::from_utf8(rest).ok()?);
        Some(Some(p))
    }

    pub fn read(bytes: &'a [u8]) -> Option<Head<'a>> {
        let mut c = Cursor::new(bytes);
        let (kind, flags, id_shared, id_rest) = c.id_head()?;
        let parent =
            if flags & FLAG_PARENT != 0 { Some((usize::try_from(c.varint()?).ok()?, c.bytes()?)) } else { None };
        let point = if flags & FLAG_POINT != 0 {
            let t = c.byte()?;
            let lat = c.raw_num(t)?;
            let t = c.byte()?;
            Some(RawPoint(lat, c.raw_num(t)?))
        } else {
            None
        };
        Some(Head { kind, id_shared, id_rest, parent, point, fields: c })
    }
}

/// A field value read in place.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    Str(&'a str),
    List(ListRef<'a>),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// The strings of a list value, read in place.
#[derive(Clone, Copy)]
pub struct ListRef<'a> {
    tables: Tables<'a>,
    items: Cursor<'a>,
    len: u64,
}

impl std::fmt::Debug for ListRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> ListRef<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let (tables, mut c) = (self.tables, self.items);
        (0..self.len).map_while(move |_| {
            let t = c.byte()?;
            tables.string(&mut c, t)
        })
    }
}

impl<'a> ValueRef<'a> {
    /// The first string of a text or list value.
    pub fn first_str(&self) -> Option<&'a str> {
        match self {
            ValueRef::Str(s) => Some(s),
            ValueRef::List(l) => l.iter().next(),
            _ => None,
        }
    }

    /// Every string of a text or list value.
    pub fn strs(&self) -> Vec<&'a str> {
        match self {
            ValueRef::Str(s) => vec![*s],
            ValueRef::List(l) => l.iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ValueRef::Int(i) => Some(*i as f64),
            ValueRef::Num(n) => Some(*n),
            ValueRef::Str(s) => s.trim().parse().ok(),
            ValueRef::List(_) | ValueRef::Bool(_) => None,
        }
    }
}

/// The fields of a record, in the order they were written. Bytes no
/// encoder wrote end the fields and mark the file damaged.
pub struct Fields<'a> {
    tables: Tables<'a>,
    c: Cursor<'a>,
    left: u64,
    damaged: &'a AtomicBool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(tables: Tables<'a>, mut c: Cursor<'a>, damaged: &'a AtomicBool) -> Fields<'a> {
        let left = c.varint().unwrap_or_else(|| {
            damaged.store(true, Ordering::Release);
            0
        });
        Fields { tables, c, left, damaged }
    }

    /// The value of the first field named `name` (a number into the
    /// names), skipping the others unread.
    pub(crate) fn find(mut self, name: u64) -> Option<ValueRef<'a>> {
        while self.left > 0 {
            self.left -= 1;
            match self.c.varint() {
                Some(n) if n == name => {
                    if let Some(v) = self.tables.value(&mut self.c) {
                        return Some(v);
                    }
                }
                Some(_) if self.c.skip_value().is_some() => continue,
                _ => {}
            }
            // Bytes no encoder wrote.
            self.damaged.store(true, Ordering::Release);
            return None;
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.c.varint().and_then(|n| self.tables.name(n)).zip(self.tables.value(&mut self.c));
        if item.is_none() {
            self.damaged.store(true, Ordering::Release);
            self.left = 0;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_back_exactly_or_are_kept_whole() {
        for v in [0.0, 1.0, -1.5, 45.761_934, 846_582.94, 0.1 + 0.2, 1e300, f64::MIN_POSITIVE, -0.0, 123_456_789.123] {
            let mut out = Vec::new();
            put_num(&mut out, v);
            let mut c = Cursor::new(&out);
            let t = c.byte().unwrap();
            assert_eq!(c.num(t).unwrap().to_bits(), v.to_bits(), "{v}");
        }
        assert_eq!(decimal(45.761_934), Some((6, 45_761_934)));
        assert_eq!(decimal(-0.0), None);
        assert_eq!(decimal(f64::NAN), None);
    }

    #[test]
    fn prefixes_end_on_character_boundaries() {
        assert_eq!(shared_prefix("rue é", "rue è"), 4);
        assert_eq!(shared_prefix("abc", "abd"), 2);
        assert_eq!(shared_prefix("", "abd"), 0);
    }

    #[test]
    fn zigzag_roundtrips_extremes() {
        for v in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}

/// Extends the id of the previous record to this one's: `shared` bytes of
/// it, then `rest` (ids are front-coded). None on bytes no encoder wrote.
pub(crate) fn next_id(id: &mut String, shared: usize, rest: &[u8]) -> Option<()> {
    if shared > id.len() || !id.is_char_boundary(shared) {
        return None;
    }
    id.truncate(shared);
    id.push_str(std::str::from_utf8(rest).ok()?);
    Some(())
}

/// The names and strings the records of one store block are coded against.
#[derive(Archive, Serialize, Deserialize, Default)]
struct BlockTables {
    names: Vec<String>,
    strings: Vec<String>,
}

/// Codes the records of one store block, keys increasing: the block's
/// tables (an rkyv archive, first so that it starts aligned), then the
/// count, then each record as its key's distance from the previous key and
/// its coded bytes, then the length of the tables (u32, little-endian).
pub(crate) fn pack(entries: &[(u64, Record)]) -> Option<Vec<u8>> {
    let mut enc = Encoder::default();
    let (mut records, mut buf, mut prev) = (Vec::new(), Vec::new(), 0u64);
    put_varint(&mut records, entries.len() as u64);
    for (i, (key, r)) in entries.iter().enumerate() {
        buf.clear();
        enc.encode(u32::try_from(i).ok()?, r, &mut buf);
        put_varint(&mut records, key.checked_sub(prev)?);
        put_bytes(&mut records, &buf);
        prev = *key;
    }
    let tables = rkyv::to_bytes::<rkyv::rancor::Error>(&BlockTables { names: enc.names, strings: enc.strings }).ok()?;
    let mut out = Vec::with_capacity(tables.len() + records.len() + 4);
    out.extend_from_slice(&tables);
    out.extend_from_slice(&records);
    out.extend_from_slice(&u32::try_from(tables.len()).ok()?.to_le_bytes());
    Some(out)
}

/// The records [`pack`] coded. `bytes` must start 16-byte aligned; None
/// on bytes it did not write.
pub(crate) fn unpack(bytes: &[u8]) -> Option<Vec<(u64, Record)>> {
    let (body, len) = bytes.split_at(bytes.len().checked_sub(4)?);
    let tables_len = usize::try_from(u32::from_le_bytes(len.try_into().ok()?)).ok()?;
    let archived = rkyv::access::<ArchivedBlockTables, rkyv::rancor::Error>(body.get(..tables_len)?).ok()?;
    let tables = Tables { names: &archived.names, strings: &archived.strings };
    let mut c = Cursor::new(body.get(tables_len..)?);
    let n = c.varint()?;
    // A count no block of this size could hold is damage, not a reason to
    // reserve gigabytes.
    let mut out = Vec::with_capacity(usize::try_from(n).ok().filter(|n| *n <= body.len())?);
    let (mut key, mut id) = (0u64, String::new());
    for _ in 0..n {
        key = key.checked_add(c.varint()?)?;
        out.push((key, decode(tables, c.bytes()?, &mut id)?));
    }
    (c.at == c.bytes.len()).then_some(out)
}

/// A whole record out of its coded bytes; `id` is the previous record's id
/// on the way in, this one's on the way out.
fn decode(tables: Tables, bytes: &[u8], id: &mut String) -> Option<Record> {
    let head = Head::read(bytes)?;
    next_id(id, head.id_shared, head.id_rest)?;
    let parent = head.parent_id(id)?;
    let mut c = head.fields;
    let n = c.varint()?;
    let mut fields = Vec::with_capacity(usize::try_from(n).ok().filter(|n| *n <= bytes.len())?);
    for _ in 0..n {
        let name = tables.name(c.varint()?)?.to_owned();
        let value = match tables.value(&mut c)? {
            ValueRef::Str(s) => Value::Str(s.to_owned()),
            ValueRef::List(l) => Value::List(l.iter().map(str::to_owned).collect()),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Num(n) => Value::Num(n),
            ValueRef::Bool(b) => Value::Bool(b),
        };
        fields.push(Field { name, value });
    }
    (c.at == bytes.len()).then_some(())?;
    Some(Record {
        id: id.clone(),
        kind: tables.name(head.kind)?.to_owned(),
        parent,
        point: head.point.map(RawPoint::get),
        fields,
    })
}
