// Content ids: the BLAKE3 of an artifact's bytes (equal to `b3sum`) or of a
// manifest's canonical encoding. Text forms `blake3:<hex>` and
// `manifest:<hex>`, as the Rust `bonus-ids` crate prints them.

import { blake3 } from "@noble/hashes/blake3.js";
import { fromHex, toHex } from "./bytes.js";

class Id {
  readonly bytes: Uint8Array;

  protected constructor(bytes: Uint8Array) {
    if (bytes.length !== 32) throw new TypeError(`an id has 32 bytes, got ${bytes.length}`);
    this.bytes = Uint8Array.from(bytes);
  }

  /** 64 lowercase hex digits, as `b3sum` prints them. */
  toHex(): string {
    return toHex(this.bytes);
  }

  equals(other: Id): boolean {
    return this.toHex() === other.toHex();
  }
}

function parseHex(text: string, prefix: string): Uint8Array {
  const hex = text.startsWith(`${prefix}:`) ? text.slice(prefix.length + 1) : text;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new TypeError(`invalid id ${JSON.stringify(text)}: expected 64 hex digits, optionally prefixed by \`${prefix}:\``);
  }
  return fromHex(hex.toLowerCase(), 32);
}

/** An artifact's id: BLAKE3 of the component's bytes. */
export class ArtifactId extends Id {
  static of(bytes: Uint8Array): ArtifactId {
    return new ArtifactId(blake3(bytes));
  }

  static fromBytes(bytes: Uint8Array): ArtifactId {
    return new ArtifactId(bytes);
  }

  /** Parses `blake3:<hex>` or bare hex. */
  static parse(text: string): ArtifactId {
    return new ArtifactId(parseHex(text, "blake3"));
  }

  toString(): string {
    return `blake3:${this.toHex()}`;
  }
}

/** A manifest's id: BLAKE3 of its canonical encoding. */
export class ManifestId extends Id {
  static of(encoding: Uint8Array): ManifestId {
    return new ManifestId(blake3(encoding));
  }

  static fromBytes(bytes: Uint8Array): ManifestId {
    return new ManifestId(bytes);
  }

  /** Parses `manifest:<hex>` or bare hex. */
  static parse(text: string): ManifestId {
    return new ManifestId(parseHex(text, "manifest"));
  }

  toString(): string {
    return `manifest:${this.toHex()}`;
  }
}
