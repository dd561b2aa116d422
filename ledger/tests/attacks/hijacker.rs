//! The hijacker: deploys someone else's manifest (seen in a mempool or on
//! a node) before its owner does, to take the name and the routing, or to
//! settle that manifest's usage under its own terms. A Deploy carries the
//! signed manifest, and only the manifest's owner may deploy it.

use crate::world::*;
use bonus_ledger::TxError;

#[test]
fn only_a_manifests_owner_can_deploy_it() {
    let mut w = World::new();
    let attacker = w.attacker();
    // Front-running the owner's next version, and replaying the current one.
    for m in [3, 1] {
        let error = w.refused(&attacker, deploy(m));
        assert!(matches!(error, TxError::NotManifestOwner { .. }), "{error}");
    }
    assert!(w.h.state.manifest(&manifest(3)).is_none());
    // A tampered manifest (a byte of its budget flipped) fails its owner's
    // signature, whoever sends it.
    let owner = w.owner();
    let bonus_ledger::TxBody::Deploy {
        manifest: mut bytes,
    } = deploy(3)
    else {
        unreachable!("deploy builds a Deploy");
    };
    // The last byte of the spend maximum: before it from the end are the
    // signature (64), owner (32), parent (33), version (4) and the three
    // empty list counts (env, hosts, routes).
    let spend_max_last = bytes.len() - 64 - 32 - 33 - 4 - 3 - 1;
    bytes[spend_max_last] ^= 0x80;
    let error = w.refused(&owner, bonus_ledger::TxBody::Deploy { manifest: bytes });
    assert!(matches!(error, TxError::InvalidManifest { .. }), "{error}");
    // The owner rolls forward and back; the name stays the owner's.
    w.ok(&owner, deploy(3));
    w.ok(&owner, deploy(1));
    let name = w.h.state.name("hello").expect("bound");
    assert_eq!(
        (name.owner, name.manifest_id),
        (owner.public(), manifest(1))
    );
    assert_eq!(
        w.h.state.manifest(&manifest(3)).map(|m| m.name.as_str()),
        Some("hello")
    );
}
