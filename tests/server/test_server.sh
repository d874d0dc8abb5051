#!/usr/bin/env bash
# Runs the server tests (real binary on 127.0.0.1) with node: OpenAI client, lifecycle, stdio.
# Needs `npm install --prefix tests/server` once (the official openai package).
# LFMD_TEST_MODEL=DIR runs them on a real model instead of the built-in @test model.
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export LFMD_BIN=${LFMD_BIN:-$src/build/src/lfmd}
if [ ! -d "$src/tests/server/node_modules/openai" ]; then
    echo "tests/server: the openai package is missing; run: npm install --prefix tests/server" >&2
    exit 1
fi
cd "$src/tests/server"
rc=0
for t in api lifecycle stdio; do
    echo "== $t" >&2
    timeout 120 node "$t.test.mjs" || rc=1
done
exit $rc
