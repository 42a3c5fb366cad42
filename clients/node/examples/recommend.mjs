#!/usr/bin/env node
// Ask a temporec server what a user should watch next.
//
//   node examples/recommend.mjs --target localhost:50051 --domain video 12 7:rate 33
//
// Each positional argument is an item id of the user's history, oldest first; ID:ACTION
// names the action. Copy this file into a project that has `temporec-client` installed.

import { parseArgs } from "node:util";

import { TemporecClient, TemporecError } from "temporec-client";

const { values: options, positionals } = parseArgs({
  options: {
    target: { type: "string", default: "localhost:50051" },
    domain: { type: "string", default: "video" },
    k: { type: "string", short: "k", default: "5" },
  },
  allowPositionals: true,
});

// One event per hour, ending now.
const start = Date.now() - 3_600_000 * positionals.length;
const history = positionals.map((entry, hour) => {
  const [itemId, action = ""] = entry.split(":");
  return { itemId, action, timestamp: start + 3_600_000 * hour };
});

const client = new TemporecClient(options.target, { timeoutMs: 30_000 });
try {
  console.log(`server health: ${await client.health()}`);
  const { models } = await client.listComponents();
  for (const model of models) {
    console.log(`model: ${model.domain}/${model.head} (${model.encoder}) v${model.version}, ${model.items} items`);
  }
  const result = await client.recommend(options.domain, { history, k: Number(options.k) });
  const source = result.coldStart ? "popular items (no history)" : `${result.head} on ${result.encoder}`;
  console.log(`top ${result.items.length} for ${options.domain} from ${source}, model ${result.modelVersion}:`);
  result.items.forEach((item, rank) => {
    const score = item.score.toFixed(4).padStart(8);
    console.log(`${String(rank + 1).padStart(3)}. ${item.itemId.padEnd(12)} ${score}  ${item.text.slice(0, 60)}`);
  });
  const timings = Object.entries(result.timingsMs).map(([stage, ms]) => `${stage} ${ms.toFixed(1)} ms`);
  console.log(`server time: ${timings.join(", ")}`);
} catch (error) {
  if (!(error instanceof TemporecError)) throw error;
  console.error(`error ${error.codeName}: ${error.details}`);
  process.exitCode = 1;
} finally {
  client.close();
}
