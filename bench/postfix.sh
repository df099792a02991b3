#!/bin/bash
# bench/postfix.sh - a private Postfix instance for the benchmarks
# (recipe: ../shared/bench-peers/README.md). Never touches /etc/postfix or
# the system's Postfix; everything lives under one root folder R:
#   R/etc (main.cf, master.cf), R/spool, R/data, R/mail (Maildir base), R/maillog
#
#   postfix.sh install                  install the package (unconfigured) if missing
#   postfix.sh setup R discard|maildir|relay|tls  create R and its config
#                                       (tls: discard + smtpd_tls_* with
#                                       $BENCH_TLS_CERT / $BENCH_TLS_KEY)
#   postfix.sh start R                  start it (127.0.0.1:$PF_PORT), wait for the port
#   postfix.sh stop R                   stop it and wait for every process to exit
#   postfix.sh master-pid R             the master's pid (root of all its processes)
#   postfix.sh queue-dirs R             the dirs that hold queued mail
#   postfix.sh maildir-new R            where the maildir scenario delivers
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PF_PORT=${PF_PORT:-10025}
PF_PEERS=${PF_PEERS:-$(cd "$BENCH_DIR/../../shared/bench-peers" 2>/dev/null && pwd)}
PF_USER=${PF_USER:-benchmail}

# Postfix's commands log only to syslog (none here) or its postlog service
# (not running before start), and to stderr only when it is a terminal: run
# them under script(1) so their errors are seen.
pf() {
    if command -v script >/dev/null 2>&1; then
        script -qec "$(printf '%q ' /usr/sbin/postfix "$@")" /dev/null
    else
        /usr/sbin/postfix "$@"
    fi
}

pf_install() {
    # postfix (unconfigured) comes from mk/deps.sh, which `make bench` runs first
    [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] ||
        die "postfix is not installed: run mk/deps.sh (make deps) as root"
    [ -f /etc/postfix/postfix-files ] || die "/etc/postfix/postfix-files missing (broken postfix package?)"
    ensure_user "$PF_USER"
}

pf_setup() {
    local R=$1 scen=$2 transport uid gid
    case "$scen" in
        discard) transport="discard:";;
        maildir) transport="virtual";;
        relay)   transport="discard:";;
        tls)     transport="discard:"
                 [ -f "${BENCH_TLS_CERT:-}" ] && [ -f "${BENCH_TLS_KEY:-}" ] ||
                     die "postfix.sh setup tls: BENCH_TLS_CERT / BENCH_TLS_KEY not set";;
        *) die "postfix.sh setup: unknown scenario $scen";;
    esac
    [ -n "$PF_PEERS" ] && [ -f "$PF_PEERS/main.cf.in" ] ||
        die "bench-peers recipe not found (set PF_PEERS=/path/to/shared/bench-peers)"
    ensure_user "$PF_USER"
    uid=$(id -u "$PF_USER"); gid=$(id -g "$PF_USER")
    mkdir -p "$R/etc" "$R/spool" "$R/data" "$R/mail"
    # Postfix's daemons run as postfix and must reach R/spool and R/data.
    chmod 755 "$R" "$R/etc" "$R/spool"
    chown root:root "$R" "$R/etc" "$R/spool"
    chown postfix "$R/data"; chmod 700 "$R/data"
    chown "$uid:$gid" "$R/mail"; chmod 755 "$R/mail"
    sed -e "s|@PFROOT@|$R|g" -e "s|@MAILDIR_BASE@|$R/mail|g" \
        -e "s|@UID@|$uid|g" -e "s|@GID@|$gid|g" -e "s|@TRANSPORT@|$transport|g" \
        "$PF_PEERS/main.cf.in" > "$R/etc/main.cf"
    sed -e "s|^127\.0\.0\.1:10025 |127.0.0.1:$PF_PORT |" "$PF_PEERS/master.cf" > "$R/etc/master.cf"
    # Deviation from the recipe: Postfix only writes maillog_file under one of
    # maillog_file_prefixes (default /var, /dev/stdout) and refuses to start
    # otherwise ("does not match any prefix in maillog_file_prefixes").
    cat >> "$R/etc/main.cf" <<EOF

# added by bench/postfix.sh
maillog_file_prefixes = /var, /dev/stdout, $R
EOF
    if [ "$scen" = relay ]; then
        # relay.test is relayed (permit_mynetworks) through the recipe's
        # "relay" service (process limit 300, stock
        # relay_destination_concurrency_limit 20) to the sink
        cat >> "$R/etc/main.cf" <<EOF
relay_domains = relay.test
relayhost = [127.0.0.1]:${BENCH_SINK_PORT:-10029}
smtp_tls_security_level = none
EOF
    fi
    if [ "$scen" = tls ]; then
        # STARTTLS offered, same certificate as Postern's; tlsmgr (absent from
        # the recipe's master.cf) as in Debian's stock master.cf: smtpd asks it
        # for PRNG seed and session cache policy.
        cat >> "$R/etc/main.cf" <<EOF
smtpd_tls_cert_file = $BENCH_TLS_CERT
smtpd_tls_key_file = $BENCH_TLS_KEY
smtpd_tls_security_level = may
EOF
        grep -q '^tlsmgr' "$R/etc/master.cf" ||
            echo 'tlsmgr    unix  -       -       n       1000?   1       tlsmgr' >> "$R/etc/master.cf"
    fi
    # check runs post-install create-missing: it creates the queue
    # directories with Postfix's owners and modes. If anything is still off
    # (e.g. a reused root), set-permissions fixes the owners and modes.
    if ! pf -c "$R/etc" check >"$R/check.log" 2>&1; then
        pf -c "$R/etc" set-permissions >>"$R/check.log" 2>&1
        pf -c "$R/etc" check >>"$R/check.log" 2>&1 ||
            { cat "$R/check.log" >&2; die "postfix -c $R/etc check failed"; }
    fi
    grep -q 'warning\|fatal' "$R/check.log" && sed 's/^/  postfix check: /' "$R/check.log" >&2
    return 0
}

pf_master_pid() {
    local f=$1/spool/pid/master.pid
    [ -f "$f" ] || return 1
    local p; p=$(tr -dc 0-9 < "$f")
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

pf_start() {
    local R=$1
    port_listening "$PF_PORT" && die "port $PF_PORT already in use (a stale instance?)"
    pf -c "$R/etc" start >"$R/start.log" 2>&1 ||
        { cat "$R/start.log" >&2; tail -20 "$R/maillog" >&2 2>/dev/null; die "postfix start failed"; }
    wait_port "$PF_PORT" 20 ||
        { tail -20 "$R/maillog" >&2 2>/dev/null; die "postfix does not listen on $PF_PORT"; }
    # let master spawn pickup/qmgr/postlogd
    local i=0
    while [ $i -lt 50 ] && [ "$(descendants "$(pf_master_pid "$R")" | wc -l)" -lt 3 ]; do
        sleep 0.1; i=$((i + 1))
    done
}

pf_stop() {
    local R=$1 mp pids
    mp=$(pf_master_pid "$R") || return 0
    pids=$(descendants "$mp")
    pf -c "$R/etc" stop >/dev/null 2>&1
    if ! wait_gone 20 $pids; then
        pf -c "$R/etc" abort >/dev/null 2>&1
        wait_gone 5 $pids || kill -KILL $pids 2>/dev/null
    fi
    return 0
}

pf_queue_dirs() { local R=$1; echo "$R/spool/incoming $R/spool/active $R/spool/deferred $R/spool/maildrop"; }
pf_maildir_new() { echo "$1/mail/Maildir/new"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}; shift || true
    case "$cmd" in
        install)     pf_install;;
        setup)       pf_setup "$@";;
        start)       pf_start "$@";;
        stop)        pf_stop "$@";;
        master-pid)  pf_master_pid "$@";;
        queue-dirs)  pf_queue_dirs "$@";;
        maildir-new) pf_maildir_new "$@";;
        *) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2;;
    esac
fi
