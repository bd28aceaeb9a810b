#!/usr/bin/env bash
# Runs every test comet-chat has: the unit and socket tests (cargo test) and the browser
# test (headless Debian Chromium driven by playwright-core). Installs what is missing on a
# fresh Debian machine: Chromium and Node.js through apt-get, playwright-core through npm
# (it never downloads a browser of its own).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "$@"
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} with apt-get"
  apt_install "${missing[@]}"
fi

echo "== cargo test"
cargo test

echo "== browser test (Chromium $(chromium --version 2>/dev/null | awk '{print $2}'))"
cargo build --bin comet-chat
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/browser && node --test --test-reporter=spec)
