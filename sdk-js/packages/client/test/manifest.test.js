// The client's encodings against the vectors shared with Rust: it must
// reproduce what Rust signed (manifest-v2.json) and keep producing the
// vector Rust verifies (manifest-js-v2.json).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  ArtifactId,
  ManifestId,
  PublicKey,
  SecretKey,
  decodeSignedManifest,
  encodeManifest,
  fromHex,
  manifestId,
  signManifest,
  toHex,
} from "../dist/index.js";
import { VECTOR_PATH, jsVector } from "../scripts/vectors.js";

const vectors = fileURLToPath(new URL("../../../../registry/tests/vectors/", import.meta.url));
const rustVector = JSON.parse(readFileSync(join(vectors, "manifest-v2.json"), "utf8"));

function rustVectorManifest() {
  const key = SecretKey.fromSeed(new Uint8Array(32).fill(1));
  const manifest = {
    name: "hello",
    artifactId: ArtifactId.of(new TextEncoder().encode("wasm")),
    artifactBytes: 4n,
    limits: { fuelMax: 1_000_000n, memoryBytesMax: 64n << 20n, deadlineMs: 5000 },
    budget: { pricePerMillionFuelMax: 1_200n, spendPerPeriodMax: 5_000_000_000n },
    env: [
      ["A", "1"],
      ["B", "two"],
    ],
    allowedOutboundHosts: ["https://api.example.com"],
    routes: ["/"],
    version: 1,
    parent: null,
    owner: key.publicKey,
  };
  return { key, manifest };
}

test("reproduces the Rust-signed manifest vector byte for byte", () => {
  const { key, manifest } = rustVectorManifest();
  assert.equal(key.publicKey.toString(), rustVector.owner);
  assert.equal(manifest.budget.pricePerMillionFuelMax, BigInt(rustVector.price_per_million_fuel_max));
  assert.equal(manifest.budget.spendPerPeriodMax, BigInt(rustVector.spend_per_period_max));
  assert.equal(toHex(encodeManifest(manifest)), rustVector.encoding_hex);
  const signed = signManifest(manifest, key);
  assert.equal(signed.id.toHex(), rustVector.manifest_id);
  assert.equal(toHex(signed.signature), rustVector.signature_hex);
  assert.equal(toHex(signed.bytes), rustVector.signed_hex);
});

test("decodes and verifies what Rust signed", () => {
  const signed = decodeSignedManifest(fromHex(rustVector.signed_hex));
  assert.equal(signed.id.toString(), `manifest:${rustVector.manifest_id}`);
  assert.equal(signed.manifest.name, "hello");
  assert.deepEqual(signed.manifest.env, [
    ["A", "1"],
    ["B", "two"],
  ]);
  assert.equal(signed.manifest.limits.fuelMax, 1_000_000n);
  assert.deepEqual(signed.manifest.budget, { pricePerMillionFuelMax: 1_200n, spendPerPeriodMax: 5_000_000_000n });
  assert.equal(signed.manifest.owner.toString(), rustVector.owner);
});

test("the JS vector Rust verifies is what the client produces today", () => {
  assert.equal(readFileSync(VECTOR_PATH, "utf8"), jsVector(), "run `node scripts/vectors.js --write` and review");
  const vector = JSON.parse(jsVector());
  const signed = decodeSignedManifest(fromHex(vector.signed_hex));
  assert.equal(signed.manifest.parent.toHex(), rustVector.manifest_id);
  assert.equal(signed.manifest.env[1][1].length, 200, "a length above 127 takes two varint bytes");
  assert.equal(signed.manifest.budget.spendPerPeriodMax, 7_000_000_000_000n, "above 2^32: every byte counts");
});

// `manifest-v1.json` as format 1 wrote it (before the budget), as in
// `registry/src/tests.rs`.
const FORMAT_1_SIGNED_HEX =
  "010568656c6c6f107d2022ae9e6c9054a44bedd13ef7684736ac6018ea56c0b9128f51f73cc6fb000000000000000400000000000f4240000000000400000000001388020141013101420374776f011768747470733a2f2f6170692e6578616d706c652e636f6d01012f00000001008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c68d8effcdfd40557f729400cbe9f2907ad3f11918377f83cea70f2b3e25bbee631170e3990764feacea773cfe87633ef7c79b1b02464f11449c4ed857f16e705";

test("a format 1 manifest is refused with the fix", () => {
  assert.throws(
    () => decodeSignedManifest(fromHex(FORMAT_1_SIGNED_HEX)),
    /^Error: manifest format 1 is no longer accepted; re-sign it with this version of bonus$/,
  );
});

test("changing the budget changes the id, so no signature carries over", () => {
  const { key, manifest } = rustVectorManifest();
  const signed = signManifest(manifest, key);
  for (const change of [{ pricePerMillionFuelMax: 1_201n }, { spendPerPeriodMax: 5_000_000_001n }]) {
    const changed = { ...manifest, budget: { ...manifest.budget, ...change } };
    assert.notEqual(manifestId(changed).toHex(), signed.id.toHex());
    const forged = new Uint8Array([...encodeManifest(changed), ...signed.signature]);
    assert.throws(() => decodeSignedManifest(forged), /invalid signature/);
  }
});

test("tampering, truncation and extra bytes are rejected", () => {
  const bytes = fromHex(rustVector.signed_hex);
  for (const idx of [0, 1, 10, bytes.length - 65, bytes.length - 1]) {
    const tampered = Uint8Array.from(bytes);
    tampered[idx] ^= 1;
    assert.throws(() => decodeSignedManifest(tampered), undefined, `byte ${idx}`);
  }
  assert.throws(() => decodeSignedManifest(bytes.subarray(0, 63)), /shorter than a signature/);
  const extra = new Uint8Array(bytes.length + 1);
  extra.set(bytes.subarray(0, bytes.length - 64));
  extra.set(bytes.subarray(bytes.length - 64), bytes.length - 63);
  assert.throws(() => decodeSignedManifest(extra));
});

test("signing checks the rules Rust enforces", () => {
  const { key, manifest } = rustVectorManifest();
  const check = (change, pattern) => assert.throws(() => signManifest({ ...manifest, ...change }, key), pattern);
  check({ name: "Hello" }, /name "Hello"/);
  check({ name: "-x" }, /name/);
  check({ name: "x".repeat(64) }, /name/);
  check({ version: 2 }, /version 1 has no parent/);
  check({ env: [["B", "1"], ["A", "2"]] }, /sorted and unique/);
  check({ env: [["A=B", "1"]] }, /no '='/);
  check({ routes: ["api"] }, /start with '\/'/);
  check({ owner: SecretKey.generate().publicKey }, /is not the owner/);
});

test("ids and keys have the Rust text forms", async () => {
  assert.equal(
    ArtifactId.of(new Uint8Array()).toString(),
    "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "b3sum of nothing",
  );
  const id = ArtifactId.parse(`blake3:${rustVector.manifest_id}`);
  assert.ok(ArtifactId.parse(rustVector.manifest_id).equals(id));
  assert.throws(() => ManifestId.parse("manifest:abc"), /64 hex digits/);
  assert.equal(PublicKey.parse(rustVector.owner).toString(), rustVector.owner);
  assert.throws(() => PublicKey.parse("ed25519:xyz"), /64 hex digits/);

  const dir = await mkdtemp(join(tmpdir(), "bonus-client-keys-"));
  const key = SecretKey.generate();
  const path = join(dir, "keys", "default.key");
  await key.save(path);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  await assert.rejects(key.save(path), /EEXIST/, "never overwritten");
  const loaded = await SecretKey.loadNamed("default", dir);
  assert.ok(loaded.publicKey.equals(key.publicKey));
  await assert.rejects(SecretKey.loadNamed("missing", dir), /bonus keys new/);
  const message = new TextEncoder().encode("hi");
  assert.ok(key.publicKey.verify(message, loaded.sign(message)));
  assert.ok(!key.publicKey.verify(message, SecretKey.generate().sign(message)));
});
