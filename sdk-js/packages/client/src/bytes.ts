// Hex and byte helpers shared by the client's modules.

import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return bytesToHex(bytes);
}

/** Bytes of `hex`; throws unless it has exactly `length` bytes (when given). */
export function fromHex(hex: string, length?: number): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new TypeError(`not hex: ${JSON.stringify(hex)}`);
  const bytes = hexToBytes(hex);
  if (length !== undefined && bytes.length !== length) {
    throw new TypeError(`expected ${length} bytes of hex, got ${bytes.length}`);
  }
  return bytes;
}

/** Concatenation of `parts`. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Whether `a` and `b` hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
