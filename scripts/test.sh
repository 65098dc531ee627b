#!/usr/bin/env bash
# canon's test command: installs what the tests need, then runs them all.
# This is what `.ci/run` calls on a fresh clone, and what a newcomer runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The guests' rebuild test compiles them for wasm32-wasip1.
if command -v rustup >/dev/null; then
    rustup target add wasm32-wasip1 >/dev/null
fi

# Lints are part of the tests: warnings fail.
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
