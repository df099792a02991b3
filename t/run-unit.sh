#!/bin/sh
# run-unit.sh BIN... - run each cmocka unit test binary, show its outcome,
# and end with "N passed, M failed" counting individual cmocka tests.
# A binary that crashes or exits non-zero without a cmocka summary counts as
# one failed test. Exits non-zero if anything failed.
set -u
CMOCKA_MESSAGE_OUTPUT=stdout
export CMOCKA_MESSAGE_OUTPUT
passed=0
failed=0
tmp=$(mktemp) || exit 2
trap 'rm -f "$tmp"' EXIT INT TERM

for bin in "$@"; do
    name=$(basename "$bin")
    "$bin" >"$tmp" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$tmp" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$tmp" | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1                          # crashed, leaked or died before its summary
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -eq 0 ]; then
        echo "ok   $name: $p passed"
    else
        echo "FAIL $name: $p passed, $f failed (exit $rc)"
        grep -E '^\[  (FAILED|ERROR)|^ERROR|runtime error|Sanitizer' "$tmp" | sed 's/^/     /' | head -n 40
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
