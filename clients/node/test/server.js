// Live temporec servers for the tests, run with the server's Python (TEMPOREC_SERVER_PYTHON,
// default the repository's .venv):
//   - startServer: the one at TEMPOREC_TEST_SERVER (host:port; the CI script starts one), or
//     else scripts/serve_test_model.py, which trains a small real video model and serves it
//     on a free loopback port;
//   - startCustomerServiceServer: a small real customer_service model, trained here with
//     `temporec train` on a few generated conversations, served on a free loopback port.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const repo = resolve(import.meta.dirname, "..", "..", "..");

/** The replies of the generated customer-service data, and the requests each one answers. */
export const REPLIES = {
  reset: {
    text: "Reset your password from the sign-in page",
    asks: ["I forgot my password", "cannot log in", "locked out of my account"],
  },
  refund: {
    text: "Refunds reach your card within 5 days",
    asks: ["I want my money back", "where is my refund", "return this order"],
  },
  hours: {
    text: "We are open from 9 to 5 on weekdays",
    asks: ["when do you open", "opening times please", "are you open on sunday"],
  },
  human: { text: "Let me connect you with a colleague", asks: [] },
};

/** Why startServer can have no server, or null when it can. */
export function missingServer() {
  if (process.env.TEMPOREC_TEST_SERVER) return null;
  return missingPython("TEMPOREC_TEST_SERVER=host:port, or ");
}

/** Why no server can be started here (startCustomerServiceServer), or null when one can. */
export function missingPython(alternative = "") {
  const python = serverPython();
  if (existsSync(python)) return null;
  return `no server: set ${alternative}TEMPOREC_SERVER_PYTHON to a Python with temporec (${python} is absent)`;
}

/** { target, stop() } of a running server with a video model; `tokens` (comma separated):
 * the bearer tokens it requires (then it is always started here, never TEMPOREC_TEST_SERVER). */
export async function startServer({ tokens } = {}) {
  if (process.env.TEMPOREC_TEST_SERVER && !tokens) {
    return { target: process.env.TEMPOREC_TEST_SERVER, stop: async () => {} };
  }
  const workdir = mkdtempSync(join(tmpdir(), "temporec-node-test-"));
  const env = tokens ? { ...process.env, TEMPOREC_TOKENS: tokens } : process.env;
  return serve(workdir, [join(repo, "scripts", "serve_test_model.py"), "--workdir", workdir], env);
}

/** { target, stop() } of a server with a customer_service model (lstm head, local encoder). */
export async function startCustomerServiceServer() {
  const workdir = mkdtempSync(join(tmpdir(), "temporec-node-test-cs-"));
  const data = join(workdir, "data");
  writeConversations(data);
  const models = join(workdir, "models");
  const train = [
    "-m", "temporec", "train", "--domain", "customer_service", "--head", "lstm", "--data", data, "--out", models,
    "--cache-dir", join(workdir, "cache"), "--epochs", "2", "--dim", "32", "--max-len", "16", "--device", "cpu",
  ];
  // training's report goes to standard error, with the server's log
  const code = await new Promise((done) => spawn(serverPython(), train, { stdio: ["ignore", 2, 2] }).once("exit", done));
  if (code !== 0) throw new Error(`temporec train exited with code ${code}: ${train.join(" ")}`);
  const args = ["-m", "temporec", "serve", "--host", "127.0.0.1", "--port", "0", "--models", models, "--device", "cpu", "--grace-seconds", "1"];
  return serve(workdir, args);
}

/**
 * The generic conversations layout (temporec.data.faq): replies.csv and conversations.jsonl,
 * each request in every split, after a greeting in every other conversation.
 */
function writeConversations(directory) {
  mkdirSync(directory, { recursive: true });
  const replies = Object.entries(REPLIES).map(([id, { text }]) => `${id},${text}\n`);
  writeFileSync(join(directory, "replies.csv"), `item_id,text\n${replies.join("")}`);
  const lines = [];
  for (const [reply, { asks }] of Object.entries(REPLIES)) {
    asks.forEach((text, n) => {
      const turns = [...(n % 2 ? [{ role: "user", text: "hello" }] : []), { role: "user", text }];
      for (const split of ["train", "valid", "test"]) {
        lines.push(JSON.stringify({ id: `${split}-${reply}-${n}`, turns, replies: [reply], split }));
      }
    });
  }
  writeFileSync(join(directory, "conversations.jsonl"), `${lines.join("\n")}\n`);
}

/** Run the server's Python with `args` until it prints its ready line; stop() ends it and removes `workdir`. */
async function serve(workdir, args, env = process.env) {
  const child = spawn(serverPython(), args, { stdio: ["ignore", "pipe", "inherit"], env });
  const exited = new Promise((done) => child.once("exit", done));
  const target = await new Promise((done, fail) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = /serving on (\S+)/.exec(line);
      if (match) done(match[1]);
    });
    exited.then((code) => fail(new Error(`the test server exited (code ${code}) before serving: ${args.join(" ")}`)));
  });
  return {
    target,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
      rmSync(workdir, { recursive: true, force: true });
    },
  };
}

function serverPython() {
  return process.env.TEMPOREC_SERVER_PYTHON ?? join(repo, ".venv", "bin", "python");
}
