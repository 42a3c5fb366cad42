// A live temporec server for the tests: the one at TEMPOREC_TEST_SERVER (host:port; the
// CI script starts one), or else scripts/serve_test_model.py run with the server's Python
// (TEMPOREC_SERVER_PYTHON, default the repository's .venv), which trains a small real
// model and serves it on a free loopback port.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const repo = resolve(import.meta.dirname, "..", "..", "..");

/** Why no server can be had, or null when one can. */
export function missingServer() {
  if (process.env.TEMPOREC_TEST_SERVER) return null;
  const python = serverPython();
  if (existsSync(python)) return null;
  return `no server: set TEMPOREC_TEST_SERVER=host:port, or TEMPOREC_SERVER_PYTHON to a Python with temporec (${python} is absent)`;
}

/** { target, stop() } of a running server. */
export async function startServer() {
  if (process.env.TEMPOREC_TEST_SERVER) return { target: process.env.TEMPOREC_TEST_SERVER, stop: async () => {} };
  const workdir = mkdtempSync(join(tmpdir(), "temporec-node-test-"));
  const script = join(repo, "scripts", "serve_test_model.py");
  const child = spawn(serverPython(), [script, "--workdir", workdir], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((done) => child.once("exit", done));
  const target = await new Promise((done, fail) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = /serving on (\S+)/.exec(line);
      if (match) done(match[1]);
    });
    exited.then((code) => fail(new Error(`the test server exited (code ${code}) before serving: ${script}`)));
  });
  return {
    target,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function serverPython() {
  return process.env.TEMPOREC_SERVER_PYTHON ?? join(repo, ".venv", "bin", "python");
}
