#!/usr/bin/env node
// bonus-build-js: build a JS/TS fetch handler into a wasi:http component.
//
//   bonus-build-js <handler.js|handler.ts|dir> [-o out.wasm] [--force] [--quiet] [--json]
//
// Exit status 1 on a build error, with `file:line:column: error: ...` on
// stderr; on success the output path is printed on stdout (or, with
// --json, {"output", "bytes", "cached", "millis"}).

import { parseArgs } from "node:util";
import { BuildError, build } from "../src/build.js";

const usage = "usage: bonus-build-js <handler.js|handler.ts|dir> [-o out.wasm] [--force] [--quiet] [--json]";

function status(quiet, verb, message) {
  if (!quiet) process.stderr.write(`${verb.padStart(12)} ${message}\n`);
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        output: { type: "string", short: "o" },
        force: { type: "boolean" },
        quiet: { type: "boolean", short: "q" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    process.stderr.write(`error: ${error.message}\n${usage}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`error: expected one handler path\n${usage}\n`);
    return 2;
  }
  status(values.quiet, "Building", `${positionals[0]} (componentize-js, pre-initialized)`);
  try {
    const result = await build(positionals[0], { output: values.output, force: values.force });
    const how = result.cached ? "up to date" : `${(result.millis / 1000).toFixed(1)} s`;
    status(values.quiet, "Built", `${result.output} (${(result.bytes / 1048576).toFixed(1)} MiB, ${how})`);
    process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${result.output}\n`);
    return 0;
  } catch (error) {
    if (error instanceof BuildError) {
      process.stderr.write(`error: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

process.exitCode = await main();
