#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server, promtool, Chromium with its WebDriver,
# python3 and TypeScript's tsc (Debian/Ubuntu apt) when missing: the Redis tests start their own
# redis-server on free ports, the metrics tests check the exposition with `promtool check
# metrics`, the browser test (tests/browser.rs) drives headless Chromium through chromedriver,
# tests/spec_client.rs runs a Python client written from docs/protocol.md alone, and
# tests/web_types.rs type-checks the browser client's JavaScript with tsc; none ever skips.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found; installing the prometheus package with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq prometheus
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "chromium or chromedriver not found; installing chromium and chromium-driver with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 not found; installing it with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3
fi
if ! command -v tsc >/dev/null 2>&1; then
  echo "tsc not found; installing node-typescript with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq node-typescript
fi
cargo test --workspace "$@"
