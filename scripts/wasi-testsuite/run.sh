#!/usr/bin/env bash
# Runs the preview-1 tests of WebAssembly/wasi-testsuite through `canon exec`
# and prints one line per test (docs/WASI-TESTSUITE.md says how to get the
# suite and what to expect).
#
# Usage: scripts/wasi-testsuite/run.sh SUITE_GIT_DIR [WORK_DIR]
#
#   SUITE_GIT_DIR  a clone (bare or not) of WebAssembly/wasi-testsuite that
#                  has the branch prod/testsuite-base (its prebuilt tests)
#   WORK_DIR       where the branch is unpacked, outside this repository
#                  (default: /tmp/wasi-testsuite); the JSON report goes to
#                  WORK_DIR/canon-report.json
#
# Environment:
#   CANON   the canon command (default: target/debug/canon of this checkout;
#           build it first with `cargo build --locked`)
#   PYTHON  a Python of at least 3.12, which the suite's runner needs
#           (default: python3)
#
# Nothing from the suite is built: the runner is Python, and the tests are
# the .wasm files the suite's own CI commits to that branch. The runner's
# two PyPI dependencies go into a venv under target/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
suite_git="${1:?usage: run.sh SUITE_GIT_DIR [WORK_DIR]}"
work="${2:-/tmp/wasi-testsuite}"
branch=prod/testsuite-base

if [[ ! -d "$work/test-runner" ]]; then
    mkdir -p "$work"
    git --git-dir="$(git -C "$suite_git" rev-parse --absolute-git-dir)" archive "$branch" \
        run-tests test-runner tests/assemblyscript/testsuite tests/c/testsuite tests/rust/testsuite |
        tar -x -C "$work"
fi

venv="$root/target/wasi-testsuite-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$work/test-runner/requirements/prod.txt"
fi

export CANON="${CANON:-$root/target/debug/canon}"
report="$work/canon-report.json"
# The runner exits 1 when a test fails; the summary below says which.
(cd "$work" && "$venv/bin/python" run-tests --disable-colors \
    -r "$root/scripts/wasi-testsuite/canon_adapter.py" \
    --json-output-location "$report" >/dev/null) || true
python3 "$root/scripts/wasi-testsuite/summary.py" "$report"
