//! Benchmarks for Bonus, run on demand with the scripts beside this crate.
//! Each reports ratios against an anchor measured in the same run.

pub mod plain;
