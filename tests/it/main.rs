//! Cross-crate and multi-process tests. One binary, topic modules.

mod ledger;
mod network;
mod registry;
mod runtime;
mod sdk_js;
mod serve;
