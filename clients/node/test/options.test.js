// Typed domain options are checked before calling: a value of the wrong type is a TypeError
// naming options.<name> (a call would reach the unreachable server and fail as UNAVAILABLE
// instead); TypeScript shows such mistakes at compile time (test/options-types.ts).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, test } from "node:test";
import { promisify } from "node:util";

import { TemporecClient, TemporecError, status } from "../dist/index.js";

const TSC = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname;
const TYPE_CHECKS = new URL("options-types.ts", import.meta.url).pathname;
const NUMBER = "expected a finite number, not negative";

const client = new TemporecClient("127.0.0.1:1", { timeoutMs: 10_000 });
after(() => client.close());

const REFUSED = [
  ["retail", { categories: "shoes" }, 'options.categories: expected an array of strings, got "shoes"'],
  ["retail", { outOfStock: ["sku1", 2] }, 'options.outOfStock: expected an array of strings, got ["sku1", 2]'],
  ["retail", { excludeItemIds: { sku1: true } }, "options.excludeItemIds: expected an array of strings, got an object"],
  ["retail", { remindCart: "false" }, 'options.remindCart: expected a boolean, got "false"'],
  ["retail", { remindCart: 0 }, "options.remindCart: expected a boolean, got 0"],
  ["news", { maxAgeDays: "abc" }, `options.maxAgeDays: ${NUMBER}, got "abc"`],
  ["news", { maxAgeDays: Number.NaN }, `options.maxAgeDays: ${NUMBER}, got NaN`],
  ["news", { maxAgeDays: -1 }, `options.maxAgeDays: ${NUMBER}, got -1`],
  ["customer_service", { handoffThreshold: Infinity }, `options.handoffThreshold: ${NUMBER}, got Infinity`],
  ["customer_service", { handoffThreshold: true }, `options.handoffThreshold: ${NUMBER}, got true`],
  ["news", { toString: 1 }, 'options.toString: domain "news" has no such option; allowed: maxAgeDays'],
];

for (const [domain, options, message] of REFUSED) {
  test(`refused before calling: ${message}`, async () => {
    await assert.rejects(client.recommend(domain, { history: ["1"], options }), { name: "TypeError", message });
  });
}

test("well-typed options pass the checks and go to the server", async () => {
  const accepted = [
    ["retail", { categories: ["shoes"], excludeItemIds: [], outOfStock: ["sku1"], remindCart: false }],
    ["news", { maxAgeDays: 0 }],
    ["news", { maxAgeDays: 2.5 }],
    ["customer_service", { handoffThreshold: 1, excludeItemIds: undefined }],
    ["retail", { remindCart: null, categories: null }],
    ["plugin_domain", { categories: "sent as text", fresh: "false" }],
  ];
  for (const [domain, options] of accepted) {
    const error = await client.recommend(domain, { history: ["1"], options }).catch((e) => e);
    assert.ok(error instanceof TemporecError, `${domain} ${JSON.stringify(options)}: ${error}`);
    assert.equal(error.code, status.UNAVAILABLE);
  }
});

test("TypeScript shows options of the wrong type at compile time", { timeout: 120_000 }, async () => {
  const flags = ["--noEmit", "--strict", "--skipLibCheck", "--target", "ES2022", "--types", "node"];
  const resolution = ["--module", "NodeNext", "--moduleResolution", "NodeNext"];
  const run = promisify(execFile)(process.execPath, [TSC, ...flags, ...resolution, TYPE_CHECKS]);
  await run.catch((error) => assert.fail(`tsc found errors in ${TYPE_CHECKS}:\n${error.stdout}${error.stderr}`));
});
