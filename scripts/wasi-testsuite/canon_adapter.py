"""Runtime adapter for WebAssembly/wasi-testsuite that runs tests with `canon exec`.

The suite's runner imports this file as a module and calls the functions
below (the interface its `adapters/*.py` implement). Each test becomes one
`canon exec` command line, built the way the suite's wasmtime adapter builds
`wasmtime run`: `--env K=V` for each variable, `--dir ROOT::/` for the test's
scratch directory, the module, then the test's arguments. canon copies the
directory into memory, so the host copy is never modified.

`--no-sandbox-dirs` is always given: without it canon preopens its own
`/out` and `/tmp` after the `--dir`s, where `wasmtime run` preopens nothing,
so a test run without a directory would find fd 3 open. No test reads an
output tree, so nothing needs `/out`.

Only preview 1 (`wasm32-wasip1`) and the `wasi:cli/command` world are
offered: canon runs core modules against WASI preview 1 and nothing else.

Environment:
  CANON          the canon command (default: `canon`), split like a shell
                 would, e.g. CANON="target/release/canon"
  CANON_TIMEOUT  seconds the runner waits for one test (default: 60; a debug
                 build compiles each module with cranelift unoptimised)

How to run the suite with it: docs/WASI-TESTSUITE.md.
"""

import os
import shlex
import subprocess
from typing import Dict, List, Optional, Tuple

CANON = shlex.split(os.getenv("CANON", "canon"))


def get_name() -> str:
    return "canon"


def get_version() -> str:
    # `canon --version` prints `canon X.Y.Z`.
    result = subprocess.run(CANON[0:1] + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    return result.stdout.split()[1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command"]


def get_timeout_seconds() -> float:
    return float(os.getenv("CANON_TIMEOUT", "60"))


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    del proposals, wasi_world, wasi_version  # only p1 and cli/command are offered
    args, env, root = args_env_root
    argv = CANON + ["exec", "--no-sandbox-dirs"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if root:
        argv += ["--dir", f"{root}::/"]
    # argv[0] is the module path as given, as under `wasmtime run`.
    argv += [test_path, "--"] + args
    return argv
