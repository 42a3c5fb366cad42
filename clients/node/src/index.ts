/**
 * temporec-client: a Node.js client for the temporec gRPC recommendation server.
 *
 * ```js
 * import { TemporecClient } from "temporec-client";
 *
 * const client = new TemporecClient("localhost:50051");
 * const { items } = await client.recommend("video", { history: ["1", "50"], k: 5 });
 * client.close();
 * ```
 *
 * `v1` holds the generated messages and the raw @grpc/grpc-js `RecommenderClient`.
 */

export * from "./client.js";
export * as v1 from "./gen/temporec/v1/recommender.js";
export { status } from "@grpc/grpc-js";
