#!/usr/bin/env bash
# Constrained output, logprobs, prompt arrays and stdio batches on the embedded router model.
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export LFMD_BIN=${LFMD_BIN:-$src/build/src/lfmd}
export LFMD_TEST_MODEL=$src/models/lfm2-router
cd "$src/tests/server"
timeout 120 node constrain_logprobs.test.mjs
