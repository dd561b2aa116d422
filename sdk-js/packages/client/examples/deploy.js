// Deploy a component to a node and call it, with the key `bonus keys new`
// made: node examples/deploy.js <file.wasm> <name> [http://127.0.0.1:4000]
import { readFile } from "node:fs/promises";
import { NodeClient, SecretKey, usageOf } from "@bonus/client";

const [wasmPath, name, node = "http://127.0.0.1:4000"] = process.argv.slice(2);
const key = await SecretKey.loadNamed("default"); // $BONUS_HOME/keys/default.key
const client = new NodeClient(node);
const deployed = await client.deploy({ name, wasm: await readFile(wasmPath), key });
const response = await client.invoke(name, "/");
const { fuel } = usageOf(response);
console.log(JSON.stringify({ url: deployed.url, artifact_id: deployed.artifactId.toHex(), manifest_id: deployed.manifestId.toHex(),
  version: deployed.version, uploaded: deployed.uploaded, status: response.status, body: await response.text(), fuel: String(fuel) }));
