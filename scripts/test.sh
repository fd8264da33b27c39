#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server (Debian/Ubuntu apt) when it is missing:
# the Redis tests start their own redis-server on free ports and never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server
fi
cargo test --workspace "$@"
