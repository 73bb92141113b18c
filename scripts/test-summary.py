#!/usr/bin/env python3
"""Print one closing line for a meson test run: 'N passed, N failed, N skipped'.

Counts TAP subtests where meson recorded them (unit tests) and whole tests
otherwise (integration, fuzz replay). Reads BUILD/meson-logs/testlog.json.
Exit status: 1 if anything failed, else 0.
"""
import json
import re
import sys


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    passed = failed = skipped = 0
    with open("%s/meson-logs/testlog.json" % build) as f:
        for line in f:
            t = json.loads(line)
            result = t.get("result")
            out = t.get("stdout") or ""
            sub = re.findall(r"^# (\d+) passed, (\d+) failed, (\d+) skipped$", out, re.M)
            py = re.findall(r"(\d+) passed(?:, (\d+) failed)?(?:, (\d+) skipped)?", out)
            if sub:
                p, fl, s = (int(x) for x in sub[-1])
            elif t.get("name", "").endswith("integration") and py:
                p, fl, s = (int(x or 0) for x in py[-1])
            else:
                p = int(result == "OK")
                fl = int(result in ("FAIL", "ERROR", "TIMEOUT", "UNEXPECTEDPASS"))
                s = int(result == "SKIP")
            if result in ("FAIL", "ERROR", "TIMEOUT") and fl == 0:
                fl = 1
            passed, failed, skipped = passed + p, failed + fl, skipped + s
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
