// Build a JavaScript or TypeScript fetch handler into a `wasi:http/proxy`
// component.
//
// Three steps: esbuild bundles the handler (JS or TS, with its imports) and
// a small entry that adapts `export default { fetch }` to the engine's fetch
// event; componentize-js splices the bundle into StarlingMonkey and
// pre-initializes it with wizer (the engine boots and the module's top level
// runs at build time, not per request); the result is written atomically.
// A build whose inputs did not change is skipped (a stamp file beside the
// output records their hash).

import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join, relative, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The WIT world every Bonus JS function targets: `wasi:http/proxy@0.2.10`. */
export const WIT_DIR = join(PACKAGE_DIR, "wit");
const WORLD_NAME = "handler";
// Builds are staged in per-build directories below this one.
const STAGING_ROOT = join(tmpdir(), `bonus-build-js-${process.getuid?.() ?? "user"}`);
const ENTRY_NAMES = ["index.ts", "index.js", "index.mjs", "src/index.ts", "src/index.js", "src/index.mjs"];

/** A build failure with a message meant for the user (file:line: reason). */
export class BuildError extends Error {
  constructor(message) {
    super(message);
    this.name = "BuildError";
  }
}

/**
 * The handler file for `path`: the file itself, or for a directory its
 * package.json `main`, else `index.{ts,js,mjs}` or `src/index.{ts,js,mjs}`.
 */
export function resolveEntry(path) {
  const absolute = resolve(path);
  if (!existsSync(absolute)) {
    throw new BuildError(`${path} does not exist; pass a handler file (.js/.ts) or its directory`);
  }
  if (statSync(absolute).isFile()) return absolute;
  const manifest = join(absolute, "package.json");
  if (existsSync(manifest)) {
    const main = JSON.parse(readFileSync(manifest, "utf8")).main;
    if (main && existsSync(join(absolute, main))) return join(absolute, main);
  }
  const found = ENTRY_NAMES.map((name) => join(absolute, name)).find((file) => existsSync(file));
  if (!found) {
    throw new BuildError(`${path} has no handler: add index.js or index.ts (or set "main" in package.json)`);
  }
  return found;
}

/** Where a build of `entry` goes unless told: `<project>/dist/<name>.wasm`. */
export function defaultOutput(path) {
  const absolute = resolve(path);
  const project = statSync(absolute).isDirectory() ? absolute : dirname(absolute);
  const name = statSync(absolute).isDirectory() ? basename(absolute) : basename(absolute, extname(absolute));
  return join(project, "dist", `${name}.wasm`);
}

// The adapter between the Workers-style module and StarlingMonkey's fetch
// event. A thrown exception or a non-Response becomes a 500 and the message
// goes to stderr, which the host logs with the request id.
function entrySource(handlerPath) {
  return `import * as handlerModule from ${JSON.stringify(handlerPath)};
import { getEnvironment } from "wasi:cli/environment@0.2.10";
const handler = handlerModule.default ?? handlerModule;
const fetchHandler = typeof handler === "function" ? handler : handler?.fetch?.bind(handler);
if (typeof fetchHandler !== "function") {
  throw new TypeError("the handler module must \`export default { async fetch(request) { ... } }\`");
}
// The environment, read on first use in a request: never at build time,
// when the module's top level runs, and not at all by handlers that ignore it.
function lazyEnv() {
  let vars;
  const load = () => (vars ??= Object.fromEntries(getEnvironment()));
  return new Proxy({}, {
    get: (_, key) => load()[key],
    has: (_, key) => key in load(),
    ownKeys: () => Reflect.ownKeys(load()),
    getOwnPropertyDescriptor: (_, key) => Object.getOwnPropertyDescriptor(load(), key),
  });
}
async function respond(request) {
  try {
    const response = await fetchHandler(request, lazyEnv());
    if (!(response instanceof Response)) {
      throw new TypeError("fetch(request) must return a Response, got " + (response === null ? "null" : typeof response));
    }
    return response;
  } catch (error) {
    const detail = error instanceof Error ? (error.stack ? error.name + ": " + error.message + "\\n" + error.stack : String(error)) : String(error);
    console.error("Uncaught exception in fetch handler: " + detail);
    return new Response("internal error: the function threw an exception (see its log)\\n", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
}
addEventListener("fetch", (event) => event.respondWith(respond(event.request)));
`;
}

// `file:line:column: message`, then the line and a caret, per message.
function formatMessages(messages) {
  return messages
    .map((message) => {
      const at = message.location;
      if (!at) return message.text;
      const pointer = `    ${at.lineText}\n    ${" ".repeat(at.column)}^`;
      return `${at.file}:${at.line}:${at.column + 1}: ${message.text}\n${pointer}`;
    })
    .join("\n");
}

/** Bundles the handler and the adapter into one ES module (source text). */
export async function bundle(entry) {
  const esbuild = await import("esbuild");
  const cwd = process.cwd();
  let result;
  try {
    result = await esbuild.build({
      stdin: { contents: entrySource(entry), resolveDir: dirname(entry), sourcefile: "bonus-entry.js", loader: "js" },
      bundle: true,
      write: false,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      mainFields: ["module", "main"],
      conditions: ["worker", "browser"],
      logLevel: "silent",
      external: ["wasi:*"],
      absWorkingDir: cwd,
    });
  } catch (error) {
    if (error.errors) {
      throw new BuildError(formatMessages(error.errors));
    }
    throw error;
  }
  return result.outputFiles[0].text;
}

function displayPath(path) {
  const shown = relative(process.cwd(), path);
  return shown && !shown.startsWith("..") ? shown : path;
}

// The preview2-shim module instance componentize-js itself imports.
function shimFilesystemUrl() {
  const componentize = import.meta.resolve("@bytecodealliance/componentize-js");
  return pathToFileURL(createRequire(componentize).resolve("@bytecodealliance/preview2-shim/filesystem")).href;
}

async function inputsHash(source) {
  const componentizeVersion = JSON.parse(
    await readFile(join(PACKAGE_DIR, "..", "..", "node_modules", "@bytecodealliance", "componentize-js", "package.json"), "utf8").catch(
      () => '{"version":"unknown"}',
    ),
  ).version;
  const hash = createHash("sha256");
  hash.update(`componentize-js ${componentizeVersion}\n`);
  hash.update(await readFile(join(WIT_DIR, "world.wit")));
  hash.update(source);
  return hash.digest("hex");
}

/**
 * Builds `path` (a handler file or its directory) into a component at
 * `output`. Returns `{ output, bytes, cached, millis }`.
 */
export async function build(path, { output, force = false } = {}) {
  const started = Date.now();
  const entry = resolveEntry(path);
  output = resolve(output ?? defaultOutput(path));
  const source = await bundle(entry);
  const hash = await inputsHash(source);
  const stamp = `${output}.inputs`;
  if (!force && existsSync(output) && existsSync(stamp) && readFileSync(stamp, "utf8") === hash) {
    return { output, bytes: statSync(output).size, cached: true, millis: Date.now() - started };
  }
  const { componentize } = await import("@bytecodealliance/componentize-js");
  await mkdir(STAGING_ROOT, { recursive: true });
  const work = await mkdtemp(join(STAGING_ROOT, "build-"));
  let component;
  try {
    // The splicer reads the WIT through preview2-shim, whose filesystem has
    // no preopens by default (0.26) and which keeps the first ones it sees:
    // grant it the staging root only, the same for every build.
    await writeFile(join(work, "handler.js"), source);
    await cp(WIT_DIR, join(work, "wit"), { recursive: true });
    const shim = await import(shimFilesystemUrl());
    shim._setPreopens({ [STAGING_ROOT]: STAGING_ROOT });
    ({ component } = await componentize({
      sourcePath: join(work, "handler.js"),
      witPath: join(work, "wit"),
      worldName: WORLD_NAME,
    }));
  } catch (error) {
    throw new BuildError(`componentize-js could not build ${displayPath(entry)}: ${error.message ?? error}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  await mkdir(dirname(output), { recursive: true });
  const temp = `${output}.${process.pid}.tmp`;
  await writeFile(temp, component);
  await rename(temp, output);
  await writeFile(stamp, hash);
  return { output, bytes: component.length, cached: false, millis: Date.now() - started };
}
