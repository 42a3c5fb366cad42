// The Node client against a live temporec server with a real model (video domain, lstm
// head, local encoder); see server.js.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import * as grpc from "@grpc/grpc-js";

import { TemporecClient, TemporecError, status, v1 } from "../dist/index.js";
import { assertOcclusionWeights } from "./occlusion.js";
import { missingPython, missingServer, startServer } from "./server.js";

const EXAMPLE = new URL("../examples/recommend.mjs", import.meta.url).pathname;

/** The TemporecError a promise rejects with. */
async function errorOf(promise) {
  await assert.rejects(promise, TemporecError);
  return promise.catch((error) => error);
}

describe("against a live server", { skip: missingServer() ?? false }, () => {
  let server;
  let client;

  // Training the small model and loading it take seconds; a server that never gets ready fails here.
  before(async () => {
    server = await startServer();
    client = new TemporecClient(server.target, { timeoutMs: 60_000 });
  }, { timeout: 300_000 });

  after(async () => {
    client?.close();
    await server?.stop();
  });

  test("track, then recommend by user id from the stored history; a retry is stored once", async () => {
    const user = `node-${process.pid}-${Date.now()}`;
    const t0 = Date.UTC(2024, 0, 1);
    const events = ["4", "9", "2"].map((itemId, n) => ({ userId: user, eventId: `e${n}`, itemId, action: "watch", timestamp: t0 + 60_000 * n }));
    assert.deepEqual(await client.track([events[2], events[0]]), { stored: 2, duplicates: 0, expired: 0 });
    assert.deepEqual(await client.trackStream([[events[1]], events]), { stored: 1, duplicates: 3, expired: 0 });
    const history = await client.getHistory(user);
    assert.deepEqual(history.map((e) => [e.eventId, e.itemId, e.timestamp]), events.map((e) => [e.eventId, e.itemId, e.timestamp]));
    const byUser = await client.recommend("video", { userId: user, k: 5 });
    const sent = await client.recommend("video", { history: events.map(({ itemId, action, timestamp }) => ({ itemId, action, timestamp })), k: 5 });
    assert.equal(byUser.historySource, "store");
    assert.deepEqual(byUser.itemIds, sent.itemIds);
    byUser.items.forEach((item, n) => assert.ok(Math.abs(item.score - sent.items[n].score) < 1e-5));
    assert.equal(await client.forgetUser(user), 3);
    assert.deepEqual(await client.getHistory(user), []);
  });

  test("a tracked event without an event id is INVALID_ARGUMENT naming it", async () => {
    const error = await errorOf(client.track([{ userId: "u", eventId: "", itemId: "1" }]));
    assert.equal(error.codeName, "INVALID_ARGUMENT");
    assert.equal(error.details, "events[0].event_id: required");
  });

  test("health is SERVING for the server and the recommender", async () => {
    assert.equal(await client.health(), "SERVING");
    assert.equal(await client.health("temporec.v1.Recommender"), "SERVING");
  });

  test("listComponents shows the real plugins and the model", async () => {
    const { encoders, heads, domains, models } = await client.listComponents();
    assert.ok(encoders.some((c) => c.name === "local") && heads.some((c) => c.name === "lstm"));
    assert.equal(domains.find((d) => d.name === "video").details.actions, "watch,rate");
    assert.equal(models.length, 1);
    const [model] = models;
    assert.deepEqual([model.domain, model.head, model.encoder, model.items], ["video", "lstm", "local", 30]);
    assert.ok(model.version && model.created.endsWith("Z") && Object.keys(model.metrics).length);
  });

  test("recommend ranks catalog items the user has not seen", async () => {
    const result = await client.recommend("video", { history: ["1", { itemId: "2", action: "rate" }, "3"], k: 5 });
    assert.equal(result.items.length, 5);
    assert.deepEqual(result.itemIds, result.items.map((item) => item.itemId));
    assert.ok(!result.itemIds.some((id) => ["1", "2", "3"].includes(id)));
    const scores = result.items.map((item) => item.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
    assert.deepEqual([result.domain, result.head, result.encoder, result.coldStart], ["video", "lstm", "local", false]);
    assert.equal(result.candidateSource, "catalog");
    assert.ok(result.rulesApplied.includes("exclude_history") && result.items.every((item) => item.text));
    assert.ok(Object.keys(result.timingsMs).length > 0);
  });

  test("recommend takes Dates, epoch milliseconds and items outside the catalog", async () => {
    const history = [
      { itemId: "4", action: "watch", timestamp: new Date("2024-05-01T20:00:00Z") },
      { itemId: "5", action: "rate", timestamp: 1_714_600_000_000 },
      { itemId: "new-upload", timestamp: 1_714_700_000_000, text: "A documentary about the sea" },
    ];
    const result = await client.recommend("video", { history, k: 3, userId: "u1" });
    assert.equal(result.items.length, 3);
    assert.ok(!result.itemIds.includes("new-upload"));
  });

  test("an invalid timestamp is refused before calling", async () => {
    await assert.rejects(client.recommend("video", { history: [{ itemId: "1", timestamp: new Date("no") }] }), {
      name: "TypeError",
      message: /Event\.timestamp/,
    });
  });

  test("candidates restrict the answer", async () => {
    const result = await client.recommend("video", { history: ["1"], candidates: ["7", "8", "9"], k: 10 });
    assert.deepEqual([...result.itemIds].sort(), ["7", "8", "9"]);
    assert.equal(result.candidateSource, "request");
  });

  test("an empty history gets the popular items", async () => {
    const result = await client.recommend("video", { k: 4 });
    assert.ok(result.coldStart);
    assert.equal(result.head, "popularity");
    assert.equal(result.items.length, 4);
  });

  test("encode returns one unit vector per text", async () => {
    const { encoder, dim, vectors } = await client.encode(["a film about robots", "a film about dragons"]);
    assert.deepEqual([encoder, dim, vectors.length], ["local", 384, 2]);
    for (const vector of vectors) {
      assert.equal(vector.length, 384);
      const norm = Math.hypot(...vector);
      assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    }
  });

  test("explain weighs each history event by occlusion; video decides no hand-off", async () => {
    const history = ["1", { itemId: "2", action: "rate" }, "3"];
    const result = await client.recommend("video", { history, k: 3, explain: true });
    await assertOcclusionWeights(client, "video", history, result, [0, 1, 2]);
    assert.equal(result.handOff, undefined);

    const latest = await client.recommend("video", { history, k: 3, explain: true, explainEvents: 2 });
    await assertOcclusionWeights(client, "video", history, latest, [1, 2]);
  });

  test("without explain there are no contributions", async () => {
    const result = await client.recommend("video", { history: ["1", "2"], k: 3 });
    assert.ok(result.items.every((item) => item.contributions.length === 0));
  });

  test("an option the domain does not declare is INVALID_ARGUMENT naming it", async () => {
    const error = await errorOf(client.recommend("video", { history: ["1"], options: { colour: "red" } }));
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(error.details, "options.colour: unknown option; allowed: (none)");
  });

  test("an unknown domain is NOT_FOUND, with the server's message", async () => {
    const error = await errorOf(client.recommend("books", { history: ["1"] }));
    assert.equal(error.code, status.NOT_FOUND);
    assert.equal(error.codeName, "NOT_FOUND");
    assert.match(error.details, /'video'/);
    assert.equal(error.message, `NOT_FOUND: ${error.details}`);
  });

  for (const [field, options] of [
    ["k", { history: ["1"], k: 0 }],
    ["action", { history: [{ itemId: "1", action: "like" }] }],
  ]) {
    test(`a bad ${field} is INVALID_ARGUMENT naming the field`, async () => {
      const error = await errorOf(client.recommend("video", options));
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.details, new RegExp(field));
    });
  }

  test("a deadline already passed is DEADLINE_EXCEEDED", async () => {
    const error = await errorOf(client.recommend("video", { history: ["1"], timeoutMs: -1 }));
    assert.equal(error.codeName, "DEADLINE_EXCEEDED");
  });

  test("calls without a deadline are served", async () => {
    const unbounded = new TemporecClient(server.target, { timeoutMs: null });
    try {
      assert.equal((await unbounded.recommend("video", { history: ["1"], k: 2 })).items.length, 2);
    } finally {
      unbounded.close();
    }
  });

  test("an aborted signal cancels the call", async () => {
    const error = await errorOf(client.recommend("video", { history: ["1"], signal: AbortSignal.abort() }));
    assert.equal(error.code, status.CANCELLED);
  });

  test("metadata goes with every call and per call", async () => {
    const authorized = new TemporecClient(server.target, { metadata: { authorization: "Bearer test-token" } });
    try {
      assert.equal(await authorized.health("", { metadata: { "x-request-id": "abc" } }), "SERVING");
    } finally {
      authorized.close();
    }
  });

  test("TLS to a plaintext server fails as UNAVAILABLE", async () => {
    // the name override only keeps Node from warning about TLS to an IP address
    const channelOptions = { "grpc.ssl_target_name_override": "localhost" };
    const secure = new TemporecClient(server.target, { tls: true, timeoutMs: 10_000, channelOptions });
    try {
      assert.equal((await errorOf(secure.health())).code, status.UNAVAILABLE);
    } finally {
      secure.close();
    }
  });

  test("a closed client refuses calls", async () => {
    const closed = new TemporecClient(server.target);
    closed.close();
    await assert.rejects(closed.health());
  });

  test("the generated stubs work on their own", async () => {
    const raw = new v1.RecommenderClient(server.target, grpc.credentials.createInsecure());
    try {
      const request = v1.RecommendRequest.fromPartial({ domain: "video", history: [{ itemId: "1" }], k: 2 });
      const response = await new Promise((done, fail) => {
        raw.recommend(request, (error, reply) => (error ? fail(error) : done(reply)));
      });
      assert.equal(response.items.length, 2);
    } finally {
      raw.close();
    }
  });

  test("the example prints recommendations", async () => {
    const args = [EXAMPLE, "--target", server.target, "--domain", "video", "-k", "3", "1", "2:rate"];
    const { stdout } = await promisify(execFile)(process.execPath, args);
    assert.match(stdout, /server health: SERVING/);
    assert.match(stdout, /top 3 for video from lstm on local/);
  });

  test("the example reports errors with their code", async () => {
    const args = [EXAMPLE, "--target", server.target, "--domain", "books", "1"];
    await assert.rejects(promisify(execFile)(process.execPath, args), (error) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /error NOT_FOUND: /);
      return true;
    });
  });
});

test("an unreachable server is UNAVAILABLE", async () => {
  const client = new TemporecClient("127.0.0.1:1", { timeoutMs: 10_000 });
  try {
    assert.equal((await errorOf(client.health())).code, status.UNAVAILABLE);
  } finally {
    client.close();
  }
});

describe("against a server that requires a bearer token", { skip: missingPython() ?? false }, () => {
  let server;

  before(async () => {
    server = await startServer({ tokens: "node-test-token" });
  }, { timeout: 300_000 });

  after(async () => {
    await server?.stop();
  });

  /** The result of `recommend` with these client options: the item count, or the error code. */
  async function recommendWith(options) {
    const client = new TemporecClient(server.target, { timeoutMs: 60_000, ...options });
    try {
      return (await client.recommend("video", { history: ["1"], k: 2 })).items.length;
    } catch (error) {
      if (error instanceof TemporecError) return status[error.code];
      throw error;
    } finally {
      client.close();
    }
  }

  test("the token option authenticates; none or a wrong one is UNAUTHENTICATED", async () => {
    assert.equal(await recommendWith({ token: "node-test-token" }), 2);
    assert.equal(await recommendWith({}), "UNAUTHENTICATED");
    assert.equal(await recommendWith({ token: "wrong" }), "UNAUTHENTICATED");
    // the token option wins over an authorization header in metadata
    assert.equal(await recommendWith({ token: "node-test-token", metadata: { authorization: "Bearer x" } }), 2);
  });
});
