//! The ledger played as an attacker. Each hole found in review has a named
//! actor here (one file each) that tries it against the real state machine
//! (or the real validators in the deterministic simulator) and asserts the
//! attack is refused: balances, supply and the state root unchanged, and
//! no honest balance moved without its owner's signature or consent.

#[path = "../common/conflicter.rs"]
mod conflicter;

mod all_at_once;
mod deadbeat;
mod drainer;
mod equivocator;
mod hijacker;
mod jammer;
mod replayer;
mod spammer;
mod splitter;
mod world;
