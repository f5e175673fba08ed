//! The address profile: the geocoder. Addok-compatible features, the BAN
//! importers, the search plan and what a generation derives for it
//! (housenumbers by street, town words). The text analysis it relies on is
//! in [`crate::text::analysis`], shared with collections' `address`
//! analyzer.

pub mod batch;
mod feature;
pub mod import;
mod search;
mod write;

use std::time::Instant;

pub(crate) use feature::{feature, filter_value, text_doc, Target, TownWords, FILTERS};
pub use feature::{Feature, Prop};
pub use search::{ReverseQuery, SearchQuery};
pub use write::Batch;

use super::Profile;
use crate::docs::Docs;
use crate::error::Result;
use crate::generation::Generation;
use crate::live::Mask;
use crate::record::Record;
use crate::text::{Counts, TextDoc, TextIndex};

/// The geocoder's profile.
pub struct Address;

/// What an address generation derives from its files when it opens.
pub struct Derived {
    pub(crate) towns: TownWords,
}

impl Profile for Address {
    const FILTERS: &'static [&'static str] = &FILTERS;
    type Derived = Derived;
    type Query = SearchQuery;
    type Reverse = ReverseQuery;
    type Hit = Feature;

    fn text_doc(key: u64, record: &Record) -> Option<TextDoc<'static>> {
        text_doc(key, record)
    }

    fn indexed(kind: &str) -> bool {
        kind != feature::CHILD_KIND
    }

    fn child_tag(record: &Record) -> u32 {
        feature::number_tag(record)
    }

    fn derive(docs: &Docs, text: &TextIndex, saved: Option<&[u8]>) -> Result<Derived> {
        if let Some(towns) = saved.and_then(|b| TownWords::from_bytes(b, docs.len())) {
            return Ok(Derived { towns });
        }
        let towns = TownWords::build(docs, &text.slots_where("type", "municipality")?);
        Ok(Derived { towns })
    }

    fn save(derived: &Derived) -> Vec<u8> {
        derived.towns.to_bytes()
    }

    fn search(
        g: &Generation<Derived>,
        counts: &Counts<'_>,
        skip: Option<&Mask>,
        q: &SearchQuery,
        deadline: Option<Instant>,
    ) -> Result<Vec<Feature>> {
        search::search(g, counts, skip, q, deadline)
    }

    fn reverse(g: &Generation<Derived>, skip: Option<&Mask>, q: &ReverseQuery) -> Vec<Feature> {
        search::reverse(g, skip, q)
    }
}
