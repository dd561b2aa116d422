//! Cross-crate and multi-process tests. One binary, topic modules.

mod registry;
mod runtime;
mod serve;
