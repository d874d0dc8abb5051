#!/usr/bin/env bash
# Installs what building and testing lfmd needs on Debian 12 / Ubuntu (apt), unless already present.
set -eu
need=0
command -v cmake >/dev/null && command -v cc >/dev/null && command -v pkg-config >/dev/null || need=1
if [ "$need" = 0 ]; then
    pkg-config --exists libpcre2-8 libutf8proc libmicrohttpd || need=1
fi
[ "$need" = 0 ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "lfmd: installing build dependencies with apt-get" >&2
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    build-essential cmake pkg-config libpcre2-dev libutf8proc-dev libmicrohttpd-dev python3 python3-numpy
