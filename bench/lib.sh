# bench/lib.sh - helpers shared by bench/run.sh, bench/postfix.sh and
# bench/postern.sh. Sourced, never run. Needs bash, awk, ps, ss (or python3).

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
PY=${PY:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

say()  { printf '%s\n' "bench: $*" >&2; }
die()  { printf '%s\n' "bench: error: $*" >&2; exit 1; }

now()  { date +%s.%N; }

# calc EXPR: floating point arithmetic through awk ("3000 / (t1 - t0)").
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

# fmt_rate X: 1 decimal below 100, integer above; "n/a" passes through.
fmt_num() {
    case "$1" in ''|n/a|-) printf '%s' "${1:-n/a}"; return;; esac
    awk -v x="$1" 'BEGIN { if (x < 100) printf "%.1f", x; else printf "%.0f", x }'
}

# ratio A B: B/A formatted "1.23x" (n/a when either is missing or A is 0).
ratio() {
    case "$1$2" in *n/a*|'') printf 'n/a'; return;; esac
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) { printf "n/a"; exit }
        r = b / a; if (r < 0.1) printf "%.2gx", r; else printf "%.2fx", r }'
}

# median V...: the median of the numeric arguments ("n/a" ones are ignored;
# n/a when none is left).
median() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
             if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# port_listening PORT: is something listening on 127.0.0.1:PORT?
port_listening() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
    else
        "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
    fi
}

# wait_port PORT SECS [PID]: wait until PORT accepts; fails early if PID dies.
wait_port() {
    local port=$1 secs=$2 pid=${3:-} i=0
    while ! port_listening "$port"; do
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
        i=$((i + 1)); [ $i -gt $((secs * 20)) ] && return 1
        sleep 0.05
    done
}

# Deleting files skews the next measurement on ext4 without a journal (this
# VM's root): for 60 s after an inode is freed (360 s while its inode-table
# block is still dirty), every inode allocation in that block group skips it
# after looking at it (ialloc.c recently_deleted()). A sitting started right
# after another one's clean-up (or a profile.sh run after the last one's)
# creates its queue and Maildir files more slowly, by an artifact of the
# benchmark: Maildir throughput was seen to drop by a third. bench_rm deletes,
# syncs (so the 60 s rule applies) and stamps the time; bench_settle, before
# anything is measured, waits until BENCH_SETTLE (61) seconds have passed
# since the last stamp (BENCH_SETTLE=0: no wait).
BENCH_STAMP=${BENCH_TMP:-/var/tmp}/.postern-bench-deleted
bench_rm() {
    rm -rf "$@"
    sync
    touch "$BENCH_STAMP" 2>/dev/null
}
bench_settle() {
    [ -f "$BENCH_STAMP" ] || return 0
    local age wait
    age=$(( $(date +%s) - $(stat -c %Y "$BENCH_STAMP" 2>/dev/null || echo 0) ))
    [ "$age" -ge 0 ] || age=0          # a stamp from the future: wait once, not for ever
    wait=$(( ${BENCH_SETTLE:-61} - age ))
    [ "$wait" -gt 0 ] || return 0
    say "waiting ${wait} s: files deleted by the last run are skipped by ext4 for 60 s (bench/README.md)"
    sleep "$wait"
}

# descendants PID: PID and every process below it, one per line.
descendants() {
    ps -eo pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1; alive[$1] = 1 }
        END { if (!(root in alive)) exit
              n = 1; q[1] = root
              for (i = 1; i <= n; i++) { print q[i]
                  m = split(kids[q[i]], k, " ")
                  for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}

# pss_kb PID...: sum of Pss (KB) over the processes (smaps_rollup).
pss_kb() {
    local p total=0 v
    for p in "$@"; do
        v=$(awk '/^Pss:/ { print $2; exit }' "/proc/$p/smaps_rollup" 2>/dev/null) || v=0
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# tree_pss_kb PID: Pss of PID and all its descendants.
tree_pss_kb() { pss_kb $(descendants "$1"); }

# wait_gone SECS PID...: wait until none of the processes exists.
wait_gone() {
    local secs=$1 i=0 p alive; shift
    while :; do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && { alive=1; break; }; done
        [ $alive = 0 ] && return 0
        i=$((i + 1)); [ $i -gt $((secs * 10)) ] && return 1
        sleep 0.1
    done
}

# wait_done [--after FILE] MODE TIMEOUT ARGS...: block until the queue is empty
# (MODE=empty, ARGS = queue dirs) or a directory holds N files (MODE=count,
# ARGS = DIR N); prints the wall-clock time it became true (date +%s.%N
# scale), or exits 1 on timeout. One python process polls every 5 ms, which
# is cheaper and finer than forking find in a shell loop.
wait_done() {
    "$PY" "$BENCH_DIR/waitq.py" "$@"
}

# ensure_user NAME: create a system user (no home, no shell) when missing.
ensure_user() {
    id "$1" >/dev/null 2>&1 && return 0
    useradd --system --no-create-home --shell /usr/sbin/nologin "$1" ||
        die "cannot create user $1"
}
