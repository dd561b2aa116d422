// A logs request as a worker checks it: the signed bytes are Rust's
// (`node/src/wire.rs`, the same vector in its tests).

import assert from "node:assert/strict";
import { test } from "node:test";
import { createServer } from "node:http";
import { LOGS_AUTH_HEADER, NodeClient, SecretKey, fromHex, logsAuthMessage, toHex } from "../dist/index.js";

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

test("reads made in the same millisecond are signed with distinct times", async () => {
  const headers = [];
  const server = createServer((request, response) => {
    headers.push(request.headers[LOGS_AUTH_HEADER]);
    response.setHeader("content-type", "application/json");
    response.end('{"lines":[]}');
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const client = new NodeClient(`http://127.0.0.1:${server.address().port}`);
    const key = SecretKey.fromSeed(new Uint8Array(32).fill(2));
    const before = Date.now();
    // A clock that does not move between reads (coarse timers, as browsers
    // give): without care every read would carry one time, hence one
    // signature, and a worker would refuse all but the first as replays.
    const realNow = Date.now;
    Date.now = () => before;
    try {
      await Promise.all(Array.from({ length: 20 }, () => client.logs("mine", key)));
    } finally {
      Date.now = realNow;
    }
    const times = headers.map((h) => Number(h.split(",")[1]));
    assert.equal(new Set(times).size, 20, `times ${times}`);
    for (const header of headers) {
      const [, time, signature] = header.split(",");
      assert.ok(key.publicKey.verify(logsAuthMessage("mine", Number(time)), fromHex(signature)));
      assert.ok(Number(time) >= before && Number(time) < Date.now() + 1_000);
    }
  } finally {
    server.close();
  }
});

