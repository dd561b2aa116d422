// @bonus/client: deploy, invoke and inspect Bonus functions from JavaScript.
//
// Keys are ed25519 (@noble/ed25519), ids BLAKE3 (@noble/hashes); manifests
// are encoded and signed byte for byte as the Rust registry does, so a
// manifest signed here verifies on every node.

export { ArtifactId, ManifestId } from "./ids.js";
export { PublicKey, SecretKey, bonusHome } from "./keys.js";
export {
  DEFAULT_LIMITS,
  DEV_BUDGET,
  LIST_ITEMS_MAX,
  MANIFEST_DOMAIN,
  NAME_BYTES_MAX,
  STRING_BYTES_MAX,
  type Manifest,
  type ManifestBudget,
  type ManifestLimits,
  type SignedManifest,
  compareUtf8,
  decodeSignedManifest,
  encodeManifest,
  manifestId,
  signManifest,
  validateManifest,
} from "./manifest.js";
export {
  type DeployOptions,
  type Deployment,
  type FunctionInfo,
  LOGS_AUTH_HEADER,
  type LogLine,
  logsAuthMessage,
  NodeClient,
  NodeError,
  type Usage,
  usageOf,
} from "./node.js";
export {
  LedgerClient,
  LedgerError,
  type LedgerAccount,
  type LedgerBatch,
  type LedgerBlock,
  type LedgerName,
  type LedgerNode,
  type LedgerStatus,
  type LedgerTxKind,
  type LedgerTxStatus,
  parseJsonLossless,
} from "./ledger.js";
export { fromHex, toHex } from "./bytes.js";
