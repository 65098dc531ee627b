#!/usr/bin/env bash
# Builds the guest programs in guest/ for wasm32-wasip1 (and the threaded
# ones, listed in $threaded below, for wasm32-wasip1-threads) and copies each
# module to fixtures/<name>.wasm.
#
# The output depends only on the sources, Cargo.lock and the rustc version:
# not on where the checkout lives, on $CARGO_HOME, on the toolchain's path or
# on RUSTFLAGS in the caller's environment. tests/guests.rs rebuilds into a
# temp dir and checks that the bytes equal the committed fixtures.
#
# Environment:
#   GUEST_TARGET_DIR  cargo target dir (default: guest/target)
#   GUEST_OUT_DIR     where the .wasm files go (default: fixtures)
#
# Needs the wasm32-wasip1 and wasm32-wasip1-threads targets:
# `rustup target add wasm32-wasip1 wasm32-wasip1-threads`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
guest_dir="$root/guest"
target_dir="${GUEST_TARGET_DIR:-$guest_dir/target}"
out_dir="${GUEST_OUT_DIR:-$root/fixtures}"
target=wasm32-wasip1
threads_target=wasm32-wasip1-threads
# Workspace members built for $threads_target instead of $target.
threaded=(threads)

die() {
    echo "build-guests: $*" >&2
    exit 1
}

sysroot="$(rustc --print sysroot)" || die "rustc not found"
for t in "$target" "$threads_target"; do
    if [[ ! -d "$sysroot/lib/rustlib/$t" ]]; then
        die "the $t target is not installed for $(rustc --version) (no $sysroot/lib/rustlib/$t); run: rustup target add $t"
    fi
done
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# Flags from the caller's environment would change the output: drop them all.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS CARGO_TARGET_WASM32_WASIP1_THREADS_RUSTFLAGS
# Map every host path that can reach the module (panic locations, std paths)
# to a fixed name, and strip symbol names. The encoded form (0x1f-separated)
# keeps paths with spaces intact, and wins over any other rustflags source.
flags=(
    "--remap-path-prefix=$guest_dir=/guest"
    "--remap-path-prefix=$cargo_home=/cargo-home"
    "--remap-path-prefix=$sysroot=/rust-toolchain"
    "-Cstrip=symbols"
)
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; echo "${flags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
export CARGO_INCREMENTAL=0

echo "build-guests: $(rustc --version), target dir $target_dir" >&2
excludes=()
for name in "${threaded[@]}"; do
    excludes+=(--exclude "$name")
done
cargo build \
    --manifest-path "$guest_dir/Cargo.toml" \
    --release --locked \
    --workspace "${excludes[@]}" \
    --target "$target" \
    --target-dir "$target_dir"
packages=()
for name in "${threaded[@]}"; do
    packages+=(-p "$name")
done
cargo build \
    --manifest-path "$guest_dir/Cargo.toml" \
    --release --locked \
    "${packages[@]}" \
    --target "$threads_target" \
    --target-dir "$target_dir"

# One module per workspace member; a package's binary has its name.
names=()
for manifest in "$guest_dir"/*/Cargo.toml; do
    name="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)"
    [[ -n "$name" ]] || die "no package name in $manifest"
    names+=("$name")
done

# Host paths that must not appear in any module.
leaks=("$root" "$guest_dir" "$target_dir" "$cargo_home" "$sysroot" "$HOME" /work/ /root/ /home/)

mkdir -p "$out_dir"
for name in "${names[@]}"; do
    built_for="$target"
    for t in "${threaded[@]}"; do
        [[ "$name" == "$t" ]] && built_for="$threads_target"
    done
    wasm="$target_dir/$built_for/release/$name.wasm"
    [[ -f "$wasm" ]] || die "cargo did not produce $wasm"
    for leak in "${leaks[@]}"; do
        if LC_ALL=C grep -aqF -- "$leak" "$wasm"; then
            die "$wasm contains the host path $leak"
        fi
    done
    cp "$wasm" "$out_dir/$name.wasm"
    printf '%8d  %s\n' "$(wc -c < "$wasm")" "$out_dir/$name.wasm" >&2
done
