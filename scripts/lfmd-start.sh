#!/usr/bin/env bash
# Starts `lfmd serve` with limits sized for this machine: a memory limit of a quarter of RAM
# (at most 4 GiB; override with LFMD_MEMORY_LIMIT), the auto profile, idle trim and unload.
# Usage: scripts/lfmd-start.sh MODEL [extra lfmd serve flags...]
# SPDX-License-Identifier: MIT
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 MODEL [lfmd serve flags...]" >&2
    exit 2
fi
model=$1
shift
bin=${LFMD_BIN:-$(command -v lfmd || echo "$(dirname "$0")/../build/src/lfmd")}
ram_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
limit=$((ram_kb * 1024 / 4))
max=$((4 * 1024 * 1024 * 1024))
[ "$limit" -gt "$max" ] && limit=$max
export LFMD_MEMORY_LIMIT=${LFMD_MEMORY_LIMIT:-$limit}
export LFMD_PROFILE=${LFMD_PROFILE:-auto}
export LFMD_IDLE_TRIM=${LFMD_IDLE_TRIM:-5m}
export LFMD_IDLE_UNLOAD=${LFMD_IDLE_UNLOAD:-10m}
export LFMD_SHUTDOWN_TIMEOUT=${LFMD_SHUTDOWN_TIMEOUT:-30s}
echo "lfmd-start: $bin serve -m $model (memory limit $LFMD_MEMORY_LIMIT bytes)" >&2
exec "$bin" serve -m "$model" "$@"
