// A node's HTTP API, the same calls `bonus deploy` makes (the answers are
// typed in `node/src/wire.rs`): `GET /v1/node`, `HEAD|PUT /v1/artifacts/<id>`,
// `POST /v1/artifacts/<id>/fetch`, `POST /v1/manifests`, `GET /v1/functions`,
// `GET /v1/logs/<name>` and `/fn/<name>/<path>`.

import { ArtifactId, ManifestId } from "./ids.js";
import {
  DEFAULT_LIMITS,
  DEV_BUDGET,
  type ManifestBudget,
  type ManifestLimits,
  type SignedManifest,
  compareUtf8,
  signManifest,
} from "./manifest.js";
import { toHex } from "./bytes.js";
import type { SecretKey } from "./keys.js";
import { parseJsonLossless } from "./ledger.js";

/** A function as `GET /v1/functions` lists it. */
export interface FunctionInfo {
  name: string;
  version: number;
  manifest_id: string;
  artifact_id: string;
  artifact_bytes: number;
  /** The owner's signed budget: the most paid per million fuel. */
  price_per_million_fuel_max: bigint;
  /** The owner's signed budget: the most charged per settlement period (0: never). */
  spend_per_period_max: bigint;
  owner: string;
  /** Whether the name is bound to this manifest on this node. */
  current: boolean;
}

/** One line of a function's logs on a worker (`GET /v1/logs/<name>`). */
export interface LogLine {
  /** Its number on this worker: ask `after` the last one to follow. */
  seq: number;
  /** When the invocation ended, ms since the Unix epoch. */
  time_ms: number;
  request_id: string;
  /** The version that ran. */
  manifest_id: string;
  /** `stdout`, `stderr`, or `error` (how a failed invocation ended). */
  stream: string;
  text: string;
}

/** The header a logs request carries (`node/src/wire.rs`). */
export const LOGS_AUTH_HEADER = "x-bonus-logs-auth";

/**
 * What a name's owner signs to read its logs: the name and the time (a
 * worker refuses a time more than 5 minutes from its clock). The bytes
 * of `node/src/wire.rs`'s `logs_auth_message`.
 */
export function logsAuthMessage(name: string, timeMs: number | bigint): Uint8Array {
  const prefix = new TextEncoder().encode("bonus/logs/v1\0");
  const nameBytes = new TextEncoder().encode(name);
  const message = new Uint8Array(prefix.length + 8 + nameBytes.length);
  message.set(prefix, 0);
  new DataView(message.buffer).setBigUint64(prefix.length, BigInt(timeMs), false);
  message.set(nameBytes, prefix.length + 8);
  return message;
}

let lastSignedReadMs = 0;

/**
 * The time a signed logs read carries: the clock's, but always after this
 * process's previous one. A worker answers each signed read once (a
 * captured header cannot be replayed), and ed25519 signatures are
 * deterministic, so two reads of a name in one millisecond would otherwise
 * be one read and a refused "replay".
 */
function signedReadTimeMs(): number {
  lastSignedReadMs = Math.max(Date.now(), lastSignedReadMs + 1);
  return lastSignedReadMs;
}

/** What {@link NodeClient.deploy} did. */
export interface Deployment {
  name: string;
  version: number;
  manifestId: ManifestId;
  artifactId: ArtifactId;
  /** Whether the bytes were sent (false when the node already had them). */
  uploaded: boolean;
  /** Where the function answers: `<node>/fn/<name>/`. */
  url: string;
  signed: SignedManifest;
}

/** Options of {@link NodeClient.deploy}; defaults as `bonus deploy`. */
export interface DeployOptions {
  name: string;
  /** The component's bytes (`.wasm`). */
  wasm: Uint8Array;
  /** The owner's key: signs the manifest. */
  key: SecretKey;
  env?: Record<string, string>;
  allowedOutboundHosts?: string[];
  limits?: Partial<ManifestLimits>;
  /**
   * What you consent to be charged: the most per million fuel and per
   * settlement period (0: never charged). Unset fields are `DEV_BUDGET`'s,
   * as `bonus deploy`'s `--price-max` and `--spend-max` default.
   */
  budget?: Partial<ManifestBudget>;
  /** Do not upload: the node fetches the artifact from its peers. */
  noUpload?: boolean;
}

/** What a function's response says about its invocation. */
export interface Usage {
  /** Fuel the request burned (`x-bonus-fuel`): the billed unit. */
  fuel: bigint | null;
  requestId: string | null;
  /** The manifest that answered (`x-bonus-manifest-id`, on nodes). */
  manifestId: ManifestId | null;
  /** Why the host answered instead of the function (`x-bonus-outcome`). */
  outcome: string | null;
}

/** The node refused, or answered something unexpected. */
export class NodeError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "NodeError";
  }
}

/** A node's API at `base` (`http://host:port`). */
export class NodeClient {
  readonly base: string;

  constructor(base: string) {
    const url = new URL(base);
    if (url.protocol !== "http:") throw new TypeError(`node URL ${base} must start with http://`);
    this.base = url.origin;
  }

  private async send(path: string, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, init);
    } catch (error) {
      throw new NodeError(`cannot reach the node at ${this.base}; is \`bonus node\` running? (${(error as Error).message})`, 0);
    }
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await this.send(path, init);
    const text = await response.text();
    let value: unknown;
    try {
      value = parseJsonLossless(text); // u64s above 2^53 arrive as strings, not rounded
    } catch {
      value = { error: text };
    }
    if (!response.ok) {
      const message = (value as { error?: string }).error ?? "no reason given";
      throw new NodeError(`the node refused (${response.status}): ${message}`, response.status);
    }
    return value as T;
  }

  /** Peer id, P2P addresses, counts. */
  node(): Promise<{ peer_id: string; p2p_addrs: string[]; artifacts: number; connected_peers: number }> {
    return this.json("/v1/node");
  }

  /**
   * `name`'s recent output and failures on this worker, numbered `after`
   * or later; `key` must be the name's owner.
   */
  async logs(name: string, key: SecretKey, after = 0): Promise<LogLine[]> {
    const timeMs = signedReadTimeMs();
    const signature = toHex(key.sign(logsAuthMessage(name, timeMs)));
    const { lines } = await this.json<{ lines: LogLine[] }>(`/v1/logs/${encodeURIComponent(name)}?after=${after}`, {
      headers: { [LOGS_AUTH_HEADER]: `${key.publicKey},${timeMs},${signature}` },
    });
    return lines;
  }

  /** The functions this node knows. */
  async functions(): Promise<FunctionInfo[]> {
    const { functions } = await this.json<{ functions: FunctionInfo[] }>("/v1/functions");
    return functions.map((f) => ({
      ...f,
      price_per_million_fuel_max: BigInt(f.price_per_million_fuel_max),
      spend_per_period_max: BigInt(f.spend_per_period_max),
    }));
  }

  /** The artifact's size if the node holds it, else null. */
  async artifactBytes(id: ArtifactId): Promise<number | null> {
    const response = await this.send(`/v1/artifacts/${id.toHex()}`, { method: "HEAD" });
    if (response.status === 404) return null;
    if (!response.ok) throw new NodeError(`the node answered ${response.status} for artifact ${id}`, response.status);
    return Number(response.headers.get("x-bonus-artifact-bytes"));
  }

  /** The artifact's bytes, checked against its id. */
  async artifact(id: ArtifactId): Promise<Uint8Array> {
    const response = await this.send(`/v1/artifacts/${id.toHex()}`);
    if (!response.ok) throw new NodeError(`the node answered ${response.status} for artifact ${id}`, response.status);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (!ArtifactId.of(bytes).equals(id)) throw new NodeError(`the node sent bytes that are not ${id}`, response.status);
    return bytes;
  }

  /** Uploads a component; the node verifies it against its id. */
  putArtifact(wasm: Uint8Array): Promise<{ artifact_id: string; bytes?: number; new: boolean }> {
    const id = ArtifactId.of(wasm);
    return this.json(`/v1/artifacts/${id.toHex()}`, {
      method: "PUT",
      headers: { "content-type": "application/wasm" },
      body: wasm as Uint8Array<ArrayBuffer>,
    });
  }

  /** Asks the node to fetch an artifact from its peers. */
  fetchArtifact(id: ArtifactId): Promise<{ artifact_id: string; bytes: number; segments_by_peer: Record<string, number> }> {
    return this.json(`/v1/artifacts/${id.toHex()}/fetch`, { method: "POST" });
  }

  /** Posts a signed manifest; the node binds its name. */
  postManifest(signed: SignedManifest): Promise<{ manifest_id: string; name: string; version: number; artifact_id: string; path: string }> {
    return this.json("/v1/manifests", {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: signed.bytes as Uint8Array<ArrayBuffer>,
    });
  }

  /** The next version and its parent for `name`, as `bonus deploy` finds them. */
  async nextVersion(name: string, owner: SecretKey["publicKey"]): Promise<{ version: number; parent: ManifestId | null }> {
    const current = (await this.functions()).find((f) => f.name === name && f.current);
    if (!current) return { version: 1, parent: null };
    if (current.owner !== owner.toString()) {
      throw new Error(`the name ${JSON.stringify(name)} belongs to ${current.owner}; deploy under another name`);
    }
    return { version: current.version + 1, parent: ManifestId.parse(current.manifest_id) };
  }

  /** Uploads (unless the node has it), signs a manifest and binds the name. */
  async deploy(options: DeployOptions): Promise<Deployment> {
    const artifactId = ArtifactId.of(options.wasm);
    const { version, parent } = await this.nextVersion(options.name, options.key.publicKey);
    const env = Object.entries(options.env ?? {}).sort(([a], [b]) => compareUtf8(a, b));
    const signed = signManifest(
      {
        name: options.name,
        artifactId,
        artifactBytes: BigInt(options.wasm.length),
        limits: { ...DEFAULT_LIMITS, ...options.limits },
        budget: { ...DEV_BUDGET, ...options.budget },
        env,
        allowedOutboundHosts: options.allowedOutboundHosts ?? [],
        routes: [],
        version,
        parent,
        owner: options.key.publicKey,
      },
      options.key,
    );
    const held = await this.artifactBytes(artifactId);
    const uploaded = held === null && !options.noUpload;
    if (uploaded) await this.putArtifact(options.wasm);
    const answer = await this.postManifest(signed);
    return { name: options.name, version, manifestId: signed.id, artifactId, uploaded, url: `${this.base}${answer.path}`, signed };
  }

  /** Calls a deployed function: `path` is relative to `/fn/<name>`. */
  invoke(name: string, path = "/", init: RequestInit = {}): Promise<Response> {
    const rest = path.startsWith("/") ? path : `/${path}`;
    return this.send(`/fn/${encodeURIComponent(name)}${rest}`, init);
  }
}

/**
 * What the host says about an invocation. The node does not sign responses
 * or receipts yet, so these headers are informative, not proofs.
 */
export function usageOf(response: Response): Usage {
  const fuel = response.headers.get("x-bonus-fuel");
  const manifest = response.headers.get("x-bonus-manifest-id");
  return {
    fuel: fuel === null ? null : BigInt(fuel),
    requestId: response.headers.get("x-bonus-request-id"),
    manifestId: manifest === null ? null : ManifestId.parse(manifest),
    outcome: response.headers.get("x-bonus-outcome"),
  };
}
