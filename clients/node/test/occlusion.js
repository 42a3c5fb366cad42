// Checks an explained Recommendation against the server itself: each contribution's weight
// must be the item's score minus its score after the history without that event.

import assert from "node:assert/strict";

/** Float32 model arithmetic, batched differently in the two calls. */
const TOLERANCE = 1e-4;

/**
 * Assert that every item of `result` (an explained `recommend(domain, { history })`) weighs
 * the events at `indices`, largest weight first, and that each weight is the score the
 * item loses when the server is asked again without that event.
 */
export async function assertOcclusionWeights(client, domain, history, result, indices) {
  for (const item of result.items) {
    const weights = item.contributions.map((c) => c.weight);
    assert.deepEqual(weights, [...weights].sort((a, b) => b - a), `${item.itemId}: largest weight first`);
    assert.deepEqual(item.contributions.map((c) => c.historyIndex).sort((a, b) => a - b), indices);
    for (const { historyIndex, itemId, weight } of item.contributions) {
      const event = history[historyIndex];
      assert.equal(itemId, typeof event === "string" ? event : (event.itemId ?? ""));
      const rest = history.filter((_, i) => i !== historyIndex);
      const [without] = (await client.recommend(domain, { history: rest, candidates: [item.itemId], k: 1 })).items;
      const lost = item.score - without.score;
      assert.ok(Math.abs(weight - lost) < TOLERANCE, `${item.itemId} without event ${historyIndex}: weight ${weight}, lost ${lost}`);
    }
  }
}
