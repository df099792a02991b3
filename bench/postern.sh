#!/bin/bash
# bench/postern.sh - a private Postern instance for the benchmarks, on
# 127.0.0.1:$PT_PORT with everything under one folder T:
#   T/postern.conf, T/spool, T/mail/%u/Maildir, T/postern.log (stderr of `run`)
#
#   postern.sh setup T discard|maildir|relay|tls  create T and its config
#                                       (tls: discard + STARTTLS with
#                                       $BENCH_TLS_CERT / $BENCH_TLS_KEY)
#   postern.sh start T                  `$POSTERN_ROOT/bin/postern -c T/postern.conf run &`
#   postern.sh stop T                   SIGTERM the master, wait for every process
#   postern.sh master-pid T             the master's pid
#   postern.sh queue-dirs T / maildir-new T
#
# POSTERN_ROOT: the tree holding bin/postern and libexec/* (default: the repo).
# PT_RULES: a rules file for the instance (rules = "..."; default: none).
# PT_LIMITS: replaces the limits { } block.
# PT_LOG: replaces the log line (default: level warning, text).
# PT_MYNETWORKS: replaces mynetworks (default ["127.0.0.0/8"]).
# PT_EXTRA: more configuration appended (the auth scenario's blocks, the
#   observe scenario's metrics block).
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PT_PORT=${PT_PORT:-10026}
POSTERN_ROOT=${POSTERN_ROOT:-$(cd "$BENCH_DIR/.." && pwd)}
PT_USER=${PT_USER:-postern}

pt_available() {
    [ -x "$POSTERN_ROOT/bin/postern" ] && [ -x "$POSTERN_ROOT/libexec/master" ]
}

pt_setup() {
    local T=$1 scen=$2 local_block tls_block="" rules_line=""
    ensure_user "$PT_USER"
    mkdir -p "$T/mail"
    chmod 755 "$T"
    chown "$PT_USER:" "$T/mail"; chmod 755 "$T/mail"
    case "$scen" in
        relay)   # mail for relay.test (not local) goes to the sink
                 local_block="local { mailbox = \"discard\"; }
delivery { relayhost = \"[127.0.0.1]:${BENCH_SINK_PORT:-10029}\"; tls = \"none\"; }
processes { delivery = ${BENCH_RELAY_PROCS:-20}; }";;
        maildir) local_block="local { mailbox = \"maildir\"; maildir = \"$T/mail/%u/Maildir\"; }";;
        discard|auth|observe) local_block='local { mailbox = "discard"; }';;
        tls)     local_block='local { mailbox = "discard"; }'
                 [ -f "${BENCH_TLS_CERT:-}" ] && [ -f "${BENCH_TLS_KEY:-}" ] ||
                     die "postern.sh setup tls: BENCH_TLS_CERT / BENCH_TLS_KEY not set"
                 # smtpd reads the key as root before dropping privileges
                 tls_block="tls { level = \"may\"; certificate = \"$BENCH_TLS_CERT\"; key = \"$BENCH_TLS_KEY\"; }";;
        *) die "postern.sh setup: unknown scenario $scen";;
    esac
    # limits: like Postfix's process limit raised to 300 in bench-peers, so
    # that 50-way load and 200 idle sessions from 127.0.0.1 are all served.
    local limits=${PT_LIMITS:-'limits { sessions = 10000; sessions_per_ip = 1000; }'}
    local logline=${PT_LOG:-'log      = { level = "warning"; }'}
    [ -n "${PT_RULES:-}" ] && rules_line="rules = \"$PT_RULES\";"
    cat > "$T/postern.conf" <<EOF
# written by bench/postern.sh ($scen scenario)
hostname = "mta.bench.test";
spool    = "$T/spool";
run_dir  = "$T/run";      # pid file, smtpd jail: one per instance
user     = "$PT_USER";
$logline
listen { smtp { address = ["127.0.0.1:$PT_PORT"]; } }
local_domains = ["bench.test"];
mynetworks    = ${PT_MYNETWORKS:-["127.0.0.0/8"]};
$local_block
$limits
$tls_block
$rules_line
${PT_EXTRA:-}
EOF
}

pt_master_pid() {
    local f=$1/master.pid p
    [ -f "$f" ] || return 1
    p=$(cat "$f")
    kill -0 "$p" 2>/dev/null && echo "$p"
}

pt_start() {
    local T=$1 pid
    pt_available || die "no Postern build in $POSTERN_ROOT (bin/postern, libexec/master)"
    port_listening "$PT_PORT" && die "port $PT_PORT already in use (a stale instance?)"
    # `run` execs the master in place, so $! is the master's pid.
    "$POSTERN_ROOT/bin/postern" -c "$T/postern.conf" run </dev/null >>"$T/postern.log" 2>&1 &
    pid=$!
    echo "$pid" > "$T/master.pid"
    if ! wait_port "$PT_PORT" 20 "$pid"; then
        tail -20 "$T/postern.log" >&2
        kill -TERM "$pid" 2>/dev/null
        die "postern does not listen on $PT_PORT"
    fi
}

pt_stop() {
    local T=$1 mp pids
    mp=$(pt_master_pid "$T") || return 0
    pids=$(descendants "$mp")
    kill -TERM "$mp" 2>/dev/null
    if ! wait_gone 20 $pids; then
        say "postern did not stop within 20 s of SIGTERM; killing"
        kill -KILL $pids 2>/dev/null
        wait_gone 5 $pids
    fi
    rm -f "$T/master.pid"
    return 0
}

pt_queue_dirs() { local T=$1; echo "$T/spool/incoming $T/spool/active $T/spool/deferred"; }
pt_maildir_new() { echo "$1/mail/b/Maildir/new"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}; shift || true
    case "$cmd" in
        setup)       pt_setup "$@";;
        start)       pt_start "$@";;
        stop)        pt_stop "$@";;
        master-pid)  pt_master_pid "$@";;
        queue-dirs)  pt_queue_dirs "$@";;
        maildir-new) pt_maildir_new "$@";;
        *) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2;;
    esac
fi
