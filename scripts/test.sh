#!/usr/bin/env bash
# canon's test command: installs what the tests need, then runs them all.
# This is what `.ci/run` calls on a fresh clone, and what a newcomer runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The guests' rebuild test compiles them for wasm32-wasip1.
if command -v rustup >/dev/null; then
    rustup target add wasm32-wasip1 >/dev/null
fi

# Interop tests: OpenSSH's ssh-keygen makes node keys, Python's
# securesystemslib verifies canon's DSSE envelopes. The hostile suite
# measures canon's peak RSS with GNU time.
packages=()
command -v ssh-keygen >/dev/null || packages+=(openssh-client)
[ -x /usr/bin/time ] || packages+=(time)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
fi
python3 -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt

# Formatting and lints are part of the tests: warnings fail.
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
