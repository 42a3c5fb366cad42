// The Node client's domain options, explanations and hand-offs against a live server with a
// real customer_service model (lstm head, local encoder); see server.js.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { TemporecClient, TemporecError, status, v1 } from "../dist/index.js";
import { assertOcclusionWeights } from "./occlusion.js";
import { REPLIES, missingPython, startCustomerServiceServer } from "./server.js";

const DOMAIN = "customer_service";
/** A conversation known by its text alone: no event has an item id. */
const CONVERSATION = [
  { action: "user", text: "hello" },
  { action: "user", text: "where is my refund" },
];

describe("customer_service against a live server", { skip: missingPython() ?? false }, () => {
  let server;
  let client;

  // Training the small model and loading it take seconds; a server that never gets ready fails here.
  before(async () => {
    server = await startCustomerServiceServer();
    client = new TemporecClient(server.target, { timeoutMs: 60_000 });
  }, { timeout: 300_000 });

  after(async () => {
    client?.close();
    await server?.stop();
  });

  /** The gRPC error of a raw Recommend call with `fields`. */
  async function rawRefusal(fields) {
    const raw = new v1.RecommenderClient(server.target, grpc.credentials.createInsecure());
    try {
      const request = v1.RecommendRequest.fromPartial({ domain: DOMAIN, history: CONVERSATION, k: 2, ...fields });
      return await new Promise((done, fail) => {
        raw.recommend(request, (error) => (error ? done(error) : fail(new Error("the call was not refused"))));
      });
    } finally {
      raw.close();
    }
  }

  test("below the threshold the conversation is handed off, the replies still listed", async () => {
    const unsure = await client.recommend(DOMAIN, { history: CONVERSATION, k: 4, options: { handoffThreshold: 1 } });
    const { recommended, confidence, threshold, reason } = unsure.handOff;
    assert.deepEqual([recommended, threshold], [true, 1]);
    assert.ok(confidence > 0 && confidence < 1, `confidence ${confidence}`);
    assert.match(reason, /below the hand-off threshold 1$/);
    assert.deepEqual(unsure.rulesApplied, ["handoff"]);
    assert.deepEqual([...unsure.itemIds].sort(), Object.keys(REPLIES).sort());

    const sure = await client.recommend(DOMAIN, { history: CONVERSATION, k: 4, options: { handoffThreshold: 0 } });
    assert.deepEqual([sure.handOff.recommended, sure.handOff.threshold, sure.handOff.reason], [false, 0, ""]);
    assert.ok(Math.abs(sure.handOff.confidence - confidence) < 1e-6);
    assert.deepEqual(sure.rulesApplied, []);
  });

  test("typed options leave excluded replies out; unset ones keep their defaults", async () => {
    const options = { excludeItemIds: ["refund"], handoffThreshold: undefined };
    const result = await client.recommend(DOMAIN, { history: CONVERSATION, k: 4, options });
    assert.deepEqual([...result.itemIds].sort(), ["hours", "human", "reset"]);
    assert.ok(result.rulesApplied.includes("exclude_filtered"));
    assert.equal(result.handOff.threshold, 0.3);
  });

  test("explain weighs each turn of the conversation by occlusion", async () => {
    const result = await client.recommend(DOMAIN, { history: CONVERSATION, k: 3, explain: true });
    assert.equal(result.items.length, 3);
    await assertOcclusionWeights(client, DOMAIN, CONVERSATION, result, [0, 1]);

    const latest = await client.recommend(DOMAIN, { history: CONVERSATION, k: 3, explain: true, explainEvents: 1 });
    await assertOcclusionWeights(client, DOMAIN, CONVERSATION, latest, [1]);
    assert.ok(latest.items.every((item) => item.contributions.length === 1));
  });

  test("a cold start has neither contributions nor a hand-off", async () => {
    const result = await client.recommend(DOMAIN, { k: 2, explain: true });
    assert.ok(result.coldStart);
    assert.ok(result.items.every((item) => item.contributions.length === 0));
    assert.equal(result.handOff, undefined);
  });

  test("an unknown typed option is refused before calling, naming the allowed ones", async () => {
    await assert.rejects(client.recommend(DOMAIN, { history: CONVERSATION, options: { colour: "red" } }), {
      name: "TypeError",
      message: 'options.colour: domain "customer_service" has no such option; allowed: excludeItemIds, handoffThreshold',
    });
  });

  test("an unknown plugin option is INVALID_ARGUMENT naming it and the allowed ones", async () => {
    const error = await rawRefusal({ pluginOptions: { colour: "red" } });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(error.details, "options.colour: unknown option; allowed: 'exclude_item_ids', 'handoff_threshold'");
  });

  test("another domain's typed options are INVALID_ARGUMENT naming the field", async () => {
    const error = await rawRefusal({ retailOptions: { categories: ["shoes"] } });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /^retail_options: .*use customer_service_options$/);
  });

  test("explainEvents above the server's limit is RESOURCE_EXHAUSTED naming it", async () => {
    const error = await client.recommend(DOMAIN, { history: CONVERSATION, explain: true, explainEvents: 1000 }).catch((e) => e);
    assert.ok(error instanceof TemporecError);
    assert.equal(error.code, status.RESOURCE_EXHAUSTED);
    assert.match(error.details, /^explain_events: at most \d+ \(limits\.max_explain_events\), got 1000$/);
  });
});
