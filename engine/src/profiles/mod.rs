//! Profiles: what the engine core makes of one kind of record. The core
//! (store, documents, geo grid, text index, cache, snapshots, collections)
//! knows records, words, points and generations; a profile says which
//! fields are searched and filtered, what a generation derives from its
//! files, and how a query is planned and scored. The geocoder is the
//! first: [`address`].

pub mod address;

use std::time::Instant;

use crate::docs::Docs;
use crate::error::Result;
use crate::generation::Generation;
use crate::live::Mask;
use crate::record::Record;
use crate::text::{Counts, TextDoc, TextIndex};

/// What the core is given to serve one kind of record through its
/// generations.
pub trait Profile {
    /// Keyword fields of the text index that queries filter on: with the
    /// words of [`Profile::text_doc`], the text index's schema.
    const FILTERS: &'static [&'static str];
    /// What a generation derives from its files when it opens.
    type Derived: Send + Sync;
    /// A query of the profile's search plan, a query by position, and what
    /// both answer.
    type Query;
    type Reverse;
    type Hit;

    /// How a stored record becomes text (words, filter values, a point);
    /// `None`: it is found through another record, not by its own words.
    fn text_doc(key: u64, record: &Record) -> Option<TextDoc<'static>>;

    /// Whether records of `kind` have a text document of their own (see
    /// [`Profile::text_doc`]): what a masked record takes from the counts a
    /// query is planned on.
    fn indexed(kind: &str) -> bool;

    /// A 32-bit tag of a record, kept beside it in its parent's list of
    /// children ([`Docs::child_tags`]) when the generation is built, so
    /// that a search can pick a child without reading each child's record.
    fn child_tag(record: &Record) -> u32;

    /// The derived state of a generation whose files are `docs` and `text`;
    /// `saved`: what [`Profile::save`] made of it when the generation was
    /// built, if it was saved.
    fn derive(docs: &Docs, text: &TextIndex, saved: Option<&[u8]>) -> Result<Self::Derived>;

    /// The derived state as bytes, saved with the generation so that
    /// opening it derives nothing.
    fn save(derived: &Self::Derived) -> Vec<u8>;

    /// The search plan over one generation, the slots of `skip` left out
    /// (records a live layer replaced), its words counted in `counts` (the
    /// text indexes of every part the query reads); past `deadline`, gives
    /// up with [`crate::Error::Timeout`].
    fn search(
        g: &Generation<Self::Derived>,
        counts: &Counts<'_>,
        skip: Option<&Mask>,
        q: &Self::Query,
        deadline: Option<Instant>,
    ) -> Result<Vec<Self::Hit>>;

    /// The records nearest a position, by the profile's plan.
    fn reverse(g: &Generation<Self::Derived>, skip: Option<&Mask>, q: &Self::Reverse) -> Vec<Self::Hit>;
}

/// The profile of this build's generations.
pub(crate) type Active = address::Address;
