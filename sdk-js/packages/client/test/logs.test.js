// A logs request as a worker checks it: the signed bytes are Rust's
// (`node/src/wire.rs`, the same vector in its tests).

import assert from "node:assert/strict";
import { test } from "node:test";
import { LOGS_AUTH_HEADER, SecretKey, logsAuthMessage, toHex } from "../dist/index.js";

test("the signed bytes of a logs request are the ones Rust checks", () => {
  const message = logsAuthMessage("mine", 1_700_000_000_000);
  assert.equal(toHex(message), "626f6e75732f6c6f67732f7631000000018bcfe568006d696e65");
  assert.equal(toHex(logsAuthMessage("mine", 1_700_000_000_000n)), toHex(message));
  const key = SecretKey.fromSeed(new Uint8Array(32).fill(1));
  const signature = key.sign(message);
  assert.ok(key.publicKey.verify(message, signature));
  assert.ok(!key.publicKey.verify(logsAuthMessage("theirs", 1_700_000_000_000), signature));
  assert.equal(LOGS_AUTH_HEADER, "x-bonus-logs-auth");
});
