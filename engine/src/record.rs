//! Records: what the store holds. Not tied to addresses: a record is an id, a
//! kind, an optional parent, an optional point and a list of typed fields.
//! A profile (the geocoder is the first) gives the fields their meaning.

use rkyv::{Archive, Deserialize, Serialize};

/// A typed field value.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Value {
    /// Text or keyword; the profile decides how it is indexed.
    Str(String),
    /// Several values of one field (alternative names, several postcodes).
    List(Vec<String>),
    Int(i64),
    Num(f64),
    /// Added after the others, so that records stored before keep their
    /// archived layout.
    Bool(bool),
}

impl Value {
    /// The first string of a text or list value.
    pub fn first_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::List(l) => l.first().map(String::as_str),
            _ => None,
        }
    }

    /// Every string of a text or list value.
    pub fn strs(&self) -> Vec<&str> {
        match self {
            Value::Str(s) => vec![s.as_str()],
            Value::List(l) => l.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
            Value::List(_) | Value::Bool(_) => None,
        }
    }
}

/// A geographic point in WGS84 degrees.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

impl Point {
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}

/// One named field.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

/// A document as stored.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    /// The caller's identifier, unique in a database.
    pub id: String,
    /// What the record is ("street", "housenumber", "shop" ...).
    pub kind: String,
    /// The id of the record this one belongs to (a housenumber's street).
    pub parent: Option<String>,
    pub point: Option<Point>,
    /// Fields in the order the source gave them.
    pub fields: Vec<Field>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|f| f.name == name).map(|f| &f.value)
    }
}
