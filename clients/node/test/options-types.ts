// Compile-time checks of recommend's `options`, run by test/options.test.js with tsc: each
// line under @ts-expect-error must be a type error, and every other line must compile.

import type { TemporecClient } from "../dist/index.js";

export async function recommendWithOptions(client: TemporecClient, someDomain: string): Promise<void> {
  await client.recommend("retail", { options: { categories: ["shoes"], remindCart: false } });
  await client.recommend("news", { options: { maxAgeDays: 3 } });
  await client.recommend("customer_service", { options: { handoffThreshold: 0.5, excludeItemIds: ["human"] } });
  await client.recommend("video", { options: { anyName: "sent as text" } });
  await client.recommend(someDomain, { options: { anyName: 1 } });

  // @ts-expect-error: a string for an array of strings
  await client.recommend("retail", { options: { categories: "shoes" } });
  // @ts-expect-error: a string for a boolean
  await client.recommend("retail", { options: { remindCart: "false" } });
  // @ts-expect-error: a string for a number
  await client.recommend("news", { options: { maxAgeDays: "abc" } });
  // @ts-expect-error: a name the domain's message lacks
  await client.recommend("customer_service", { options: { colour: "red" } });
  // @ts-expect-error: another domain's option
  await client.recommend("news", { options: { categories: ["shoes"] } });
}
