#!/usr/bin/env bash
# The one file to deploy (README, "One file to deploy"): builds the small statically linked
# binary exactly as README says, checks it is static and no larger than its ceiling, then
# runs tests/one_file.rs against it: copied alone into an empty directory, it must serve
# the page built into it, and --www DIR and --no-www must do what they say. CI runs this
# once (.ci/run), so the build cannot rot unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Its own target directory: RUSTFLAGS differ from the ordinary build's, which would
# otherwise be rebuilt from scratch next time. --target keeps crt-static away from build
# scripts and proc macros, which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
  cargo build --profile small --target x86_64-unknown-linux-gnu --bin comet-chat
bin=target/static/x86_64-unknown-linux-gnu/small/comet-chat

# A dynamically linked binary names its loader in a PT_INTERP header; a static one has none.
if readelf -lW "$bin" | grep -q 'INTERP'; then
  echo "small-static: $bin is dynamically linked" >&2
  exit 1
fi

# The issue's goal is 1 MiB, which glibc linked statically cannot reach (a static "hello,
# world" with the same profile is 1.07 MiB; README has the figures). The ceiling is the
# size measured on 2026-12-04 (2,028,368 bytes) plus 5 %, so that growth shows up here
# rather than in a user's download. Raise it on purpose, with the README's figures.
SMALL_BINARY_MAX_BYTES=2129786
size=$(stat -c %s "$bin")
echo "small-static: $bin is $size bytes (ceiling $SMALL_BINARY_MAX_BYTES)"
if [ "$size" -gt "$SMALL_BINARY_MAX_BYTES" ]; then
  echo "small-static: $size bytes is over the ceiling of $SMALL_BINARY_MAX_BYTES" >&2
  exit 1
fi

COMET_CHAT_BIN="$PWD/$bin" cargo test --test one_file
