#!/usr/bin/env bash
# Short load checks for the default ctest (about 30 s): a burst of 400 mixed requests from 32
# clients with 20 SIGUSR1 under a memory limit, 300 sequential requests for drift, and a 30 s soak;
# the @test model. The full-size runs are scripts/load-test.sh and scripts/soak.sh.
# Env: LFMD_BIN, LFMD_SRC (set by ctest).
# SPDX-License-Identifier: MIT
set -uo pipefail
L="node ${LFMD_SRC:?}/tests/load/load.mjs --bin ${LFMD_BIN:?} --model @test"
fail=0
$L --scenario burst --clients 32 --requests 400 --memory-limit 48M --sigusr1 20 || fail=1
$L --scenario drift --warmup 100 --requests 300 || fail=1
$L --scenario soak --seconds 30 --clients 4 --memory-limit 48M || fail=1
exit $fail
