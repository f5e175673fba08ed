//! A program that embeds cairn for its own records: a collection of
//! business verifications with a typed Rust struct, written, queried with a
//! filter, a sort and the cursor, and counted by facets.
//!
//!   cargo run --release -p cairn --example collection -- /tmp/cairn-example

use cairn::collection::{CollectionError, FieldSpec, FieldType, Filter, Query, Schema, SortKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Verification {
    id: String,
    business_id: String,
    status: String,
    /// RFC 3339.
    created_at: String,
    confidence: f64,
}

fn main() -> Result<(), CollectionError> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp/cairn-example".into());
    let db = cairn::Database::open(&dir)?;
    let schema = Schema::new("id")
        .field("business_id", FieldSpec::new(FieldType::Keyword))
        .field("status", FieldSpec { lowercase: true, ..FieldSpec::new(FieldType::Keyword) })
        .field("created_at", FieldSpec::new(FieldType::Date))
        .field("confidence", FieldSpec::new(FieldType::Float));
    db.put_collection("verifications", &schema)?;

    // One commit: every record is visible when `write_collection` returns,
    // or none is (a record that does not fit the schema undoes it all).
    let statuses = ["verified", "pending", "rejected"];
    let ((), commit) = db.write_collection("verifications", |w| {
        for i in 0..1000u32 {
            w.put_json(Verification {
                id: format!("v{i:05}"),
                business_id: format!("b{:03}", i % 150),
                status: statuses[(i / 7 % 3) as usize].to_owned(),
                created_at: format!("2026-{:02}-{:02}T{:02}:00:00Z", 1 + i % 12, 1 + i % 28, i % 24),
                confidence: f64::from(i % 100) / 100.0,
            })?;
        }
        Ok(())
    })?;
    println!("generation {}: {} records", commit.generation, commit.total);

    // The newest verified checks of March, 25 at a time, with the cursor.
    let mut query = Query {
        filter: Filter::And(vec![
            Filter::Terms { field: "status".into(), values: vec!["Verified".into()] },
            Filter::Range {
                field: "created_at".into(),
                lower: std::ops::Bound::Included("2026-03-01T00:00:00Z".into()),
                upper: std::ops::Bound::Excluded("2026-04-01T00:00:00Z".into()),
            },
        ]),
        sort: vec![SortKey { field: "created_at".into(), descending: true }],
        limit: 25,
        facets: vec!["business_id".into()],
        facet_limit: 3,
        total: true,
        ..Query::default()
    };
    let collection = db.collection("verifications")?;
    let mut seen = 0;
    loop {
        let page = collection.query(&query)?;
        if let Some(total) = page.total {
            println!("{total} matches; most frequent businesses: {:?}", page.facets[0].1);
        }
        for hit in &page.hits {
            let v: Verification =
                hit.decode().map_err(|e| CollectionError::BadInput { at: hit.id.clone(), reason: e.to_string() })?;
            if seen < 3 {
                println!("{} {} {} {:.2}", v.id, v.business_id, v.created_at, v.confidence);
            }
            seen += 1;
        }
        match page.next_cursor {
            Some(c) => {
                // Facets and the count came with the first page.
                query.cursor = Some(c);
                query.total = false;
                query.facets.clear();
            }
            None => break,
        }
    }
    println!("{seen} hits paged");
    Ok(())
}
