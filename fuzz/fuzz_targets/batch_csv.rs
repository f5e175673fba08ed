//! `Database::batch` of arbitrary bytes, as CSV or NDJSON, with options
//! taken from the first bytes, output to memory.
#![no_main]

use cairn::{BatchFormat, BatchOptions, Encoding};
use cairn_fuzz::{small_db, Bytes};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = ["q", "adresse", "address", "postcode", "citycode", "lat", "lon", "nope"];
const RESULTS: [&str; 6] = ["latitude", "result_label", "result_score", "result_distance", "result_status", "x"];

fuzz_target!(|data: &[u8]| {
    let mut head = Bytes(data);
    let (a, b, c) = (head.u8(), head.u8(), head.u8());
    let mut o = BatchOptions {
        threads: 1 + usize::from(a >> 7),
        format: if a & 1 == 0 { BatchFormat::Csv } else { BatchFormat::Ndjson },
        encoding: [Encoding::Auto, Encoding::Utf8, Encoding::Latin1, Encoding::Auto][usize::from(a >> 1 & 3)],
        delimiter: match a >> 3 & 7 {
            0 | 1 | 2 => None,
            3 => Some(b';'),
            4 => Some(b','),
            5 => Some(b'\t'),
            6 => Some(b'|'),
            _ => Some(c),
        },
        min_score: f64::from(c) / 255.0,
        ..BatchOptions::default()
    };
    if b & 1 != 0 {
        o.columns = vec![NAMES[usize::from(b >> 1 & 7)].to_owned()];
    }
    if b & 0x10 != 0 {
        o.postcode_column = Some("postcode".into());
    }
    if b & 0x20 != 0 {
        o.reverse = Some(("lat".into(), "lon".into()));
    }
    if b & 0x40 != 0 {
        o.kind = Some(["housenumber", "street"][usize::from(c & 1)].into());
    }
    if b & 0x80 != 0 {
        o.result_columns = vec![RESULTS[usize::from(c % 6)].to_owned(), "result_status".into()];
    }
    let input = head.0;
    let checked = o.check();
    let mut out = Vec::new();
    let mut rows = 0;
    let r = small_db().batch(input, &mut out, &o, &mut |n| rows += n);
    match r {
        Ok(s) => {
            assert!(checked.is_ok());
            assert_eq!(s.rows, rows);
            assert_eq!(s.rows, s.matched + s.unmatched);
            if o.format == BatchFormat::Ndjson {
                for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    serde_json::from_slice::<serde_json::Value>(line).expect("NDJSON output line is JSON");
                }
            }
        }
        Err(cairn::Error::BadInput { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
});
