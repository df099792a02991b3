#!/bin/sh
# run.sh [SECONDS] BIN... - run each libFuzzer target for SECONDS (default 20)
# on a copy of its seed corpus t/fuzz/corpus/<name without fuzz_>/ (the repo
# corpus never grows), with -max_len=65536. Prints one summary line per
# target; a crash, leak, timeout or sanitizer report fails the run, and its
# work directory (log + reproducer) is kept and named.
set -u
secs=20
case "${1:-}" in
    ''|*[!0-9]*) ;;
    *) secs=$1; shift ;;
esac
if [ $# -eq 0 ]; then
    echo "usage: $0 [SECONDS] FUZZ_BIN..." >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
failed=0

for bin in "$@"; do
    name=$(basename "$bin")
    short=${name#fuzz_}
    work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$short.XXXXXX") || exit 2
    mkdir -p "$work/corpus"
    if [ -d "$here/corpus/$short" ]; then
        cp -R "$here/corpus/$short/." "$work/corpus/"
    fi
    seeds=$(find "$work/corpus" -type f | wc -l)
    "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1
    rc=$?
    runs=$(sed -n 's/^Done \([0-9][0-9]*\) runs in \([0-9][0-9]*\) second.*/\1/p' "$work/log" | tail -n 1)
    took=$(sed -n 's/^Done \([0-9][0-9]*\) runs in \([0-9][0-9]*\) second.*/\2/p' "$work/log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -n 1 | sed 's/cov: //')
    corp=$(find "$work/corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        echo "ok   $name: ${runs} execs in ${took}s ($(( runs / (took > 0 ? took : 1) ))/s), cov ${cov:-?}, corpus ${seeds} -> ${corp}"
        rm -rf "$work"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $rc after ${runs:-?} execs; log and reproducer kept in $work"
        grep -E 'ERROR|SUMMARY|check failed|runtime error|Test unit written' "$work/log" | head -n 10 | sed 's/^/     /'
    fi
done

[ "$failed" -eq 0 ]
