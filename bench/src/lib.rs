//! Benchmarks of cairn live in `benches/` (criterion) and `spine.sh`
//! (import time and size at scale). This crate has no code of its own.
