#!/bin/bash
# bench/profile.sh [discard|maildir] - where the time goes, per Postern
# process: CPU time (user + system) and context switches per message, for
# N messages (default 3000) from smtp-source at C sessions (default 10),
# 2 KB each, one per connection, after a 300-message warm-up. Counts come
# from /proc (utime+stime, voluntary+involuntary switches of every thread),
# so they hold on a busy machine where throughput does not. Postern alone,
# on PT_PORT (default 10040), in a scratch directory under $BENCH_TMP.
# Needs root (the suite starts as root) and smtp-source (postfix package).
# For system calls per message, run `strace -c -f -p PID` beside it.
set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/postern.sh"
SCEN=${1:-discard}
N=${N:-3000} C=${C:-10}
PT_PORT=${PT_PORT:-10040}
T=$(mktemp -d "${BENCH_TMP:-/var/tmp}/postern-profile.XXXXXX") || die "mktemp failed"
chmod 755 "$T"
bench_settle
pt_setup "$T" "$SCEN" && pt_start "$T" || die "postern does not start"
trap 'pt_stop "$T"; bench_rm "$T"' EXIT
SS=$(command -v smtp-source || echo /usr/sbin/smtp-source)
send() { "$SS" -s "$1" -m "$2" -l 2048 -f a@bench.test -t b@bench.test "127.0.0.1:$PT_PORT"; }
send 10 300                                     # warm-up: caches, recycled files
mp=$(pt_master_pid "$T")
pids="$mp $(descendants "$mp")"
switches() { local s=0 f; for f in /proc/"$1"/task/*/status; do
    s=$((s + $(awk '/ctxt_switches/ { n += $2 } END { print n + 0 }' "$f"))); done; echo "$s"; }
cpu() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
declare -A cs0 cpu0
for p in $pids; do cs0[$p]=$(switches "$p"); cpu0[$p]=$(cpu "$p"); done
stat_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
read -r busy0 idle0 < <(stat_cpu)
t0=$(date +%s.%N)
send "$C" "$N"
t1=$(date +%s.%N)
read -r busy1 idle1 < <(stat_cpu)
hz=$(getconf CLK_TCK)
printf '# %s, %d messages at %d sessions: %.0f accepted/s\n' "$SCEN" "$N" "$C" \
    "$(calc "$N / ($t1 - $t0)")"
# the whole machine over the same window (smtp-source included): what a
# message costs in all, and the CPU time left idle meanwhile
printf '# machine: busy %.0f us/msg, idle %.0f us/msg\n' \
    "$(calc "($busy1 - $busy0) * 1000000 / $hz / $N")" "$(calc "($idle1 - $idle0) * 1000000 / $hz / $N")"
printf '%-10s %8s %12s %14s\n' process pid "CPU us/msg" "switches/msg"
for p in $pids; do
    [ -e /proc/"$p"/stat ] || continue
    d=$(( $(switches "$p") - ${cs0[$p]} ))
    [ "$d" -lt "$((N / 20))" ] && continue      # idle ones (master, other agents)
    printf '%-10s %8s %12.0f %14.1f\n' "$(basename "$(awk '{ print $1 }' /proc/"$p"/cmdline | tr '\0' ' ' | awk '{ print $1 }')")" \
        "$p" "$(calc "($(cpu "$p") - ${cpu0[$p]}) * 1000000 / $hz / $N")" "$(calc "$d / $N")"
done
