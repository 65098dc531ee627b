"""Prints one line per preview-1 test from the wasi-testsuite runner's JSON report.

Usage: python3 summary.py REPORT.json

Each line is `OUTCOME SUITE/TEST`, sorted, followed by the count passed; the
first failure message of a failed test follows it, indented, cut to one line.
Tests the adapter skips (other WASI versions) are left out.
"""

import json
import sys


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        report = json.load(f)
    lines = []
    passed = total = 0
    for suite in report["results"]:
        if "wasm32-wasip1" not in suite["name"]:
            continue
        short = suite["name"].split()[1].lower()  # "WASI Rust tests [...]" -> "rust"
        for test in suite["tests"]:
            if not test["executed"]:
                continue
            total += 1
            ok = test["outcome"] == "pass"
            passed += ok
            line = f"{'pass' if ok else 'FAIL'} {short}/{test['name']}"
            if not ok and test["failures"]:
                first = test["failures"][0]
                first = first["message"] if isinstance(first, dict) else first
                message = " ".join(first.split())
                line += f"\n    {message[:200]}"
            lines.append(line)
    for line in sorted(lines):
        print(line)
    print(f"{passed} of {total} preview-1 tests passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
