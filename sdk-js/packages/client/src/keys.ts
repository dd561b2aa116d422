// Ed25519 keys, as the Rust `bonus-ids` crate has them: public keys print as
// `ed25519:<64 hex>`; a secret key is its 32-byte seed, stored as 64 hex
// digits in `$BONUS_HOME/keys/<name>.key` (mode 0600, never overwritten).
// Secret keys are never printed.

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fromHex, toHex } from "./bytes.js";

ed.hashes.sha512 = sha512;

/** An ed25519 public key: an account, a function's owner. */
export class PublicKey {
  readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array) {
    this.bytes = Uint8Array.from(bytes);
  }

  /** Checks that `bytes` is a valid curve point, as the Rust decoder does. */
  static fromBytes(bytes: Uint8Array): PublicKey {
    if (bytes.length !== 32) throw new TypeError(`a public key has 32 bytes, got ${bytes.length}`);
    try {
      ed.Point.fromBytes(bytes);
    } catch {
      throw new TypeError(`invalid public key ${toHex(bytes)}: not an ed25519 point`);
    }
    return new PublicKey(bytes);
  }

  /** Parses `ed25519:<64 hex>`. */
  static parse(text: string): PublicKey {
    const match = /^ed25519:([0-9a-f]{64})$/.exec(text);
    if (!match) {
      throw new TypeError(`invalid public key ${JSON.stringify(text)}: expected \`ed25519:\` followed by 64 hex digits`);
    }
    return PublicKey.fromBytes(fromHex(match[1], 32));
  }

  /** Whether `signature` signs `message` under this key. */
  verify(message: Uint8Array, signature: Uint8Array): boolean {
    return signature.length === 64 && ed.verify(signature, message, this.bytes);
  }

  equals(other: PublicKey): boolean {
    return toHex(this.bytes) === toHex(other.bytes);
  }

  toString(): string {
    return `ed25519:${toHex(this.bytes)}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** An ed25519 signing key (its 32-byte seed). */
export class SecretKey {
  readonly #seed: Uint8Array;
  /** The public half. */
  readonly publicKey: PublicKey;

  private constructor(seed: Uint8Array) {
    this.#seed = Uint8Array.from(seed);
    this.publicKey = PublicKey.fromBytes(ed.getPublicKey(this.#seed));
  }

  /** A new key from the platform's randomness. */
  static generate(): SecretKey {
    return new SecretKey(ed.utils.randomSecretKey());
  }

  /** The key with this 32-byte seed (deterministic: tests and imports). */
  static fromSeed(seed: Uint8Array): SecretKey {
    if (seed.length !== 32) throw new TypeError(`a seed has 32 bytes, got ${seed.length}`);
    return new SecretKey(seed);
  }

  /** Reads a key file written by `bonus keys new` or {@link SecretKey.save}. */
  static async load(path: string): Promise<SecretKey> {
    const text = (await readFile(path, "utf8")).trim();
    if (!/^[0-9a-fA-F]{64}$/.test(text)) {
      throw new Error(`key file ${path} is malformed: expected 64 hex digits`);
    }
    return new SecretKey(fromHex(text.toLowerCase(), 32));
  }

  /** Loads `$BONUS_HOME/keys/<name>.key` (default home: `~/.bonus`). */
  static async loadNamed(name = "default", home = bonusHome()): Promise<SecretKey> {
    const path = join(home, "keys", `${name}.key`);
    try {
      return await SecretKey.load(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new Error(`no signing key ${JSON.stringify(name)} at ${path}; run \`bonus keys new\` or SecretKey.generate().save(path)`);
      }
      throw error;
    }
  }

  /** Writes the key file (mode 0600); refuses to overwrite one. */
  async save(path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(path, `${toHex(this.#seed)}\n`, { mode: 0o600, flag: "wx" });
  }

  /** Signs `message` (deterministic, RFC 8032). */
  sign(message: Uint8Array): Uint8Array {
    return ed.sign(message, this.#seed);
  }

  toString(): string {
    return `SecretKey(${this.publicKey})`;
  }
}

/** `$BONUS_HOME`, else `~/.bonus`, as the `bonus` binary resolves it. */
export function bonusHome(): string {
  return process.env.BONUS_HOME ?? join(homedir(), ".bonus");
}
