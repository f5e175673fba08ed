//! A collection's schema: its primary key and the type of each field,
//! declared in JSON or TOML, or built in Rust.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CollectionError;

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Exact values, one or several (a JSON array); filtered, faceted,
    /// sorted (by the smallest) and collapsed on.
    Keyword,
    /// Words for full-text search.
    Text,
    Integer,
    Float,
    Bool,
    /// An instant: RFC 3339 text (`2026-12-06T10:00:00+01:00`) or epoch
    /// seconds; kept to the millisecond.
    Date,
    /// `{"lat": .., "lon": ..}`, `"lat,lon"` or `[lon, lat]` (`GeoJSON` order).
    GeoPoint,
    /// Any JSON, stored and returned, never indexed.
    Json,
}

/// How a text field is cut into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Analyzer {
    /// Lowercase, accents removed, cut at anything not a letter or digit.
    #[default]
    Standard,
    /// `standard`, and French elisions (`l'`, `d'`, `qu'`...) removed.
    French,
    /// The geocoder's analysis: abbreviations and synonyms of addresses.
    Address,
    /// The whole value is one word (lowercased).
    None,
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Keywords: compared lowercased.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lowercase: bool,
    /// Keywords: compared lowercased and without accents.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fold: bool,
    /// Text fields only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzer: Option<Analyzer>,
    /// A record without this field is refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_false(b: &bool) -> bool {
    !*b
}

impl FieldSpec {
    pub fn new(kind: FieldType) -> FieldSpec {
        FieldSpec { kind, lowercase: false, fold: false, analyzer: None, required: false }
    }
}

/// The schema of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The field that identifies a record (a keyword or an integer):
    /// putting a record with the id of another replaces it.
    pub primary_key: String,
    pub fields: BTreeMap<String, FieldSpec>,
}

/// Longest field name and collection name accepted.
const MAX_NAME: usize = 64;

/// Whether `name` may name a collection: ASCII letters, digits, `_` and
/// `-`, at most 64, so that it is safe in a URL path and a store key.
pub fn valid_collection_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Schema {
    /// A schema with only its primary key, a keyword; add fields with
    /// [`Schema::field`].
    pub fn new(primary_key: &str) -> Schema {
        let mut fields = BTreeMap::new();
        fields.insert(primary_key.to_owned(), FieldSpec { required: true, ..FieldSpec::new(FieldType::Keyword) });
        Schema { primary_key: primary_key.to_owned(), fields }
    }

    /// Adds or replaces a field.
    #[must_use]
    pub fn field(mut self, name: &str, spec: FieldSpec) -> Schema {
        self.fields.insert(name.to_owned(), spec);
        self
    }

    /// Reads a schema in JSON, or TOML when it does not start with `{`.
    pub fn parse(text: &str) -> Result<Schema, CollectionError> {
        let schema: Schema = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| CollectionError::Schema(format!("not a schema: {e}")))?
        } else {
            toml::from_str(text).map_err(|e| CollectionError::Schema(format!("not a schema: {e}")))?
        };
        schema.check()?;
        Ok(schema)
    }

    /// Refuses a schema that cannot work.
    pub fn check(&self) -> Result<(), CollectionError> {
        let bad = |why: String| Err(CollectionError::Schema(why));
        if self.fields.len() > 1000 {
            return bad(format!("{} fields: at most 1000", self.fields.len()));
        }
        for (name, spec) in &self.fields {
            if name.is_empty() || name.len() > MAX_NAME || name.contains('.') {
                return bad(format!("field name {name:?}: 1 to {MAX_NAME} bytes, no '.'"));
            }
            if spec.analyzer.is_some() && spec.kind != FieldType::Text {
                return bad(format!("field {name:?}: an analyzer is for text fields, this one is {:?}", spec.kind));
            }
            if (spec.lowercase || spec.fold) && spec.kind != FieldType::Keyword {
                return bad(format!("field {name:?}: lowercase and fold are for keyword fields"));
            }
        }
        match self.fields.get(&self.primary_key) {
            None => bad(format!("the primary key {:?} is not one of the fields", self.primary_key)),
            Some(s) if !matches!(s.kind, FieldType::Keyword | FieldType::Integer) => {
                bad(format!("the primary key {:?} must be a keyword or an integer, not {:?}", self.primary_key, s.kind))
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether records valid under `self` stay valid under `new` and keep
    /// their meaning: fields may be added (not required ones), nothing else
    /// changes. Says why not.
    pub fn change_to(&self, new: &Schema) -> Result<(), CollectionError> {
        let refuse = |why: String| Err(CollectionError::SchemaChange(why));
        if new.primary_key != self.primary_key {
            return refuse(format!(
                "the primary key cannot change ({:?} to {:?}): every record would need a new id",
                self.primary_key, new.primary_key
            ));
        }
        for (name, old) in &self.fields {
            match new.fields.get(name) {
                None => return refuse(format!("field {name:?} would be removed: drop and re-create the collection")),
                Some(spec) if spec != old => {
                    return refuse(format!(
                    "field {name:?} would change from {} to {}: records stored under the old one would change meaning",
                    serde_json::to_string(old).unwrap_or_default(),
                    serde_json::to_string(spec).unwrap_or_default()
                ))
                }
                Some(_) => {}
            }
        }
        for (name, spec) in &new.fields {
            if spec.required && !self.fields.contains_key(name) {
                return refuse(format!("new field {name:?} cannot be required: records stored without it exist"));
            }
        }
        Ok(())
    }

    pub fn spec(&self, field: &str) -> Option<&FieldSpec> {
        self.fields.get(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"primary_key":"id","fields":{"id":{"type":"keyword"},"status":{"type":"keyword","lowercase":true},"at":{"type":"date"}}}"#;

    #[test]
    fn json_and_toml_say_the_same() {
        let toml = "primary_key = \"id\"\n[fields]\nid = { type = \"keyword\" }\nstatus = { type = \"keyword\", lowercase = true }\nat = { type = \"date\" }\n";
        assert_eq!(Schema::parse(JSON).unwrap(), Schema::parse(toml).unwrap());
    }

    #[test]
    fn bad_schemas_say_why() {
        let e = Schema::parse(r#"{"primary_key":"x","fields":{"id":{"type":"keyword"}}}"#).unwrap_err();
        assert!(e.to_string().contains("\"x\" is not one of the fields"), "{e}");
        let e = Schema::parse(r#"{"primary_key":"id","fields":{"id":{"type":"strng"}}}"#).unwrap_err();
        assert!(e.to_string().contains("strng"), "{e}");
        let e = Schema::parse(r#"{"primary_key":"id","fields":{"id":{"type":"float"}}}"#).unwrap_err();
        assert!(e.to_string().contains("keyword or an integer"), "{e}");
        let e = Schema::parse(r#"{"primary_key":"id","fields":{"id":{"type":"keyword","analyzer":"french"}}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("analyzer"), "{e}");
    }

    #[test]
    fn adding_a_field_is_safe_changing_one_is_not() {
        let old = Schema::parse(JSON).unwrap();
        let added = old.clone().field("n", FieldSpec::new(FieldType::Integer));
        assert!(old.change_to(&added).is_ok());
        let changed = old.clone().field("at", FieldSpec::new(FieldType::Integer));
        assert!(old.change_to(&changed).unwrap_err().to_string().contains("\"at\""));
        assert!(added.change_to(&old).unwrap_err().to_string().contains("removed"));
        let required = old.clone().field("n", FieldSpec { required: true, ..FieldSpec::new(FieldType::Integer) });
        assert!(old.change_to(&required).is_err());
    }
}
