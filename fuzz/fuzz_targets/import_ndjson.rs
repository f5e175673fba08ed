//! `cairn::import::read` of arbitrary bytes as BAN NDJSON, skipping and
//! failing on bad lines: errors are fine, panics are not.
#![no_main]

use cairn::import::{read, Format, OnError, Skipped};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], on_error: OnError) -> (cairn::Result<()>, usize, Skipped) {
    let mut skipped = Skipped::default();
    let mut n = 0;
    let r = read(data, Format::BanNdjson, on_error, &mut skipped, &mut |rec| {
        assert!(!rec.id.is_empty() && !rec.kind.is_empty(), "{rec:?}");
        assert!(rec.point.is_some_and(|p| p.is_valid()), "{rec:?}");
        n += 1;
        Ok(())
    });
    (r, n, skipped)
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
