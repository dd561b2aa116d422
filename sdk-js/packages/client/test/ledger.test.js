// LedgerClient against an in-process fake: URLs, lossless u64s, error
// mapping, 404 → null, waitForTx. The real validator is exercised by
// ledger-live.test.js (run from tests/it/sdk_js.rs).

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { LedgerClient, LedgerError, PublicKey, SecretKey, parseJsonLossless } from "../dist/index.js";

const requests = [];
let routes = {};
let server;
let client;

before(async () => {
  server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, body: Buffer.concat(chunks) });
      const route = routes[`${req.method} ${req.url}`];
      const [status, body] = typeof route === "function" ? route() : (route ?? [404, '{"error":"no such ledger endpoint"}']);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  client = new LedgerClient(`http://127.0.0.1:${server.address().port}/ignored/path`);
});

after(() => server.close());

const KEY = SecretKey.fromSeed(new Uint8Array(32).fill(7)).publicKey;

test("parses u64s beyond 2^53 exactly, leaving strings and small numbers alone", () => {
  const v = parseJsonLossless('{"a":18446744073709551615,"b":"9007199254740993","c":[1,-2.5e3,-9007199254740993],"d":"x\\"1e99"}');
  assert.deepEqual(v, { a: "18446744073709551615", b: "9007199254740993", c: [1, -2500, "-9007199254740993"], d: 'x"1e99' });
});

test("account: amounts and nonce are bigints, exact at u64::MAX; key accepted as PublicKey or text", async () => {
  routes[`GET /v1/ledger/accounts/${KEY}`] = [
    200,
    `{"account":"${KEY}","balance":18446744073709551615,"nonce":3,"stake":5,"unbonding":[{"amount":"9007199254740993","release_at_ms":12}],"unpaid":false,"slashed":false}`,
  ];
  const account = await client.account(KEY);
  assert.equal(account.balance, 18446744073709551615n);
  assert.equal(account.nonce, 3n);
  assert.deepEqual(account.unbonding, [{ amount: 9007199254740993n, release_at_ms: 12 }]);
  assert.equal(await client.balance(KEY.toString()), 18446744073709551615n);
  assert.ok(requests.every((r) => r.url.startsWith("/v1/ledger/")), "base path is dropped: origin only");
});

test("status: heights are numbers, supply a bigint", async () => {
  routes["GET /v1/ledger/status"] = [
    200,
    '{"chain_id":"cd","height":7,"time_ms":1000,"period":0,"state_root":"ab","validators":["ed25519:00"],"mempool":0,"fee_pool":"2","total_supply":"100000000000000000000","tx_fee":"1","finality_ms":{"p50":null,"p99":null,"samples":0}}',
  ];
  const status = await client.status();
  assert.equal(status.height, 7);
  assert.equal(status.total_supply, 100000000000000000000n);
  assert.equal(status.fee_pool, 2n);
  assert.equal(status.tx_fee, 1n);
});

test("name and block: 404 is null, other errors throw with status and message", async () => {
  routes["GET /v1/ledger/names/a%20b"] = [404, '{"error":"no name \\"a b\\" on the ledger"}'];
  assert.equal(await client.name("a b"), null);
  routes["GET /v1/ledger/blocks/9"] = [404, '{"error":"no finalized block at height 9"}'];
  assert.equal(await client.block(9n), null);
  routes["GET /v1/ledger/blocks/10"] = [500, '{"error":"disk on fire"}'];
  await assert.rejects(client.block(10), (e) => e instanceof LedgerError && e.status === 500 && /disk on fire/.test(e.message));
  routes[`GET /v1/ledger/batches/${KEY}/18446744073709551615`] = [
    200,
    `{"worker":"${KEY}","sequence":18446744073709551615,"settled":true}`,
  ];
  assert.deepEqual(await client.batch(KEY, 18446744073709551615n), { worker: KEY.toString(), sequence: 18446744073709551615n, settled: true });
});

test("submitRaw posts the bytes; a refusal is a LedgerError with status 400", async () => {
  routes["POST /v1/ledger/txs"] = [400, '{"error":"invalid transaction: truncated"}'];
  await assert.rejects(client.submitRaw(new Uint8Array([1, 2, 3])), (e) => e.status === 400 && /truncated/.test(e.message));
  assert.deepEqual([...requests.at(-1).body], [1, 2, 3]);
  routes["POST /v1/ledger/txs"] = [202, `{"id":"${"ab".repeat(32)}","status":"pending"}`];
  assert.deepEqual(await client.submitRaw(new Uint8Array([4])), { id: "ab".repeat(32), status: "pending" });
});

test("submitRawBatch frames each transaction (4-byte big-endian length) and answers one result each", async () => {
  routes["POST /v1/ledger/txs/batch"] = [200, `{"results":[{"id":"${"ab".repeat(32)}","status":"pending"},{"error":"bad signature"}]}`];
  const results = await client.submitRawBatch([new Uint8Array([7, 8]), new Uint8Array([9])]);
  assert.deepEqual([...requests.at(-1).body], [0, 0, 0, 2, 7, 8, 0, 0, 0, 1, 9]);
  assert.deepEqual(results, [{ id: "ab".repeat(32), status: "pending" }, { error: "bad signature" }]);
  routes["POST /v1/ledger/txs/batch"] = [400, '{"error":"a batch is up to 1024 transactions"}'];
  await assert.rejects(client.submitRawBatch([]), (e) => e.status === 400 && /up to 1024/.test(e.message));
});

test("waitForTx: pending then finalized returns the height; unknown and timeouts throw", async () => {
  const id = "cd".repeat(32);
  let polls = 0;
  routes[`GET /v1/ledger/txs/${id}`] = () => (++polls < 3 ? [200, '{"status":"pending"}'] : [200, '{"status":"finalized","height":4}']);
  assert.equal(await client.waitForTx(id, { intervalMs: 1 }), 4);
  assert.equal(polls, 3);
  routes[`GET /v1/ledger/txs/${id}`] = [200, '{"status":"unknown"}'];
  await assert.rejects(client.waitForTx(id), /unknown/);
  routes[`GET /v1/ledger/txs/${id}`] = [200, '{"status":"pending"}'];
  await assert.rejects(client.waitForTx(id, { timeoutMs: 30, intervalMs: 5 }), /not final after 30 ms/);
});

test("unreachable ledger: status 0 and what to check; only http:// URLs", async () => {
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address();
  await new Promise((resolve) => closed.close(resolve));
  await assert.rejects(new LedgerClient(`http://127.0.0.1:${port}`).status(), (e) => e.status === 0 && /bonus validator/.test(e.message));
  assert.throws(() => new LedgerClient("ftp://x"), TypeError);
  assert.ok(PublicKey.parse(KEY.toString()));
});
