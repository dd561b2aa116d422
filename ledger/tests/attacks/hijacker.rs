//! The hijacker: deploys someone else's manifest id under its own name, so
//! that settlement of that manifest (and its routing) would follow it.

use crate::world::*;
use bonus_ledger::TxError;

#[test]
fn a_manifest_id_belongs_to_the_name_that_first_deployed_it() {
    let mut w = World::new();
    let attacker = w.attacker();
    let before = w.h.state.manifest(&manifest(1)).cloned();
    let error = w.refused(&attacker, deploy("evil", 1, u64::MAX, u64::MAX));
    assert!(matches!(error, TxError::ManifestClaimed { .. }), "{error}");
    assert_eq!(w.h.state.manifest(&manifest(1)).cloned(), before);
    assert!(w.h.state.name("evil").is_none());
    // Nor can the owner's own name take it over, even from the owner with
    // other terms: the terms consented to are fixed.
    let owner = w.owner();
    let error = w.refused(&owner, deploy("hello", 1, PRICE_MAX * 10, BUDGET));
    assert!(matches!(error, TxError::Malformed(_)), "{error}");
    // Rolling back to the same manifest with the same terms is fine.
    w.ok(&owner, deploy("hello", 2, PRICE_MAX, BUDGET));
    w.ok(&owner, deploy("hello", 1, PRICE_MAX, BUDGET));
    assert_eq!(
        w.h.state.name("hello").map(|n| n.manifest_id),
        Some(manifest(1))
    );
}
