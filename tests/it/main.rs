//! Cross-crate and multi-process tests. One binary, topic modules.

mod runtime;
mod serve;
