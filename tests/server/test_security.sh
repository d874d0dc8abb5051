#!/usr/bin/env bash
# Security defaults (tests/server/security.test.mjs): bind, API key, CORS, body/header limits,
# slow and idle clients. Uses node only (no npm packages).
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export LFMD_BIN=${LFMD_BIN:-$src/build/src/lfmd}
cd "$src/tests/server"
timeout 150 node security.test.mjs
