#!/usr/bin/env bash
# Ollama API with the official `ollama` npm client (tests/server/ollama.test.mjs).
# Needs `npm install --prefix tests/server` once. LFMD_TEST_MODEL=DIR runs it on a real model.
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export LFMD_BIN=${LFMD_BIN:-$src/build/src/lfmd}
if [ ! -d "$src/tests/server/node_modules/ollama" ]; then
    echo "tests/server: the ollama package is missing; run: npm install --prefix tests/server" >&2
    exit 1
fi
cd "$src/tests/server"
timeout 120 node ollama.test.mjs
