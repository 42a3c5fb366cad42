#!/usr/bin/env bash
# CI for the API contract and the clients (run by .ci/run after the server's tests):
#   1. buf lint and buf breaking on protos/ (scripts/check-protos.sh)
#   2. the Python client, installed from clients/python into .venv-client, a virtualenv
#      without torch or the server, tested against a live server
#   3. the Node client (clients/node), built from the protos and tested against the same server
# The live server is scripts/serve_test_model.py (a small real model, trained in seconds),
# started with .venv (bash scripts/setup.sh) on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
step() { echo "==> $*"; }

command -v npm >/dev/null || { echo "ci-clients: npm is missing; install Node.js 20+ with npm" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "ci-clients: no .venv; run: bash scripts/setup.sh" >&2; exit 1; }

workdir=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap stop_server EXIT

# The server trains its model while the dependencies install.
step "starting a server with a small real model (video / lstm / local)"
.venv/bin/python scripts/serve_test_model.py --workdir "$workdir" >"$workdir/server.out" 2>"$workdir/server.err" &
server_pid=$!

step "Node client dependencies, buf among them"
npm ci --prefix clients/node --no-audit --no-fund --loglevel=error

step "protos: buf lint, buf breaking"
bash scripts/check-protos.sh

step "Python client in .venv-client (no torch)"
rm -rf .venv-client
"$python" -m venv .venv-client
.venv-client/bin/python -m pip install --quiet --disable-pip-version-check './clients/python[test]'
for heavy in torch transformers temporec; do
    if .venv-client/bin/python -c "import $heavy" 2>/dev/null; then
        echo "ci-clients: installing the client pulled in '$heavy'; it must depend on grpcio and protobuf alone" >&2
        exit 1
    fi
done

for _ in $(seq 1 360); do  # the ready line, 3 minutes at most
    grep -q "serving on" "$workdir/server.out" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
done
target=$(sed -n 's/.*serving on \([^ ]*\).*/\1/p' "$workdir/server.out")
if [ -z "$target" ]; then
    echo "ci-clients: the test server did not start; its output:" >&2
    cat "$workdir/server.out" "$workdir/server.err" >&2
    exit 1
fi
export TEMPOREC_TEST_SERVER=$target
echo "server at $target"

step "Python client tests"
(cd clients/python && ../../.venv-client/bin/pytest -q)

step "Node client: build and tests"
npm run build --prefix clients/node --silent
npm test --prefix clients/node --silent
