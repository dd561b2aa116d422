// LedgerClient against a real one-validator network that
// `bonus ledger genesis --validators 1` made; tests/it/sdk_js.rs starts it
// and runs this file with BONUS_LEDGER_URL (the validator's API) and
// BONUS_LEDGER_GENESIS (its genesis.json). Skipped without them, so plain
// `npm test` needs no validator.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { LedgerClient, LedgerError, PublicKey } from "../dist/index.js";

const url = process.env.BONUS_LEDGER_URL;
const genesisPath = process.env.BONUS_LEDGER_GENESIS;
const skip = !url || !genesisPath ? "set BONUS_LEDGER_URL and BONUS_LEDGER_GENESIS to run against a validator" : false;

test("a one-validator ledger answers the JS client", { skip }, async () => {
  const genesis = JSON.parse(readFileSync(genesisPath, "utf8"));
  const ledger = new LedgerClient(url);

  const status = await ledger.status();
  assert.ok(status.height >= 1, `height ${status.height}`);
  assert.deepEqual(status.validators, [genesis.validators[0].key]);
  assert.equal(typeof status.total_supply, "bigint");
  const minted =
    genesis.balances.reduce((sum, b) => sum + BigInt(b.amount), 0n) +
    genesis.validators.reduce((sum, v) => sum + BigInt(v.stake), 0n);
  assert.equal(status.total_supply, minted);

  const faucet = genesis.balances.at(-1);
  const account = await ledger.account(PublicKey.parse(faucet.account));
  assert.equal(account.account, faucet.account);
  assert.equal(account.balance, BigInt(faucet.amount));
  assert.equal(account.nonce, 0n);
  assert.equal(await ledger.balance(faucet.account), BigInt(faucet.amount));

  assert.deepEqual(await ledger.names(), []);
  assert.equal(await ledger.name("nope"), null);
  assert.deepEqual(await ledger.nodes(), []);
  assert.deepEqual(await ledger.batch(faucet.account, 1), { worker: faucet.account, sequence: 1n, settled: false });

  const block = await ledger.block(1);
  assert.ok(block, "block 1 is finalized");
  assert.equal(block.height, 1);
  assert.match(block.digest, /^[0-9a-f]{64}$/);
  assert.equal(typeof block.certificate, "string");
  assert.match(block.certificate, /^[0-9a-f]+$/);
  assert.equal(await ledger.block(1_000_000_000), null);

  assert.deepEqual(await ledger.txStatus(randomBytes(32).toString("hex")), { status: "unknown" });
  await assert.rejects(ledger.txStatus("not-hex"), (e) => e instanceof LedgerError && e.status === 400);
  await assert.rejects(
    ledger.submitRaw(new TextEncoder().encode("not a transaction")),
    (e) => e instanceof LedgerError && e.status === 400 && /transaction/.test(e.message),
  );
  assert.equal((await ledger.status()).mempool, 0, "garbage is not pending");
});
