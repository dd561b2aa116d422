#!/usr/bin/env node
// The JS-produced manifest vector: every field exercised (a parent, a budget
// above 2^32, env with non-ASCII and a value longer than 127 bytes, hosts,
// routes), signed by a
// key from a fixed seed. Ed25519 signatures are deterministic, so the file
// is the same on every run; `test/manifest.test.js` checks that, and the
// Rust test `registry/tests/js_vectors.rs` decodes and verifies it.
//
//   node scripts/vectors.js            print it
//   node scripts/vectors.js --write    (re)write registry/tests/vectors/manifest-js-v2.json

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ArtifactId, ManifestId, SecretKey, encodeManifest, signManifest, toHex } from "../dist/index.js";

export const VECTOR_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../../../registry/tests/vectors/manifest-js-v2.json",
);

/** The vector, as the JSON text committed to the repository. */
export function jsVector() {
  // The parent is the Rust vector's manifest: the two vectors chain.
  const rustVectorId = JSON.parse(readFileSync(join(dirname(VECTOR_PATH), "manifest-v2.json"), "utf8")).manifest_id;
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i);
  const key = SecretKey.fromSeed(seed);
  const manifest = {
    name: "api-js",
    artifactId: ArtifactId.of(new TextEncoder().encode("js")),
    artifactBytes: 13_000_000n,
    limits: { fuelMax: 5_000_000_000n, memoryBytesMax: 256n << 20n, deadlineMs: 30_000 },
    budget: { pricePerMillionFuelMax: 2_500n, spendPerPeriodMax: 7_000_000_000_000n },
    env: [
      ["GREETING", "héllo"],
      ["LONG", "x".repeat(200)],
    ],
    allowedOutboundHosts: ["https://*.example.com:8443"],
    routes: ["/api", "/v2"],
    version: 2,
    parent: ManifestId.parse(rustVectorId),
    owner: key.publicKey,
  };
  const signed = signManifest(manifest, key);
  const vector = {
    description:
      "Manifest v2 vector produced by @bonus/client (sdk-js/packages/client/scripts/vectors.js): owner seed 00..1f, name api-js, artifact blake3(\"js\") of 13000000 bytes, limits fuel 5000000000 / memory 256 MiB / deadline 30000 ms, budget price max 2500 per million fuel / spend max 7000000000000 per period, env GREETING=héllo LONG=x*200, outbound https://*.example.com:8443, routes [/api, /v2], version 2, parent = manifest-v2.json's id.",
    owner_seed_hex: toHex(seed),
    owner: key.publicKey.toString(),
    name: manifest.name,
    artifact_id: manifest.artifactId.toHex(),
    artifact_bytes: Number(manifest.artifactBytes),
    fuel_max: Number(manifest.limits.fuelMax),
    memory_bytes_max: Number(manifest.limits.memoryBytesMax),
    deadline_ms: manifest.limits.deadlineMs,
    price_per_million_fuel_max: Number(manifest.budget.pricePerMillionFuelMax),
    spend_per_period_max: Number(manifest.budget.spendPerPeriodMax),
    env: manifest.env,
    allowed_outbound_hosts: manifest.allowedOutboundHosts,
    routes: manifest.routes,
    version: manifest.version,
    parent: manifest.parent.toHex(),
    encoding_hex: toHex(encodeManifest(manifest)),
    manifest_id: signed.id.toHex(),
    signature_hex: toHex(signed.signature),
    signed_hex: toHex(signed.bytes),
  };
  return `${JSON.stringify(vector, null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--write")) writeFileSync(VECTOR_PATH, jsVector());
  else process.stdout.write(jsVector());
}
