// A validator's ledger query API, the calls `bonus ledger status`,
// `bonus balance`, `bonus names` and `bonus transfer` make (see
// `ledger/src/api.rs`): `GET /v1/ledger/{status,accounts,names,nodes,
// batches,blocks,txs}`, `POST /v1/ledger/txs` and `POST /v1/ledger/txs/batch`.
//
// Numbers: the API sends amounts (balances, stakes, fees, prices, nonces,
// batch sequences) as decimal strings, read here as `bigint`s; answers are
// also parsed losslessly, so a plain number above 2^53 is never rounded.
// Heights, periods, counts, weights and milliseconds stay `number`s.

import type { PublicKey } from "./keys.js";

/** `GET /v1/ledger/status`. */
export interface LedgerStatus {
  /** Hex of the network's chain id (the hash of its genesis). */
  chain_id: string;
  /** The finalized height. */
  height: number;
  /** The finalized block's time, ms since the Unix epoch. */
  time_ms: number;
  /** The current settlement period. */
  period: number;
  /** Hex of the state's root at `height`. */
  state_root: string;
  /** The validators' keys, `ed25519:<hex>`. */
  validators: string[];
  /** Transactions waiting in this validator's mempool. */
  mempool: number;
  fee_pool: bigint;
  /** Balances + stakes + unbonding + fee pool: what genesis minted. */
  total_supply: bigint;
  /** The flat fee every transaction pays. */
  tx_fee: bigint;
  /** Submit-to-finality latency of this validator's recent blocks (null before any). */
  finality_ms: { p50: number | null; p99: number | null; samples: number };
}

/** `GET /v1/ledger/accounts/<key>`; an unknown account is all zeros. */
export interface LedgerAccount {
  account: string;
  balance: bigint;
  /** The nonce the account's next transaction must carry. */
  nonce: bigint;
  stake: bigint;
  /** Unstaked amounts and the block time (ms) they return to the balance at. */
  unbonding: { amount: bigint; release_at_ms: number }[];
  /** A settlement could not be charged: routers answer 402 until a top-up. */
  unpaid: boolean;
  slashed: boolean;
}

/** A global name as the ledger records it. */
export interface LedgerName {
  name: string;
  owner: string;
  /** `manifest:<hex>` the name is bound to. */
  manifest_id: string;
  /** Weighted split across manifests (empty: all to `manifest_id`). */
  traffic: { manifest_id: string; weight: number }[];
  /** Most the owner is charged per period for this name. */
  spend_per_period_max: bigint;
  /** Charged so far in the current period. */
  spent_this_period: bigint;
  /** Routers answer 402: the owner could not pay, or the budget is spent. */
  unpaid: boolean;
}

/** A registered worker or router. */
export interface LedgerNode {
  key: string;
  role: "worker" | "router";
  /** The account its earnings are paid to. */
  operator: string;
  endpoint: string;
  region: string;
  price_per_million_fuel: bigint;
  stake: bigint;
}

/** Whether a worker's usage batch settled. */
export interface LedgerBatch {
  worker: string;
  sequence: bigint;
  settled: boolean;
}

export type LedgerTxKind =
  | "transfer"
  | "deploy"
  | "set_traffic"
  | "register_node"
  | "deregister"
  | "fund"
  | "settle"
  | "attest"
  | "stake"
  | "unstake"
  | "slash";

/** A finalized block. */
export interface LedgerBlock {
  height: number;
  /** Its proposer's clock, ms since the Unix epoch. */
  time_ms: number;
  /** Hex digests. */
  digest: string;
  parent: string;
  state_root: string;
  txs: { id: string; signer: string; nonce: bigint; kind: LedgerTxKind }[];
  /** Hex of the finalization certificate, null if this validator has none. */
  certificate: string | null;
}

/** `GET /v1/ledger/txs/<id>`: `height` when finalized. */
export type LedgerTxStatus =
  | { status: "pending" }
  | { status: "finalized"; height: number }
  | { status: "unknown" };

/** The validator refused (status 4xx/5xx), or could not be reached (status 0). */
export class LedgerError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "LedgerError";
  }
}

/** A validator's ledger API at `base` (`http://host:port`, its `api` in genesis.json). */
export class LedgerClient {
  readonly base: string;

  constructor(base: string) {
    const url = new URL(base);
    if (url.protocol !== "http:") throw new TypeError(`ledger URL ${base} must start with http://`);
    this.base = url.origin;
  }

  /** The answer's JSON, or null on 404 when `missing` is "null". */
  private async json<T>(path: string, init: RequestInit = {}, missing: "throw" | "null" = "throw"): Promise<T | null> {
    let response: Response;
    try {
      response = await fetch(`${this.base}/v1/ledger${path}`, init);
    } catch (error) {
      throw new LedgerError(`cannot reach the ledger at ${this.base}; is \`bonus validator\` running? (${(error as Error).message})`, 0);
    }
    const text = await response.text();
    let value: unknown;
    try {
      value = parseJsonLossless(text);
    } catch {
      value = { error: text || "no reason given" };
    }
    if (response.status === 404 && missing === "null") return null;
    if (!response.ok) {
      const message = (value as { error?: string } | null)?.error ?? "no reason given";
      throw new LedgerError(`the ledger refused (${response.status}): ${message}`, response.status);
    }
    return value as T;
  }

  private async get<T>(path: string): Promise<T> {
    return (await this.json<T>(path)) as T;
  }

  /** Height, state root, validators, mempool size, supply, finality latency. */
  async status(): Promise<LedgerStatus> {
    const s = await this.get<LedgerStatus>("/status");
    return {
      ...s,
      height: num(s.height),
      time_ms: num(s.time_ms),
      period: num(s.period),
      mempool: num(s.mempool),
      fee_pool: big(s.fee_pool),
      total_supply: big(s.total_supply),
      tx_fee: big(s.tx_fee),
    };
  }

  /** An account's balance, nonce, stake and unbonding (zeros if unknown). */
  async account(key: PublicKey | string): Promise<LedgerAccount> {
    const a = await this.get<LedgerAccount>(`/accounts/${segment(key)}`);
    return {
      ...a,
      balance: big(a.balance),
      nonce: big(a.nonce),
      stake: big(a.stake),
      unbonding: a.unbonding.map((u) => ({ amount: big(u.amount), release_at_ms: num(u.release_at_ms) })),
    };
  }

  /** An account's spendable balance. */
  async balance(key: PublicKey | string): Promise<bigint> {
    return (await this.account(key)).balance;
  }

  /** Every name on the ledger. */
  async names(): Promise<LedgerName[]> {
    return (await this.get<{ names: LedgerName[] }>("/names")).names.map(nameOf);
  }

  /** One name, or null if the ledger has none by that name. */
  async name(name: string): Promise<LedgerName | null> {
    const n = await this.json<LedgerName>(`/names/${segment(name)}`, {}, "null");
    return n === null ? null : nameOf(n);
  }

  /** Registered workers and routers. */
  async nodes(): Promise<LedgerNode[]> {
    const { nodes } = await this.get<{ nodes: LedgerNode[] }>("/nodes");
    return nodes.map((n) => ({ ...n, price_per_million_fuel: big(n.price_per_million_fuel), stake: big(n.stake) }));
  }

  /** Whether `worker`'s batch `sequence` settled. */
  async batch(worker: PublicKey | string, sequence: bigint | number): Promise<LedgerBatch> {
    const b = await this.get<LedgerBatch>(`/batches/${segment(worker)}/${BigInt(sequence)}`);
    return { ...b, sequence: big(b.sequence) };
  }

  /** The finalized block at `height` with its certificate, or null if not finalized yet. */
  async block(height: number | bigint): Promise<LedgerBlock | null> {
    const b = await this.json<LedgerBlock>(`/blocks/${BigInt(height)}`, {}, "null");
    if (b === null) return null;
    return { ...b, height: num(b.height), time_ms: num(b.time_ms), txs: b.txs.map((tx) => ({ ...tx, nonce: big(tx.nonce) })) };
  }

  /** A transaction's status by its id (64 hex digits). */
  async txStatus(id: string): Promise<LedgerTxStatus> {
    const s = await this.get<LedgerTxStatus>(`/txs/${segment(id)}`);
    return s.status === "finalized" ? { status: "finalized", height: num(s.height) } : s;
  }

  /**
   * Polls until the transaction is final and returns its height. Throws a
   * LedgerError if the validator does not know it (never submitted there,
   * or dropped because it no longer applies: balance or nonce changed) or
   * if it is not final after `timeoutMs` (default 60 s, as `bonus transfer`).
   */
  async waitForTx(id: string, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<number> {
    const { timeoutMs = 60_000, intervalMs = 50 } = options;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.txStatus(id);
      if (s.status === "finalized") return s.height;
      if (s.status === "unknown") {
        throw new LedgerError(`transaction ${id} is unknown to ${this.base}: never submitted there, or dropped (it no longer applies)`, 404);
      }
      if (Date.now() >= deadline) {
        throw new LedgerError(`transaction ${id} is not final after ${timeoutMs} ms; is a quorum of validators running?`, 0);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
    }
  }

  /** Submits an encoded signed transaction; returns its id (status "pending"). */
  async submitRaw(bytes: Uint8Array): Promise<{ id: string; status: "pending" }> {
    const answer = await this.json<{ id: string; status: "pending" }>("/txs", {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: bytes as Uint8Array<ArrayBuffer>,
    });
    return answer as { id: string; status: "pending" };
  }

  /**
   * Submits up to 1 024 encoded signed transactions in one request (the
   * validator checks their signatures together). What became of each, in
   * order: its id, or why it was refused; a malformed batch throws.
   */
  async submitRawBatch(txs: Uint8Array[]): Promise<({ id: string; status: "pending" } | { error: string })[]> {
    const body = new Uint8Array(txs.reduce((n, tx) => n + 4 + tx.length, 0));
    const view = new DataView(body.buffer);
    let at = 0;
    for (const tx of txs) {
      view.setUint32(at, tx.length); // big-endian
      body.set(tx, at + 4);
      at += 4 + tx.length;
    }
    const answer = await this.json<{ results: ({ id: string; status: "pending" } | { error: string })[] }>("/txs/batch", {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body,
    });
    return (answer as { results: ({ id: string; status: "pending" } | { error: string })[] }).results;
  }
}

/** One path segment: escaped, except the `:` of `ed25519:<hex>` (the API reads raw paths). */
function segment(value: PublicKey | string): string {
  return encodeURIComponent(String(value)).replace(/%3A/gi, ":");
}

function nameOf(n: LedgerName): LedgerName {
  return { ...n, spend_per_period_max: big(n.spend_per_period_max), spent_this_period: big(n.spent_this_period) };
}

function big(value: bigint | number | string): bigint {
  return BigInt(value);
}

function num(value: number | bigint | string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new LedgerError(`the ledger sent ${value}, beyond what this client reads as a number`, 0);
  return n;
}

/**
 * `JSON.parse`, except that integers beyond 2^53 come back as their decimal
 * string (then read with `BigInt`) instead of a rounded number.
 */
export function parseJsonLossless(text: string): unknown {
  let out = "";
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let end = i + 1;
      while (end < text.length && /[0-9.eE+-]/.test(text[end])) end++;
      const token = text.slice(i, end);
      if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(from, i)}"${token}"`;
        from = end;
      }
      i = end - 1;
    }
  }
  return JSON.parse(out + text.slice(from));
}
