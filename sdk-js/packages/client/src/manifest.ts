// Manifests, byte for byte as `registry/src/manifest.rs` encodes them (the
// commonware-codec layout): format byte 2; name (LEB128 length + UTF-8);
// artifact id (32 bytes); artifact size (u64 big-endian); limits (fuel u64,
// memory u64, deadline u32, big-endian); budget (price per million fuel
// max u64, spend per period max u64, big-endian); env (count, then key,
// value); outbound hosts and routes (count, then strings); version (u32);
// parent (0, or 1 and 32 bytes); owner (32 bytes). The id is the BLAKE3 of
// that encoding; the owner signs `bonus/manifest/v2 ‖ id`; the wire form is
// the encoding followed by the 64-byte signature. Format 1 (no budget) is
// refused.

import { concat, equalBytes } from "./bytes.js";
import { ArtifactId, ManifestId } from "./ids.js";
import { PublicKey, SecretKey } from "./keys.js";

/** Domain separation for manifest signatures. */
export const MANIFEST_DOMAIN = new TextEncoder().encode("bonus/manifest/v2");
const FORMAT_V2 = 2;
/** The format before the budget: refused. */
const FORMAT_V1 = 1;
/** Longest name (a DNS label). */
export const NAME_BYTES_MAX = 63;
/** Most env vars, outbound hosts or routes. */
export const LIST_ITEMS_MAX = 64;
/** Longest key, value, host pattern or route, in bytes. */
export const STRING_BYTES_MAX = 4096;

/** Per-request limits a function asks for (nodes cap them). */
export interface ManifestLimits {
  fuelMax: bigint;
  memoryBytesMax: bigint;
  deadlineMs: number;
}

/**
 * What the owner consents to be charged for a function: the ledger charges
 * nothing beyond it. Signed with the manifest, so changing it changes the id.
 */
export interface ManifestBudget {
  /** The most the owner pays per million fuel: a worker whose registered price is above it may not charge. */
  pricePerMillionFuelMax: bigint;
  /** The most the owner is charged per settlement period for this function; 0 means never charged. */
  spendPerPeriodMax: bigint;
}

/** What a developer says about one version of a function. */
export interface Manifest {
  name: string;
  artifactId: ArtifactId;
  artifactBytes: bigint;
  limits: ManifestLimits;
  /** What the owner consents to be charged. */
  budget: ManifestBudget;
  /** Sorted by key, keys unique. */
  env: Array<[string, string]>;
  allowedOutboundHosts: string[];
  /** Path prefixes served; empty means every path. */
  routes: string[];
  /** 1 for a first deploy, parent's + 1 after. */
  version: number;
  parent: ManifestId | null;
  owner: PublicKey;
}

/** A manifest with its id and its owner's valid signature. */
export interface SignedManifest {
  manifest: Manifest;
  id: ManifestId;
  signature: Uint8Array;
  /** Wire form: encoding ‖ signature, what `POST /v1/manifests` takes. */
  bytes: Uint8Array;
}

/** The defaults `bonus deploy` uses. */
export const DEFAULT_LIMITS: ManifestLimits = {
  fuelMax: 10_000_000_000n,
  memoryBytesMax: 128n << 20n,
  deadlineMs: 10_000,
};

/**
 * A budget for development and local networks, the one `bonus deploy`
 * signs unless told otherwise (`ManifestBudget::DEV` in Rust): up to 1 000
 * per million fuel and 1 000 000 000 per settlement period. Deploys pass a
 * budget explicitly or get this one; nothing defaults to zero silently.
 */
export const DEV_BUDGET: Readonly<ManifestBudget> = Object.freeze({
  pricePerMillionFuelMax: 1_000n,
  spendPerPeriodMax: 1_000_000_000n,
});

class Writer {
  private parts: number[] = [];

  u8(value: number): void {
    this.parts.push(value & 0xff);
  }

  u32(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) throw new RangeError(`not a u32: ${value}`);
    for (let shift = 24; shift >= 0; shift -= 8) this.u8(value >>> shift);
  }

  u64(value: bigint): void {
    if (value < 0n || value >= 1n << 64n) throw new RangeError(`not a u64: ${value}`);
    for (let shift = 56n; shift >= 0n; shift -= 8n) this.u8(Number((value >> shift) & 0xffn));
  }

  varint(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) throw new RangeError(`not a u32: ${value}`);
    while (value >= 0x80) {
      this.u8((value & 0x7f) | 0x80);
      value = Math.floor(value / 128);
    }
    this.u8(value);
  }

  raw(bytes: Uint8Array): void {
    for (const byte of bytes) this.parts.push(byte);
  }

  str(text: string): void {
    const bytes = new TextEncoder().encode(text);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  strs(items: string[]): void {
    this.varint(items.length);
    for (const item of items) this.str(item);
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

class Reader {
  private offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  take(length: number): Uint8Array {
    if (this.offset + length > this.bytes.length) throw new Error("manifest is truncated");
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  u8(): number {
    return this.take(1)[0];
  }

  u32(): number {
    const b = this.take(4);
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }

  u64(): bigint {
    return this.take(8).reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
  }

  varint(max: number): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.u8();
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) {
        if (value > max) throw new Error(`length ${value} exceeds ${max}`);
        return value;
      }
    }
    throw new Error("varint too long");
  }

  str(max: number): string {
    return new TextDecoder("utf-8", { fatal: true }).decode(this.take(this.varint(max)));
  }

  strs(): string[] {
    const count = this.varint(LIST_ITEMS_MAX);
    return Array.from({ length: count }, () => this.str(STRING_BYTES_MAX));
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }
}

/** The canonical encoding: what is hashed. */
export function encodeManifest(manifest: Manifest): Uint8Array {
  const w = new Writer();
  w.u8(FORMAT_V2);
  w.str(manifest.name);
  w.raw(manifest.artifactId.bytes);
  w.u64(manifest.artifactBytes);
  w.u64(manifest.limits.fuelMax);
  w.u64(manifest.limits.memoryBytesMax);
  w.u32(manifest.limits.deadlineMs);
  w.u64(manifest.budget.pricePerMillionFuelMax);
  w.u64(manifest.budget.spendPerPeriodMax);
  w.varint(manifest.env.length);
  for (const [key, value] of manifest.env) {
    w.str(key);
    w.str(value);
  }
  w.strs(manifest.allowedOutboundHosts);
  w.strs(manifest.routes);
  w.u32(manifest.version);
  if (manifest.parent) {
    w.u8(1);
    w.raw(manifest.parent.bytes);
  } else {
    w.u8(0);
  }
  w.raw(manifest.owner.bytes);
  return w.finish();
}

/** The manifest's id: BLAKE3 of its canonical encoding. */
export function manifestId(manifest: Manifest): ManifestId {
  return ManifestId.of(encodeManifest(manifest));
}

function isDnsLabel(name: string): boolean {
  return /^[a-z0-9-]{1,63}$/.test(name) && !name.startsWith("-") && !name.endsWith("-");
}

/** The rules the Rust side enforces; throws with the reason. */
export function validateManifest(m: Manifest): void {
  const invalid = (reason: string) => new Error(`invalid manifest: ${reason}`);
  if (!isDnsLabel(m.name)) {
    throw invalid(`name ${JSON.stringify(m.name)} must be 1-63 of [a-z0-9-], not starting or ending with '-'`);
  }
  if (m.version === 0 || (m.version === 1) !== (m.parent === null)) {
    throw invalid("version 1 has no parent; later versions have one");
  }
  for (let i = 1; i < m.env.length; i++) {
    if (!(compareUtf8(m.env[i - 1][0], m.env[i][0]) < 0)) throw invalid("env keys must be sorted and unique");
  }
  if (m.env.some(([key]) => key === "" || key.includes("="))) {
    throw invalid("env keys must be non-empty and contain no '='");
  }
  if ([m.env.length, m.allowedOutboundHosts.length, m.routes.length].some((n) => n > LIST_ITEMS_MAX)) {
    throw invalid(`at most ${LIST_ITEMS_MAX} env vars, hosts or routes`);
  }
  if (m.routes.some((route) => !route.startsWith("/"))) throw invalid("routes must start with '/'");
}

/** Byte order of UTF-8 strings, as Rust compares `String`s. */
export function compareUtf8(a: string, b: string): number {
  const [x, y] = [new TextEncoder().encode(a), new TextEncoder().encode(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function signingMessage(id: ManifestId): Uint8Array {
  return concat(MANIFEST_DOMAIN, id.bytes);
}

/** Validates and signs; `key` must be the owner's. */
export function signManifest(manifest: Manifest, key: SecretKey): SignedManifest {
  validateManifest(manifest);
  if (!key.publicKey.equals(manifest.owner)) {
    throw new Error(`invalid manifest: signing key ${key.publicKey} is not the owner ${manifest.owner}`);
  }
  const encoding = encodeManifest(manifest);
  const id = ManifestId.of(encoding);
  const signature = key.sign(signingMessage(id));
  return { manifest, id, signature, bytes: concat(encoding, signature) };
}

/**
 * Decodes and fully checks a signed manifest (wire form): canonical
 * encoding, field rules and the owner's signature. Throws otherwise.
 */
export function decodeSignedManifest(bytes: Uint8Array): SignedManifest {
  if (bytes.length < 64) throw new Error("malformed manifest: shorter than a signature");
  const body = bytes.subarray(0, bytes.length - 64);
  const signature = Uint8Array.from(bytes.subarray(bytes.length - 64));
  const r = new Reader(body);
  const format = r.u8();
  if (format === FORMAT_V1) {
    throw new Error(`manifest format ${FORMAT_V1} is no longer accepted; re-sign it with this version of bonus`);
  }
  if (format !== FORMAT_V2) throw new Error("malformed manifest: unknown format version");
  const name = r.str(NAME_BYTES_MAX);
  const artifactId = ArtifactId.fromBytes(r.take(32));
  const artifactBytes = r.u64();
  const limits = { fuelMax: r.u64(), memoryBytesMax: r.u64(), deadlineMs: r.u32() };
  const budget = { pricePerMillionFuelMax: r.u64(), spendPerPeriodMax: r.u64() };
  const envCount = r.varint(LIST_ITEMS_MAX);
  const env = Array.from({ length: envCount }, (): [string, string] => [r.str(STRING_BYTES_MAX), r.str(STRING_BYTES_MAX)]);
  const allowedOutboundHosts = r.strs();
  const routes = r.strs();
  const version = r.u32();
  const tag = r.u8();
  if (tag > 1) throw new Error("malformed manifest: bad option tag");
  const parent = tag === 1 ? ManifestId.fromBytes(r.take(32)) : null;
  const owner = PublicKey.fromBytes(r.take(32));
  if (r.remaining !== 0) throw new Error(`malformed manifest: ${r.remaining} bytes of extra data`);
  const manifest: Manifest = { name, artifactId, artifactBytes, limits, budget, env, allowedOutboundHosts, routes, version, parent, owner };
  if (!equalBytes(encodeManifest(manifest), body)) throw new Error("malformed manifest: not in canonical encoding");
  validateManifest(manifest);
  const id = ManifestId.of(body);
  if (!owner.verify(signingMessage(id), signature)) throw new Error(`manifest ${id} has an invalid signature`);
  return { manifest, id, signature, bytes: Uint8Array.from(bytes) };
}
