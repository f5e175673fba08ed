//! `cairn::import::read` of arbitrary bytes as BAN NDJSON, skipping and
//! failing on bad lines: errors are fine, panics are not.
#![no_main]

use cairn::import::{Format, OnError, Skipped};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], on_error: OnError) -> (cairn::Result<()>, usize, Skipped) {
    cairn_fuzz::read_records(data, Format::BanNdjson, on_error)
}

fuzz_target!(|data: &[u8]| {
    let (skip, n_skip, skipped) = run(data, OnError::Skip);
    // Reading from memory cannot fail: every bad line is skipped.
    skip.expect("skip mode reads to the end");
    assert!(skipped.first.len() <= 20);
    let (fail, n_fail, none) = run(data, OnError::Fail);
    assert_eq!(none.count, 0);
    match fail {
        Ok(()) => assert!(skipped.count == 0 && n_fail == n_skip),
        Err(cairn::Error::BadInput { line, .. }) => assert!(line >= 1 && skipped.count > 0),
        Err(e) => panic!("unexpected error {e}"),
    }
});
