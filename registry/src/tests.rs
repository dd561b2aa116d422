//! Unit tests of manifests and the store: every bad input gets its error
//! and leaves the store as it was.

use crate::manifest::{Manifest, ManifestBudget, ManifestLimits, SignedManifest};
use crate::{Error, NameBinder, Store, StoreConfig};
use bonus_ids::{ArtifactId, SecretKey};

fn manifest(owner: &SecretKey, name: &str, artifact: &[u8]) -> Manifest {
    Manifest {
        name: name.into(),
        artifact_id: ArtifactId::of(artifact),
        artifact_bytes: artifact.len() as u64,
        limits: ManifestLimits {
            fuel_max: 1_000_000,
            memory_bytes_max: 64 << 20,
            deadline_ms: 5000,
        },
        // Not `DEV`, and above 2^32, so every byte of the encoding is seen.
        budget: ManifestBudget {
            price_per_million_fuel_max: 1_200,
            spend_per_period_max: 5_000_000_000,
        },
        env: vec![("A".into(), "1".into()), ("B".into(), "two".into())],
        allowed_outbound_hosts: vec!["https://api.example.com".into()],
        routes: vec!["/".into()],
        version: 1,
        parent: None,
        owner: owner.public(),
    }
}

fn store(config: StoreConfig) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), config).expect("opens");
    (dir, store)
}

#[test]
fn a_signed_manifest_round_trips() {
    let key = SecretKey::from_seed([1; 32]);
    let signed = manifest(&key, "hello", b"wasm").sign(&key).expect("signs");
    let decoded = SignedManifest::decode(&signed.encode()).expect("decodes");
    assert_eq!(decoded, signed);
    assert_eq!(decoded.id(), signed.manifest().id());
}

#[test]
fn tampered_or_forged_manifests_are_rejected() {
    let key = SecretKey::from_seed([1; 32]);
    let other = SecretKey::from_seed([2; 32]);
    let signed = manifest(&key, "hello", b"wasm").sign(&key).expect("signs");
    let bytes = signed.encode();

    // Any flipped bit in the body changes the id: the signature fails (or
    // the encoding no longer decodes).
    for idx in [1, 10, 40, bytes.len() - 70] {
        let mut tampered = bytes.clone();
        tampered[idx] ^= 1;
        assert!(SignedManifest::decode(&tampered).is_err(), "byte {idx}");
    }
    // A flipped signature bit.
    let mut forged = bytes.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        SignedManifest::decode(&forged),
        Err(Error::ManifestSignatureInvalid { .. })
    ));
    // Signed by someone else than the owner it names.
    assert!(manifest(&key, "hello", b"wasm").sign(&other).is_err());
    // Trailing garbage, truncation.
    assert!(SignedManifest::decode(&[bytes.clone(), vec![0]].concat()).is_err());
    assert!(SignedManifest::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(SignedManifest::decode(&[]).is_err());
}

#[test]
fn manifest_rules_are_enforced() {
    let key = SecretKey::from_seed([1; 32]);
    let check = |change: fn(&mut Manifest)| {
        let mut m = manifest(&key, "hello", b"wasm");
        change(&mut m);
        assert!(matches!(m.sign(&key), Err(Error::ManifestInvalid { .. })));
    };
    check(|m| m.name = "Hello".into());
    check(|m| m.name = "-x".into());
    check(|m| m.name = String::new());
    check(|m| m.name = "a".repeat(64));
    check(|m| m.env = vec![("B".into(), "1".into()), ("A".into(), "2".into())]);
    check(|m| m.version = 2);
    check(|m| m.routes = vec!["no-slash".into()]);
}

#[test]
fn blobs_are_verified_and_bounded_while_streaming() {
    let (_dir, store) = store(StoreConfig {
        artifact_bytes_max: 100,
        ..StoreConfig::default()
    });
    let id = store.put_blob(b"hello").expect("stores");
    assert_eq!(store.read_blob(&id).expect("reads"), b"hello");

    // Wrong expected id: rejected, nothing stored.
    let mut writer = store
        .writer(Some(ArtifactId::of(b"other")), None)
        .expect("writer");
    writer.write(b"bytes").expect("writes");
    assert!(matches!(
        writer.commit(),
        Err(Error::ArtifactMismatch { .. })
    ));
    assert!(
        store
            .blob_info(&ArtifactId::of(b"bytes"))
            .expect("index")
            .is_none()
    );

    // Oversized: the write that crosses the limit fails, before the rest.
    let mut writer = store.writer(None, None).expect("writer");
    writer.write(&[0; 60]).expect("within the limit");
    assert!(matches!(
        writer.write(&[0; 60]),
        Err(Error::ArtifactTooLarge { .. })
    ));
    drop(writer);
    // Declared oversized: refused before any byte.
    assert!(matches!(
        store.writer(None, Some(101)),
        Err(Error::ArtifactTooLarge { .. })
    ));

    // Truncated: fewer bytes than declared.
    let mut writer = store.writer(None, Some(10)).expect("writer");
    writer.write(b"12345").expect("writes");
    assert!(matches!(writer.commit(), Err(Error::Truncated { .. })));

    assert_eq!(store.blobs().expect("lists").len(), 1, "only the good blob");
    let leftovers = std::fs::read_dir(_dir.path().join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0, "failed writes leave no temp files");
}

#[test]
fn concurrent_puts_of_one_artifact_store_it_once() {
    let (_dir, store) = store(StoreConfig::default());
    let bytes = vec![7u8; 1 << 20];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.put_blob(&bytes)))
            .collect();
        for handle in handles {
            assert_eq!(
                handle.join().expect("no panic").expect("stores"),
                ArtifactId::of(&bytes)
            );
        }
    });
    assert_eq!(store.blobs().expect("lists").len(), 1);
    assert_eq!(
        store.read_blob(&ArtifactId::of(&bytes)).expect("reads"),
        bytes
    );
}

#[test]
fn reopening_discards_partial_writes_and_reconciles_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = {
        let store = Store::open(dir.path(), StoreConfig::default()).expect("opens");
        store.put_blob(b"good").expect("stores")
    };
    // What a crash can leave: a partial temp file, a renamed but unindexed
    // blob, and a file whose name lies about its content.
    std::fs::write(dir.path().join("tmp/.tmpPARTIAL"), b"half").expect("writes");
    let unindexed = ArtifactId::of(b"renamed before indexing");
    std::fs::write(
        dir.path().join("blobs").join(unindexed.to_hex()),
        b"renamed before indexing",
    )
    .expect("writes");
    let liar = ArtifactId::of(b"claimed");
    std::fs::write(dir.path().join("blobs").join(liar.to_hex()), b"actual").expect("writes");

    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopens");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
    assert!(store.blob_info(&good).expect("index").is_some());
    assert!(store.blob_info(&unindexed).expect("index").is_some());
    assert!(store.blob_info(&liar).expect("index").is_none());
    assert!(!store.blob_path(&liar).exists());
}

#[test]
fn manifests_need_their_artifact_and_names_their_owner() {
    let (_dir, store) = store(StoreConfig::default());
    let alice = SecretKey::from_seed([1; 32]);
    let bob = SecretKey::from_seed([2; 32]);
    let artifact = b"component bytes";
    let signed = manifest(&alice, "hello", artifact)
        .sign(&alice)
        .expect("signs");
    assert!(matches!(
        store.put_manifest(&signed),
        Err(Error::ArtifactUnknown { .. })
    ));
    store.put_blob(artifact).expect("stores");
    let mut wrong_size = manifest(&alice, "hello", artifact);
    wrong_size.artifact_bytes += 1;
    let wrong_size = wrong_size.sign(&alice).expect("signs");
    assert!(matches!(
        store.put_manifest(&wrong_size),
        Err(Error::ArtifactSizeMismatch { .. })
    ));

    assert!(store.put_manifest(&signed).expect("stores"));
    assert!(
        !store.put_manifest(&signed).expect("idempotent"),
        "second put is not new"
    );
    assert!(
        store
            .blob_info(&signed.manifest().artifact_id)
            .expect("index")
            .expect("held")
            .pinned
    );
    store.bind(&signed).expect("first deploy claims the name");
    assert_eq!(store.resolve("hello").expect("resolves"), Some(signed.id()));

    let theirs = manifest(&bob, "hello", artifact).sign(&bob).expect("signs");
    store.put_manifest(&theirs).expect("stores");
    assert!(matches!(store.bind(&theirs), Err(Error::NameTaken { .. })));
    assert_eq!(store.resolve("hello").expect("resolves"), Some(signed.id()));
}

#[test]
fn gc_removes_least_recently_used_unpinned_blobs() {
    let (_dir, store) = store(StoreConfig {
        unpinned_bytes_budget: 10,
        ..StoreConfig::default()
    });
    let old = store.put_blob(&[1; 8]).expect("stores");
    let pinned = store.put_blob(&[2; 8]).expect("stores");
    store.set_pinned(&pinned, true).expect("pins");
    let report = store.gc().expect("gc");
    assert_eq!(report.blobs_removed, 0, "8 unpinned bytes fit the budget");
    let new = store.put_blob(&[3; 8]).expect("stores");
    let report = store.gc().expect("gc");
    assert_eq!(report.blobs_removed, 1);
    let remaining: Vec<_> = store
        .blobs()
        .expect("lists")
        .iter()
        .map(|b| b.artifact_id)
        .collect();
    assert!(remaining.contains(&pinned));
    assert_eq!(remaining.len(), 2);
    assert!(remaining.contains(&new), "the newer blob is kept");
    assert!(
        !remaining.contains(&old),
        "the least recently used blob goes"
    );
    // A read makes a blob recent: now the other one goes first.
    let older = store.put_blob(&[4; 8]).expect("stores");
    let _ = store.read_blob(&new).expect("reads");
    let report = store.gc().expect("gc");
    assert_eq!(report.blobs_removed, 1);
    let remaining = store.blobs().expect("lists");
    assert!(
        remaining.iter().any(|b| b.artifact_id == new),
        "read, so recent"
    );
    assert!(!remaining.iter().any(|b| b.artifact_id == older));
}

/// The canonical encoding is a wire format other implementations (sdk-js)
/// must reproduce byte for byte: this vector pins it. To rewrite it after a
/// deliberate format change, run with `BONUS_WRITE_VECTORS=1` and review.
#[test]
fn manifest_encoding_matches_the_shared_vector() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/manifest-v2.json"
    );
    let expected = rust_vector();
    if std::env::var_os("BONUS_WRITE_VECTORS").is_some() {
        std::fs::write(path, &expected).expect("writes the vector");
    }
    assert_eq!(
        include_str!("../tests/vectors/manifest-v2.json"),
        expected,
        "run `BONUS_WRITE_VECTORS=1 cargo test -p bonus-registry` and review"
    );
}

/// The text of `tests/vectors/manifest-v2.json`: [`manifest`] for "hello",
/// signed by the key from seed `[1; 32]`.
fn rust_vector() -> String {
    let key = SecretKey::from_seed([1; 32]);
    let signed = manifest(&key, "hello", b"wasm").sign(&key).expect("signs");
    let budget = signed.manifest().budget;
    let vector = std::collections::BTreeMap::from([
        (
            "description",
            serde_json::json!(
                "Manifest v2 test vector: owner seed [1; 32], name hello, artifact blake3(\"wasm\"), \
                 limits fuel 1000000 / memory 64 MiB / deadline 5000 ms, budget price max 1200 per \
                 million fuel / spend max 5000000000 per period, env A=1 B=two, outbound \
                 https://api.example.com, routes [/], version 1, no parent. Ed25519 signatures \
                 are deterministic."
            ),
        ),
        ("owner_seed_hex", hex(&[1; 32]).into()),
        ("owner", key.public().to_string().into()),
        (
            "price_per_million_fuel_max",
            budget.price_per_million_fuel_max.into(),
        ),
        ("spend_per_period_max", budget.spend_per_period_max.into()),
        ("encoding_hex", hex(&signed.manifest().encode()).into()),
        ("manifest_id", signed.id().to_hex().into()),
        ("signature_hex", hex(signed.signature().as_bytes()).into()),
        ("signed_hex", hex(&signed.encode()).into()),
    ]);
    format!(
        "{}\n",
        serde_json::to_string_pretty(&vector).expect("serializes")
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

#[test]
fn the_budget_round_trips() {
    let key = SecretKey::from_seed([1; 32]);
    for budget in [
        ManifestBudget::DEV,
        ManifestBudget {
            price_per_million_fuel_max: 0,
            spend_per_period_max: 0,
        },
        ManifestBudget {
            price_per_million_fuel_max: u64::MAX,
            spend_per_period_max: u64::MAX - 1,
        },
    ] {
        let mut m = manifest(&key, "hello", b"wasm");
        m.budget = budget;
        let signed = m.sign(&key).expect("signs");
        let decoded = SignedManifest::decode(&signed.encode()).expect("decodes");
        assert_eq!(decoded.manifest().budget, budget);
        assert_eq!(decoded, signed);
    }
}

/// `manifest-v1.json` as format 1 wrote it (before the budget): the same
/// manifest as [`manifest`] for "hello", signed over `bonus/manifest/v1`.
const FORMAT_1_SIGNED_HEX: &str = "010568656c6c6f107d2022ae9e6c9054a44bedd13ef7684736ac6018ea56c0b9128f51f73cc6fb000000000000000400000000000f4240000000000400000000001388020141013101420374776f011768747470733a2f2f6170692e6578616d706c652e636f6d01012f00000001008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c68d8effcdfd40557f729400cbe9f2907ad3f11918377f83cea70f2b3e25bbee631170e3990764feacea773cfe87633ef7c79b1b02464f11449c4ed857f16e705";

#[test]
fn a_format_1_manifest_is_refused_with_the_fix() {
    let error = SignedManifest::decode(&unhex(FORMAT_1_SIGNED_HEX))
        .expect_err("format 1 carries no budget");
    assert!(
        matches!(error, Error::ManifestFormatRetired { format: 1 }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "manifest format 1 is no longer accepted; re-sign it with this version of bonus"
    );
    // Relabelled as format 2 it is merely malformed: it lacks the budget.
    let mut relabelled = unhex(FORMAT_1_SIGNED_HEX);
    relabelled[0] = 2;
    assert!(matches!(
        SignedManifest::decode(&relabelled),
        Err(Error::ManifestMalformed { .. })
    ));
}

#[test]
fn changing_the_budget_changes_the_id_so_no_signature_carries_over() {
    let key = SecretKey::from_seed([1; 32]);
    let signed = manifest(&key, "hello", b"wasm").sign(&key).expect("signs");
    let changes: [fn(&mut ManifestBudget); 2] = [
        |budget| budget.price_per_million_fuel_max += 1,
        |budget| budget.spend_per_period_max += 1,
    ];
    for change in changes {
        let mut changed = signed.manifest().clone();
        change(&mut changed.budget);
        assert_ne!(changed.id(), signed.id());
        // The owner's signature on the original, on the changed manifest.
        let forged = [changed.encode(), signed.signature().as_bytes().to_vec()].concat();
        assert!(matches!(
            SignedManifest::decode(&forged),
            Err(Error::ManifestSignatureInvalid { .. })
        ));
    }
}
