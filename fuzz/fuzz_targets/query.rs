//! The query parser and normaliser on arbitrary text, then a full search
//! with the bytes as the query on the small database.
#![no_main]

use cairn::text::analysis::{
    bigram_similarity, compare_form, edge_ngrams, fold, housenumber_key, indexed_prefix, parse_query, tokens,
    MAX_PREFIX,
};
use cairn::{Point, SearchQuery};
use cairn_fuzz::{small_db, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut head = Bytes(data);
    let (flags, b1, b2) = (head.u8(), head.u8(), head.u8());
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    let folded = fold(s);
    assert!(folded.chars().all(|c| !c.is_uppercase() || !c.is_ascii()), "{folded:?}");
    let toks = tokens(s);
    assert!(toks.iter().all(|t| !t.is_empty() && !t.contains(char::is_whitespace)), "{toks:?}");
    let parsed = parse_query(s);
    assert!(!parsed.compare.contains("  ") && parsed.compare == parsed.compare.trim(), "{parsed:?}");
    let _ = compare_form(s);
    let _ = housenumber_key(s);
    for g in edge_ngrams(&toks) {
        assert!(g.chars().count() <= MAX_PREFIX);
    }
    for t in &toks {
        assert!(t.starts_with(indexed_prefix(t)));
    }
    let sim = bigram_similarity(&parsed.compare, &compare_form(s));
    assert!((0.0..=1.0).contains(&sim), "{sim}");

    // A search with the rest of the bytes as the query.
    let q = String::from_utf8_lossy(head.0).into_owned();
    let mut sq = SearchQuery::new(q);
    sq.limit = usize::from(flags & 0x3f);
    sq.autocomplete = flags & 0x40 != 0;
    if flags & 0x80 != 0 {
        sq.near = Some(Point { lat: f64::from(b1) - 128.0, lon: (f64::from(b2) - 128.0) * 1.4 });
    }
    let found = small_db().search(&sq).expect("search");
    assert!(found.len() <= sq.limit.max(1), "{} results for limit {}", found.len(), sq.limit);
    for f in &found {
        assert!(f.score.is_finite() && (0.0..=1.0).contains(&f.score), "score {}", f.score);
    }
});
