// The build script's errors and its output, on real handlers.

import assert from "node:assert/strict";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { BuildError, build, bundle, resolveEntry } from "../src/build.js";

const examples = fileURLToPath(new URL("../../../../examples/", import.meta.url));

async function handler(source, name = "index.js") {
  const dir = await mkdtemp(join(tmpdir(), "bonus-sdk-test-"));
  await writeFile(join(dir, name), source);
  return { dir, file: join(dir, name) };
}

test("invalid JS fails with the file, line and column", async () => {
  const { file } = await handler('export default {\n  async fetch(request) {\n    return new Response("x"\n  }\n};\n');
  await assert.rejects(bundle(file), (error) => {
    assert.ok(error instanceof BuildError);
    assert.match(error.message, /index\.js:4:3: Expected "\)" but found "}"/);
    return true;
  });
});

test("invalid TypeScript fails with the file and line", async () => {
  const { file } = await handler("const x: number = ;\nexport default { fetch() { return new Response(String(x)); } };\n", "index.ts");
  await assert.rejects(bundle(file), /index\.ts:1:\d+: /);
});

test("an import that does not resolve names the importing file", async () => {
  const { file } = await handler('import { x } from "./missing.js";\nexport default { fetch() { return new Response(x); } };\n');
  await assert.rejects(bundle(file), /index\.js:1:\d+: Could not resolve "\.\/missing\.js"/);
});

test("a directory resolves to its index, TypeScript included", () => {
  assert.equal(resolveEntry(join(examples, "api-js")), join(examples, "api-js", "index.ts"));
  assert.equal(resolveEntry(join(examples, "hello-js")), join(examples, "hello-js", "index.js"));
  assert.throws(() => resolveEntry(join(examples, "nope")), /does not exist/);
  assert.throws(() => resolveEntry(join(examples, "hello")), /has no handler/);
});

test("TypeScript bundles to plain JS with the adapter", async () => {
  const source = await bundle(join(examples, "api-js", "index.ts"));
  assert.doesNotMatch(source, /: Record<string/);
  assert.match(source, /addEventListener\("fetch"/);
  assert.match(source, /from "wasi:cli\/environment@0\.2\.10"/);
});

test("a module without a fetch handler fails at pre-initialization, saying what to export", async () => {
  const { file, dir } = await handler("export const answer = 42;\n");
  await assert.rejects(build(file, { output: join(dir, "out.wasm") }), (error) => {
    assert.ok(error instanceof BuildError);
    assert.match(error.message, /export default \{ async fetch\(request\)/);
    return true;
  });
});

test("builds a component once, then reuses it while the inputs are unchanged", async () => {
  const { file, dir } = await handler('export default { fetch: () => new Response("hi") };\n');
  const output = join(dir, "hi.wasm");
  const first = await build(file, { output });
  assert.equal(first.cached, false);
  const bytes = await readFile(output);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00], "a component");
  assert.ok((await stat(output)).size > 1 << 20);
  const second = await build(file, { output });
  assert.equal(second.cached, true);
});
