//! `cairn::import::read` of arbitrary bytes as BAN CSV, skipping and failing
//! on bad lines: errors are fine, panics are not.
#![no_main]

use cairn::import::{Format, OnError, Skipped};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], on_error: OnError) -> (cairn::Result<()>, usize, Skipped) {
    cairn_fuzz::read_records(data, Format::BanCsv, on_error)
}

fuzz_target!(|data: &[u8]| {
    let (skip, n_skip, skipped) = run(data, OnError::Skip);
    assert!(skipped.first.len() <= 20);
    let (fail, n_fail, _) = run(data, OnError::Fail);
    match (&skip, &fail) {
        (Ok(()), Ok(())) => assert!(skipped.count == 0 && n_fail == n_skip),
        (Ok(()), Err(cairn::Error::BadInput { line, .. })) => assert!(*line >= 1 && skipped.count > 0),
        // A bad header refuses the file in both modes.
        (Err(cairn::Error::BadInput { line: 1, .. }), Err(cairn::Error::BadInput { line: 1, .. })) => {}
        _ => panic!("skip: {skip:?}, fail: {fail:?}"),
    }
});
