//! The router against fake workers and a fake ledger on loopback.

mod choice;
mod edge;
mod forwarding;
mod ledger;
mod routing;
mod support;
