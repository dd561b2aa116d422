//! Manifests signed by sdk-js verify here, and what Rust signs is what
//! sdk-js produces: `tests/vectors/manifest-js-v2.json` was written by
//! `@bonus/client` (`sdk-js/packages/client/scripts/vectors.js`), whose own
//! tests reproduce `manifest-v2.json`, written by this crate.

use bonus_ids::{ArtifactId, ManifestId, SecretKey};
use bonus_registry::{Manifest, ManifestBudget, ManifestLimits, SignedManifest};

fn vector() -> serde_json::Value {
    serde_json::from_str(include_str!("vectors/manifest-js-v2.json")).expect("vector parses")
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "even hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn strs(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// The manifest the vector describes, built field by field in Rust.
fn described(vector: &serde_json::Value, key: &SecretKey) -> Manifest {
    let u64_of = |field: &str| vector[field].as_u64().expect("a number");
    Manifest {
        name: vector["name"].as_str().expect("name").to_string(),
        artifact_id: vector["artifact_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("artifact id"),
        artifact_bytes: u64_of("artifact_bytes"),
        limits: ManifestLimits {
            fuel_max: u64_of("fuel_max"),
            memory_bytes_max: u64_of("memory_bytes_max"),
            deadline_ms: u64_of("deadline_ms") as u32,
        },
        budget: ManifestBudget {
            price_per_million_fuel_max: u64_of("price_per_million_fuel_max"),
            spend_per_period_max: u64_of("spend_per_period_max"),
        },
        env: vector["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|pair| {
                let pair = strs(pair);
                (pair[0].clone(), pair[1].clone())
            })
            .collect(),
        allowed_outbound_hosts: strs(&vector["allowed_outbound_hosts"]),
        routes: strs(&vector["routes"]),
        version: u64_of("version") as u32,
        parent: Some(
            vector["parent"]
                .as_str()
                .expect("parent")
                .parse()
                .expect("manifest id"),
        ),
        owner: key.public(),
    }
}

fn owner_key(vector: &serde_json::Value) -> SecretKey {
    let seed: [u8; 32] = unhex(vector["owner_seed_hex"].as_str().expect("seed"))
        .try_into()
        .expect("32-byte seed");
    SecretKey::from_seed(seed)
}

#[test]
fn a_manifest_signed_by_sdk_js_decodes_and_verifies() {
    let vector = vector();
    let key = owner_key(&vector);
    let signed = SignedManifest::decode(&unhex(vector["signed_hex"].as_str().expect("signed")))
        .expect("the JS-signed manifest decodes and its signature verifies");
    assert_eq!(signed.id().to_hex(), vector["manifest_id"]);
    assert_eq!(hex(signed.signature().as_bytes()), vector["signature_hex"]);
    assert_eq!(signed.manifest(), &described(&vector, &key));
    assert_eq!(signed.manifest().owner.to_string(), vector["owner"]);
    assert_eq!(signed.manifest().env[0].1, "héllo");
    assert_eq!(
        signed.manifest().artifact_id,
        ArtifactId::of(b"js"),
        "BLAKE3 agrees"
    );
}

#[test]
fn rust_encodes_and_signs_the_js_vector_identically() {
    let vector = vector();
    let key = owner_key(&vector);
    assert_eq!(key.public().to_string(), vector["owner"], "same public key");
    let signed = described(&vector, &key).sign(&key).expect("signs");
    assert_eq!(hex(&signed.manifest().encode()), vector["encoding_hex"]);
    assert_eq!(signed.id().to_hex(), vector["manifest_id"]);
    assert_eq!(
        hex(signed.signature().as_bytes()),
        vector["signature_hex"],
        "ed25519 is deterministic: Rust's signature equals JS's"
    );
    assert_eq!(hex(&signed.encode()), vector["signed_hex"]);
    let parent: ManifestId = vector["parent"]
        .as_str()
        .expect("parent")
        .parse()
        .expect("id");
    let rust_vector: serde_json::Value =
        serde_json::from_str(include_str!("vectors/manifest-v2.json")).expect("parses");
    assert_eq!(
        parent.to_hex(),
        rust_vector["manifest_id"],
        "chains to manifest-v2"
    );
}

#[test]
fn a_tampered_js_manifest_is_rejected() {
    let vector = vector();
    let signed = unhex(vector["signed_hex"].as_str().expect("signed"));
    for idx in [1, 40, signed.len() - 70, signed.len() - 1] {
        let mut tampered = signed.clone();
        tampered[idx] ^= 1;
        assert!(
            SignedManifest::decode(&tampered).is_err(),
            "flipping byte {idx} must be caught"
        );
    }
}
