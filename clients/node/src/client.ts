/**
 * A promise-based client for the temporec.v1 gRPC API, over @grpc/grpc-js and the code
 * that buf + ts-proto generate from protos/temporec/v1/recommender.proto.
 */

import * as grpc from "@grpc/grpc-js";

import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
  healthCheckResponse_ServingStatusToJSON,
} from "./gen/health/v1/health.js";
import {
  type Component,
  type Contribution,
  CustomerServiceOptions,
  type HandOff,
  type Model,
  NewsOptions,
  type RecommendRequest,
  RecommenderClient,
  RetailOptions,
  type TrackStreamResponse,
} from "./gen/temporec/v1/recommender.js";

/** Every call's deadline unless the client or the call sets another: 10 s. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Encode answers can be large: up to 1024 texts x dim floats. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export type { Component, Contribution, HandOff, Model };

/** TLS material; each part PEM-encoded. Without rootCerts the system's roots are used. */
export interface TlsOptions {
  rootCerts?: Buffer;
  /** The client's key and certificate, for servers that require mutual TLS. */
  privateKey?: Buffer;
  certChain?: Buffer;
}

export interface ClientOptions {
  /** Deadline of each call in milliseconds (default 10 000); null: no deadline. */
  timeoutMs?: number | null;
  /** true: TLS with the system's root certificates; or the TLS material to use. */
  tls?: boolean | TlsOptions;
  /** Channel credentials to use as they are (overrides `tls`). */
  credentials?: grpc.ChannelCredentials;
  /** Bearer token for a server that requires one: sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Metadata sent with every call, e.g. `{ "x-request-id": "..." }`. */
  metadata?: Record<string, string>;
  /** Extra gRPC channel options, e.g. `{ "grpc.keepalive_time_ms": 30000 }`. */
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /** This call's deadline in milliseconds; overrides the client's. null: none. */
  timeoutMs?: number | null;
  /** Metadata for this call, added to the client's. */
  metadata?: Record<string, string>;
  /** Aborting cancels the call; its promise then rejects with code CANCELLED. */
  signal?: AbortSignal;
}

/** One step of a user's history. */
export interface Event {
  /** The item's catalog id; may be empty or unknown to the catalog when `text` is set. */
  itemId?: string;
  /** One of the domain's actions; empty: the domain's default action. */
  action?: string;
  /** When it happened: a Date, or milliseconds since the Unix epoch (Date.now()). */
  timestamp?: Date | number;
  /** The text of an item the catalog does not know, or a chat turn. */
  text?: string;
}

/** One event of one user, for `track`: `eventId` is yours, unique per user, so a retry is stored once. */
export interface TrackedEvent extends Event {
  userId: string;
  eventId: string;
}

/** What `track` stored: new events, retries not stored again, events past the store's retention. */
export interface Tracked {
  stored: number;
  duplicates: number;
  expired: number;
}

/** The typed options of the domains the API has a message for: its fields, in camelCase. */
export interface DomainOptions {
  retail: Partial<RetailOptions>;
  news: Partial<NewsOptions>;
  customer_service: Partial<CustomerServiceOptions>;
}

/** The options `recommend` takes for `domain`: its typed message's fields, else any names. */
export type OptionsFor<D extends string> = D extends keyof DomainOptions ? DomainOptions[D] : Record<string, unknown>;

export interface RecommendOptions<D extends string = string> extends CallOptions {
  /** The user's events, oldest first; a plain string is an item id. Empty: cold start. */
  history?: Array<Event | string>;
  /** How many items (default 10). */
  k?: number;
  /** The temporal head; empty: the domain's default. */
  head?: string;
  /** The encoder the model must have been trained with; empty: any. */
  encoder?: string;
  /** Restrict the answer to these item ids. */
  candidates?: string[];
  /** Allow items of the history to be recommended again. */
  allowRepeats?: boolean;
  /** An opaque user id for the domain's business rules. */
  userId?: string;
  /**
   * The domain's request options by name. For "retail", "news" and "customer_service",
   * the fields of their typed messages in camelCase (e.g. `{ categories: ["shoes"],
   * remindCart: false }`), sent typed; a name the message lacks, or a value of the wrong
   * type, is refused before calling (TypeError); undefined or null leaves one unset. For
   * other domains, the names the domain declares, sent as text.
   */
  options?: OptionsFor<D>;
  /** Weigh the history's events per item (`contributions`), by occlusion. */
  explain?: boolean;
  /** With `explain`: how many of the most recent events to weigh; 0: the server's limit. */
  explainEvents?: number;
}

export interface RecommendedItem {
  itemId: string;
  /** Higher is better; ranks items within one response only. */
  score: number;
  text: string;
  /** With `explain`: the weighed history events, the largest weight first. */
  contributions: Contribution[];
}

export interface Recommendation {
  /** Best first. */
  items: RecommendedItem[];
  itemIds: string[];
  domain: string;
  /** "popularity" on a cold start. */
  head: string;
  encoder: string;
  modelVersion: string;
  coldStart: boolean;
  /** "catalog" or "request" (the candidates). */
  candidateSource: string;
  rulesApplied: string[];
  /** Server time per stage, in the order the stages ran. */
  timingsMs: Record<string, number>;
  /** Set by domains that decide hand-offs (customer_service): `recommended` means hand off to a human. */
  handOff?: HandOff;
  /** Where the history came from: "request", "store" (by `userId`) or "store+request". */
  historySource: string;
  /** The A/B experiment the user is in ("": none; docs/realtime.md), and the arm that served them. */
  experiment: string;
  arm: string;
}

export interface Components {
  encoders: Component[];
  heads: Component[];
  domains: Component[];
  models: Model[];
}

export interface Embeddings {
  encoder: string;
  dim: number;
  /** One L2-normalized vector per text, in order. */
  vectors: number[][];
}

export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** A failed call: `code` is the gRPC status (grpc.status), `details` the server's message. */
export class TemporecError extends Error {
  readonly code: grpc.status;
  /** The status's name, e.g. "NOT_FOUND". */
  readonly codeName: string;
  readonly details: string;
  readonly metadata?: grpc.Metadata;

  constructor(code: grpc.status, details: string, metadata?: grpc.Metadata) {
    const codeName = grpc.status[code] ?? `CODE_${code}`;
    super(`${codeName}: ${details}`);
    this.name = "TemporecError";
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = metadata;
  }
}

type Callback<Res> = (error: grpc.ServiceError | null, response: Res) => void;
type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: Callback<Res>,
) => grpc.ClientUnaryCall;

/**
 * A connection to a temporec server at `target` ("host:port").
 *
 * ```js
 * const client = new TemporecClient("localhost:50051", { timeoutMs: 5000 });
 * const result = await client.recommend("video", { history: ["1", "50"], k: 5 });
 * client.close();
 * ```
 */
export class TemporecClient {
  readonly timeoutMs: number | null;
  private readonly stub: RecommenderClient;
  private readonly healthStub: HealthClient;
  private readonly metadata: Record<string, string>;

  constructor(target: string, options: ClientOptions = {}) {
    const credentials = channelCredentials(options);
    const channelOptions = { "grpc.max_receive_message_length": MAX_RESPONSE_BYTES, ...options.channelOptions };
    this.stub = new RecommenderClient(target, credentials, channelOptions);
    this.healthStub = new HealthClient(target, credentials, { channelOverride: this.stub.getChannel() });
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
    const bearer: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
    this.metadata = { ...options.metadata, ...bearer };
  }

  /** The `k` best next items for `domain` after `history`. */
  async recommend<D extends string>(domain: D, options: RecommendOptions<D> = {}): Promise<Recommendation> {
    const request: RecommendRequest = {
      domain,
      head: options.head ?? "",
      encoder: options.encoder ?? "",
      userId: options.userId ?? "",
      history: (options.history ?? []).map(toEvent),
      candidateItemIds: options.candidates ?? [],
      k: options.k ?? 10,
      allowRepeats: options.allowRepeats ?? false,
      explain: options.explain ?? false,
      explainEvents: options.explainEvents ?? 0,
      pluginOptions: {},
      ...domainOptions(domain, options.options ?? {}),
    };
    const response = await this.call(this.stub.recommend.bind(this.stub), request, options);
    const items = response.items.map(({ itemId, score, text, contributions }) => ({ itemId, score, text, contributions }));
    return {
      items,
      itemIds: items.map((item) => item.itemId),
      domain: response.domain,
      head: response.head,
      encoder: response.encoder,
      modelVersion: response.modelVersion,
      coldStart: response.coldStart,
      candidateSource: response.candidateSource,
      rulesApplied: response.rulesApplied,
      timingsMs: Object.fromEntries(response.timings.map((t) => [t.stage, t.milliseconds])),
      handOff: response.handOff,
      historySource: response.historySource,
      experiment: response.experiment,
      arm: response.arm,
    };
  }

  /** Store `events` in the server's store; safe to retry: an event id is stored once per user. */
  async track(events: TrackedEvent[], options: CallOptions = {}): Promise<Tracked> {
    const { stored, duplicates, expired } = await this.call(
      this.stub.track.bind(this.stub),
      { events: events.map(toTracked) },
      options,
    );
    return { stored: Number(stored), duplicates: Number(duplicates), expired: Number(expired) };
  }

  /** Bulk ingestion: each batch one message of one TrackStream call. */
  async trackStream(batches: Iterable<TrackedEvent[]>, options: CallOptions = {}): Promise<Tracked> {
    const metadata = this.callMetadata(options);
    const response = await new Promise<TrackStreamResponse>((resolve, reject) => {
      const stream = this.stub.trackStream(metadata, this.callOptions(options), (error, answer) => {
        if (error) reject(new TemporecError(error.code, error.details, error.metadata));
        else resolve(answer);
      });
      for (const batch of batches) stream.write({ events: batch.map(toTracked) });
      stream.end();
    });
    const { stored, duplicates, expired } = response;
    return { stored: Number(stored), duplicates: Number(duplicates), expired: Number(expired) };
  }

  /** The events the server's store holds for `userId`, oldest first (the `limit` most recent; 0: all). */
  async getHistory(userId: string, options: CallOptions & { limit?: number } = {}): Promise<TrackedEvent[]> {
    const request = { userId, limit: options.limit ?? 0 };
    const { events } = await this.call(this.stub.getHistory.bind(this.stub), request, options);
    return events.map(({ userId, eventId, itemId, action, timestampMs, text }) => ({
      userId,
      eventId,
      itemId,
      action,
      timestamp: Number(timestampMs),
      text,
    }));
  }

  /** Remove every stored event of `userId`; resolves to how many went. */
  async forgetUser(userId: string, options: CallOptions = {}): Promise<number> {
    const { removed } = await this.call(this.stub.forgetUser.bind(this.stub), { userId }, options);
    return Number(removed);
  }

  /** The installed encoders, heads and domains, and the loaded models. */
  async listComponents(options: CallOptions = {}): Promise<Components> {
    const { encoders, heads, domains, models } = await this.call(this.stub.listComponents.bind(this.stub), {}, options);
    return { encoders, heads, domains, models };
  }

  /**
   * Embed `texts` with `encoder` (default: the server's default encoder), or with the
   * encoder of the loaded model `modelVersion` (its tuned one, if it has one).
   */
  async encode(
    texts: string[],
    options: CallOptions & { encoder?: string; modelVersion?: string } = {},
  ): Promise<Embeddings> {
    const request = { texts, encoder: options.encoder ?? "", modelVersion: options.modelVersion ?? "" };
    const response = await this.call(this.stub.encode.bind(this.stub), request, options);
    return { encoder: response.encoder, dim: response.dim, vectors: response.embeddings.map((e) => e.values) };
  }

  /** The health of the whole server (`service` ""), or of "temporec.v1.Recommender". */
  async health(service = "", options: CallOptions = {}): Promise<HealthStatus> {
    const response = await this.call(this.healthStub.check.bind(this.healthStub), { service }, options);
    if (response.status === HealthCheckResponse_ServingStatus.UNRECOGNIZED) return "UNKNOWN";
    return healthCheckResponse_ServingStatusToJSON(response.status) as HealthStatus;
  }

  /** Close the connection; calls made afterwards fail. */
  close(): void {
    this.stub.close();
  }

  private callMetadata(options: CallOptions): grpc.Metadata {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries({ ...this.metadata, ...options.metadata })) metadata.set(key, value);
    return metadata;
  }

  private callOptions(options: CallOptions): Partial<grpc.CallOptions> {
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : options.timeoutMs;
    return timeoutMs === null ? {} : { deadline: new Date(Date.now() + timeoutMs) };
  }

  private call<Req, Res>(method: Unary<Req, Res>, request: Req, options: CallOptions): Promise<Res> {
    const metadata = this.callMetadata(options);
    const callOptions = this.callOptions(options);
    const { signal } = options;
    return new Promise((resolve, reject) => {
      const cancel = () => call.cancel();
      const call = method(request, metadata, callOptions, (error, response) => {
        signal?.removeEventListener("abort", cancel);
        if (error) reject(new TemporecError(error.code, error.details, error.metadata));
        else resolve(response);
      });
      if (signal?.aborted) cancel();
      else signal?.addEventListener("abort", cancel, { once: true });
    });
  }
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (options.credentials) return options.credentials;
  if (!options.tls) return grpc.credentials.createInsecure();
  const tls = options.tls === true ? {} : options.tls;
  return grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}

type TypedOptions = Pick<RecommendRequest, "retailOptions" | "newsOptions" | "customerServiceOptions">;

/** What a typed option's value must be, and the test of one. */
const KINDS = {
  strings: {
    expected: "an array of strings",
    fits: (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === "string"),
  },
  boolean: { expected: "a boolean", fits: (value: unknown) => typeof value === "boolean" },
  number: {
    expected: "a finite number, not negative", // the server refuses negative and non-finite options too
    fits: (value: unknown) => typeof value === "number" && Number.isFinite(value) && value >= 0,
  },
};
type Kind = keyof typeof KINDS;
/** The kind of each field of a typed options message `T`: tsc checks the table against the generated type. */
type Kinds<T> = { [K in keyof T]-?: KindOf<NonNullable<T[K]>> };
type KindOf<V> = V extends string[] ? "strings" : V extends boolean ? "boolean" : V extends number ? "number" : never;

/** The domains with a typed options message: the kind of each field, and the request field it fills. */
const TYPED_OPTIONS: Record<string, { kinds: Record<string, Kind>; wrap: (options: object) => TypedOptions }> = {
  retail: {
    kinds: {
      categories: "strings",
      excludeItemIds: "strings",
      outOfStock: "strings",
      remindCart: "boolean",
    } satisfies Kinds<RetailOptions>,
    wrap: (o) => ({ retailOptions: RetailOptions.fromPartial(o) }),
  },
  news: {
    kinds: { maxAgeDays: "number" } satisfies Kinds<NewsOptions>,
    wrap: (o) => ({ newsOptions: NewsOptions.fromPartial(o) }),
  },
  customer_service: {
    kinds: { handoffThreshold: "number", excludeItemIds: "strings" } satisfies Kinds<CustomerServiceOptions>,
    wrap: (o) => ({ customerServiceOptions: CustomerServiceOptions.fromPartial(o) }),
  },
};

/** The request fields for `options`: the domain's typed message, or `pluginOptions` as text. */
function domainOptions(domain: string, options: object): Partial<RecommendRequest> {
  const entries = Object.entries(options);
  if (entries.length === 0) return {};
  const typed = TYPED_OPTIONS[domain];
  if (!typed) return { pluginOptions: Object.fromEntries(entries.map(([name, value]) => [name, optionText(value)])) };
  for (const [name, value] of entries) {
    if (!Object.hasOwn(typed.kinds, name)) {
      const allowed = Object.keys(typed.kinds).sort().join(", ");
      throw new TypeError(`options.${name}: domain "${domain}" has no such option; allowed: ${allowed}`);
    }
    checkOption(name, typed.kinds[name], value);
  }
  return typed.wrap(options);
}

/** Refuse a typed option of the wrong type: fromPartial would send "false" as true and "abc" as NaN. */
function checkOption(name: string, kind: Kind, value: unknown): void {
  if (value === undefined || value === null) return; // unset: the domain's default
  const { expected, fits } = KINDS[kind];
  if (!fits(value)) throw new TypeError(`options.${name}: expected ${expected}, got ${shown(value)}`);
}

/** `value` as an error message shows it: strings quoted, arrays with their items. */
function shown(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(shown).join(", ")}]`;
  if (typeof value === "function") return "a function";
  if (typeof value === "object") return "an object";
  return String(value);
}

function optionText(value: unknown): string {
  return Array.isArray(value) ? value.map(String).join(",") : String(value);
}

function toEvent(event: Event | string) {
  if (typeof event === "string") return { itemId: event, action: "", timestampMs: 0, text: "" };
  return {
    itemId: event.itemId ?? "",
    action: event.action ?? "",
    timestampMs: toMillis(event.timestamp),
    text: event.text ?? "",
  };
}

function toTracked(event: TrackedEvent) {
  return { userId: event.userId, eventId: event.eventId, ...toEvent(event) };
}

function toMillis(timestamp: Date | number | undefined): number {
  if (timestamp === undefined) return 0;
  const millis = timestamp instanceof Date ? timestamp.getTime() : timestamp;
  if (!Number.isFinite(millis)) {
    throw new TypeError(`Event.timestamp: expected a valid Date or milliseconds since the epoch, got ${String(timestamp)}`);
  }
  return Math.round(millis);
}
