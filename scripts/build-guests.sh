#!/usr/bin/env bash
# Builds the guest programs in guest/ for wasm32-wasip1 and copies each module
# to fixtures/<name>.wasm.
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
# Needs the wasm32-wasip1 target: `rustup target add wasm32-wasip1`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
guest_dir="$root/guest"
target_dir="${GUEST_TARGET_DIR:-$guest_dir/target}"
out_dir="${GUEST_OUT_DIR:-$root/fixtures}"
target=wasm32-wasip1

die() {
    echo "build-guests: $*" >&2
    exit 1
}

sysroot="$(rustc --print sysroot)" || die "rustc not found"
if [[ ! -d "$sysroot/lib/rustlib/$target" ]]; then
    die "the $target target is not installed for $(rustc --version) (no $sysroot/lib/rustlib/$target); run: rustup target add $target"
fi
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# Flags from the caller's environment would change the output: drop them all.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS
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
cargo build \
    --manifest-path "$guest_dir/Cargo.toml" \
    --release --locked \
    --target "$target" \
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
    wasm="$target_dir/$target/release/$name.wasm"
    [[ -f "$wasm" ]] || die "cargo did not produce $wasm"
    for leak in "${leaks[@]}"; do
        if LC_ALL=C grep -aqF -- "$leak" "$wasm"; then
            die "$wasm contains the host path $leak"
        fi
    done
    cp "$wasm" "$out_dir/$name.wasm"
    printf '%8d  %s\n' "$(wc -c < "$wasm")" "$out_dir/$name.wasm" >&2
done
