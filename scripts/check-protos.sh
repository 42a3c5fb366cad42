#!/usr/bin/env bash
# The API contract: `buf lint` on protos/, then `buf breaking` against a git ref.
#
#   bash scripts/check-protos.sh        # against the last release tag (v*), or, until
#                                       # there is one, main's previous commit (HEAD~1)
#   bash scripts/check-protos.sh HEAD   # against any git ref, e.g. your uncommitted changes
#
# buf comes from the npm package @bufbuild/buf, a dev dependency of the Node client
# (npm ci --prefix clients/node); set BUF to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

buf=${BUF:-clients/node/node_modules/.bin/buf}
if [ ! -x "$buf" ]; then
    echo "check-protos: no buf at $buf; run: npm ci --prefix clients/node" >&2
    exit 1
fi

"$buf" lint
echo "buf lint: clean"

against=${1:-}
if [ -z "$against" ]; then
    against=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
fi
if [ -z "$against" ]; then
    against=HEAD~1
    # A shallow clone may lack the parent commit: fetch one more commit of history.
    if ! git rev-parse -q --verify "$against^{commit}" >/dev/null \
        && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
        git fetch -q --deepen=1 origin || true
    fi
fi
if ! git rev-parse -q --verify "$against^{commit}" >/dev/null; then
    echo "buf breaking: skipped, there is no $against to compare with (the first commit, or a" \
        "shallow clone whose history cannot be fetched); clone with more history to check" >&2
    exit 0
fi
if ! git cat-file -e "$against:protos" 2>/dev/null; then
    echo "buf breaking: skipped, $against has no protos/ (no API to break yet)"
    exit 0
fi
commit=$(git rev-parse "$against^{commit}")
"$buf" breaking --against ".git#ref=$commit,subdir=protos"
echo "buf breaking: no breaking change against $against (${commit:0:12})"
