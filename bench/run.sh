#!/bin/bash
# bench/run.sh - `make bench`: Postern vs a private Postfix, same box, same sitting.
#
#   bench/run.sh [--postfix-only | --postern-only] [--scenario discard|maildir|relay|idle|hold|tls|rules|auth|observe]...
#
# Scenarios (default: all):
#   discard  accept + durable queue + null delivery  (accepted/s, delivered/s)
#   maildir  accept + queue + delivery to one Maildir (accepted/s, delivered/s)
#   relay    accept for the non-local relay.test from 127.0.0.1 (mynetworks)
#            and relay to Postfix's smtp-sink on 127.0.0.1:BENCH_SINK_PORT
#            (PIPELINING on, discards): Postern via delivery.relayhost
#            "[127.0.0.1]:PORT", Postfix via relayhost + relay_domains.
#            e2e = N / time until the MTA's queue is empty (a message leaves
#            the queue only after the sink's 250 to its DATA, so that is
#            end to end; after it the sink's counter must have grown by N,
#            else the run counts as failed).
#            Outbound concurrency: Postern processes.delivery = BENCH_RELAY_PROCS (20:
#            20 smtp agents, one session each at a time); Postfix: the
#            recipe's relay service has process limit "-" =
#            default_process_limit 300 and relay_destination_concurrency_limit
#            = default_destination_concurrency_limit 20 (stock), i.e. at most
#            20 sessions to the sink as well. No TLS towards the sink.
#   idle     Pss growth of the MTA's processes per idle SMTP session (KB)
#   hold     BENCH_HOLD idle sessions on Postern alone
#   tls      discard over STARTTLS, same self-signed certificate for both,
#            load from bench/tls-source.c (accepted/s at BENCH_TLS_CONC)
#   observe  Postern alone: accept+queue (discard) with the metrics endpoint on
#            (scraped every second during the runs) and log.format json, beside
#            both off (text), and metrics alone (text log); all at log level
#            info, so the differences are the cost of the metrics (counting,
#            reports, scrapes) and of JSON lines. Three instances on
#            PT_PORT+2, +3, +5 (endpoints +4, +6), runs interleaved, conc
#            BENCH_OBS_CONC ("10 50").
#   rules    Postern alone: `postern rules bench` (median ns per stage for
#            100-rule sets) and the filter round trip per SMTP stage (µs,
#            one trivial rule per stage vs no rules file)
# Load: smtp-source -s CONC -m N -l 2048, one message per connection (its
# default; BENCH_SMTP_SOURCE_OPTS=-d keeps one connection per session).
#
# Environment: BENCH_N (3000, messages at conc >= 10), BENCH_N1 (500, at
# conc 1), BENCH_CONC ("1 10 50"), BENCH_REPS (3, median reported),
# BENCH_IDLE (200 sessions), BENCH_TIMEOUT (60 s: limit for one smtp-source
# run, and again for the delivery wait after it),
# BENCH_TMP (/var/tmp: must be a real disk, fsync matters), BENCH_KEEP=1
# (keep the work folder), POSTERN_ROOT (tree with bin/ and libexec/),
# PF_PORT (10025), PT_PORT (10026; the rules scenario also uses PT_PORT+1),
# BENCH_TLS_N (1500), BENCH_TLS_CONC ("10 50"), BENCH_LAT_N (2000 sessions
# per instance for the round-trip latency), CC (cc, builds tls-source),
# BENCH_TLS_OPTS (extra tls-source options, e.g. -q: ACK at once, see tls-source.c),
# BENCH_SINK_PORT (10029, the relay scenario's smtp-sink), BENCH_RELAY_PROCS (20),
# SMTP_SINK (/usr/sbin/smtp-sink).
# Results: a table on stdout and in run/bench-results.txt; every single
# measurement in run/bench-raw.txt.
set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"
. "$BENCH_DIR/postfix.sh"
. "$BENCH_DIR/postern.sh"

REPO=$(cd "$BENCH_DIR/.." && pwd)
BENCH_N=${BENCH_N:-3000}
BENCH_N1=${BENCH_N1:-500}
BENCH_CONC=${BENCH_CONC:-1 10 50}
BENCH_REPS=${BENCH_REPS:-3}
BENCH_IDLE=${BENCH_IDLE:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-60}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
BENCH_SMTP_SOURCE_OPTS=${BENCH_SMTP_SOURCE_OPTS:-}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
export BENCH_SINK_PORT=${BENCH_SINK_PORT:-10029} BENCH_RELAY_PROCS=${BENCH_RELAY_PROCS:-20}

DO_PF=1 DO_PT=1 SCENARIOS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --postfix-only) DO_PT=0;;
        --postern-only) DO_PF=0;;
        --scenario) shift; case "${1:-}" in
                        discard|maildir|relay|idle|hold|tls|rules|auth|observe) SCENARIOS="$SCENARIOS $1";;
                        *) die "--scenario discard|maildir|relay|idle|hold|tls|rules|auth|observe";; esac;;
        --scenario=*) set -- "--scenario" "${1#--scenario=}" "${@:2}"; continue;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
        *) die "unknown argument $1 (see --help)";;
    esac
    shift
done
SCENARIOS=${SCENARIOS:-discard maildir relay idle hold tls rules auth observe}
BENCH_OBS_CONC=${BENCH_OBS_CONC:-10 50}
BENCH_HOLD=${BENCH_HOLD:-10000}
BENCH_TLS_N=${BENCH_TLS_N:-1500}
BENCH_TLS_CONC=${BENCH_TLS_CONC:-10 50}
BENCH_LAT_N=${BENCH_LAT_N:-2000}

[ "$(id -u)" = 0 ] || die "run as root (private Postfix/Postern instances need it)"

# ---- preparation -----------------------------------------------------------
pf_install      # smtp-source comes with the postfix package: needed either way
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing"
if [ $DO_PT = 1 ] && ! pt_available; then
    say "no Postern build in $POSTERN_ROOT (bin/postern + libexec/master): Postern columns will be n/a"
    DO_PT=0
fi
[ $DO_PF = 1 ] || [ $DO_PT = 1 ] || die "nothing to benchmark"

mkdir -p "$BENCH_TMP" "$REPO/run"
WORK=$(mktemp -d "$BENCH_TMP/postern-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"
# written to $WORK while running, copied to run/ at the end (run/ may be
# cleaned by others meanwhile)
RAW=$WORK/bench-raw.txt
RESULTS=$WORK/bench-results.txt
: > "$RAW"

# ---- tls: one self-signed certificate per run, and the load generator -------
if [[ " $SCENARIOS " == *" tls "* || " $SCENARIOS " == *" auth "* ]]; then
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mta.bench.test \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >"$WORK/tls/req.log" 2>&1 ||
        { cat "$WORK/tls/req.log" >&2; die "openssl req failed"; }
    chmod 600 "$WORK/tls/key.pem"   # root only: both smtpds read it before dropping privileges
    export BENCH_TLS_CERT=$WORK/tls/cert.pem BENCH_TLS_KEY=$WORK/tls/key.pem
    TLS_SOURCE=$WORK/tls-source
    ${CC:-cc} -O2 -o "$TLS_SOURCE" "$BENCH_DIR/tls-source.c" -lssl -lcrypto -lpthread 2>"$WORK/tls/cc.log" ||
        { cat "$WORK/tls/cc.log" >&2; die "cannot build bench/tls-source.c (needs cc and libssl-dev)"; }
fi

STARTED_PF="" STARTED_PT="" SINK_PID=""
# relay: one smtp-sink for both MTAs (-u: drop to nobody; PIPELINING is on
# by default; backlog 1000; -c: a running "mesg=N" counter on stdout, in
# $WORK/sink.log, which sink_count reads to check that every message of a
# run reached the sink rather than bouncing).
start_sink() {
    [ -x "$SMTP_SINK" ] || die "$SMTP_SINK missing (postfix package)"
    port_listening "$BENCH_SINK_PORT" && die "port $BENCH_SINK_PORT already in use (a stale sink?)"
    "$SMTP_SINK" -c -u nobody "127.0.0.1:$BENCH_SINK_PORT" 1000 >"$WORK/sink.log" 2>&1 &
    SINK_PID=$!
    wait_port "$BENCH_SINK_PORT" 10 "$SINK_PID" || { cat "$WORK/sink.log" >&2; die "smtp-sink does not listen"; }
}
sink_count() {
    tr '\r' '\n' < "$WORK/sink.log" 2>/dev/null | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}
stop_sink() {
    [ -n "$SINK_PID" ] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; SINK_PID=""
}
cleanup() {
    local r
    stop_sink
    for r in $STARTED_PF; do pf_stop "$r"; done
    for r in $STARTED_PT; do pt_stop "$r"; done
    STARTED_PF="" STARTED_PT=""
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $WORK"; else bench_rm "$WORK"; fi
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM

start_mta() {  # start_mta pf|pt SCEN [DIR]: instance in DIR (default $WORK/M-SCEN)
    local m=$1 scen=$2 d=${3:-$WORK/$1-$2}
    if [ "$m" = pf ]; then
        pf_setup "$d" "$scen" && pf_start "$d" || exit 1
        STARTED_PF="$STARTED_PF $d"
    else
        mkdir -p "$d"
        pt_setup "$d" "$scen" && pt_start "$d" || exit 1
        STARTED_PT="$STARTED_PT $d"
    fi
}
stop_mta() {  # stop_mta pf|pt DIR
    if [ "$1" = pf ]; then pf_stop "$2"; STARTED_PF=${STARTED_PF/ $2/}
    else pt_stop "$2"; STARTED_PT=${STARTED_PT/ $2/}; fi
}
port_of()      { [ "$1" = pf ] && echo "$PF_PORT" || echo "$PT_PORT"; }
queue_dirs()   { [ "$1" = pf ] && pf_queue_dirs "$2" || pt_queue_dirs "$2"; }
maildir_new()  { [ "$1" = pf ] && pf_maildir_new "$2" || pt_maildir_new "$2"; }
master_pid()   { [ "$1" = pf ] && pf_master_pid "$2" || pt_master_pid "$2"; }
mta_name()     { [ "$1" = pf ] && echo postfix || echo postern; }

# Remove what a failed run left queued so that the next one starts clean.
purge_queue() {
    local m=$1 d=$2
    if [ "$m" = pf ]; then
        /usr/sbin/postsuper -c "$d/etc" -d ALL >/dev/null 2>&1
    else
        find $(pt_queue_dirs "$d") -type f -delete 2>/dev/null
    fi
}

declare -A RES
add_res() { RES[$1]="${RES[$1]:-} $2"; }

# one_run M DIR SCEN CONC N [REP]: one smtp-source load; records accepted/s
# and delivered/s (both n/a and status 1 when smtp-source or the delivery
# wait fails). Clock starts right before smtp-source; accepted = when it
# exits; delivered = when the queue is empty (discard) or Maildir/new holds
# N files (maildir), as seen by waitq.py polling every 5 ms.
one_run() {
    local m=$1 d=$2 scen=$3 conc=$4 n=$5 rep=${6:-} gate out wpid t0 t1 t2 rc acc del new st rcpt=b@bench.test
    local sink0=0 sunk
    [ "$scen" = relay ] && { rcpt=b@relay.test; sink0=$(sink_count); }
    gate=$WORK/gate; out=$WORK/waitq.out; rm -f "$gate" "$out"
    mkfifo "$gate" || return 1
    new=$(maildir_new "$m" "$d")
    if [ "$scen" = maildir ]; then
        "$PY" "$BENCH_DIR/waitq.py" --after "$gate" count "$BENCH_TIMEOUT" "$new" "$n" > "$out" &
    else
        "$PY" "$BENCH_DIR/waitq.py" --after "$gate" empty "$BENCH_TIMEOUT" $(queue_dirs "$m" "$d") > "$out" &
    fi
    wpid=$!
    t0=$(now)
    if [ "$scen" = tls ]; then
        # stdout: "elapsed S cpu S ok N failed N"; errors on stderr
        timeout "$BENCH_TIMEOUT" "$TLS_SOURCE" ${BENCH_TLS_OPTS:-} -s "$conc" -m "$n" -l 2048 \
            -f a@bench.test -t b@bench.test "127.0.0.1:$(port_of "$m")" >"$WORK/ts.out" 2>"$WORK/ss.err"
    else
        timeout "$BENCH_TIMEOUT" "$SMTP_SOURCE" $BENCH_SMTP_SOURCE_OPTS -s "$conc" -m "$n" -l 2048 \
            -f a@bench.test -t "$rcpt" "127.0.0.1:$(port_of "$m")" >"$WORK/ss.err" 2>&1
    fi
    rc=$?
    t1=$(now)
    # open the gate: waitq.py sleeps in open(FIFO) until now (no polling
    # during the load); timeout: it may have died
    timeout 5 sh -c 'echo > "$1"' sh "$gate"
    acc=$(calc "$n / ($t1 - $t0)") del=n/a st=0
    if [ $rc != 0 ] || [ -s "$WORK/ss.err" ]; then
        [ $rc = 124 ] && echo "timed out after $BENCH_TIMEOUT s" >> "$WORK/ss.err"
        say "$(mta_name "$m") $scen c=$conc: smtp-source exit $rc after $(calc "$t1 - $t0" | cut -d. -f1) s: $(head -c 300 "$WORK/ss.err")"
        if [ $rc != 0 ]; then
            acc=n/a st=1
            kill "$wpid" 2>/dev/null
        fi
    fi
    wait "$wpid" 2>/dev/null
    t2=$(cat "$out" 2>/dev/null)
    if [ $st = 0 ]; then
        case "$t2" in
            [0-9]*) del=$(calc "$n / ($t2 - $t0)");;
            *) say "$(mta_name "$m") $scen c=$conc: delivery wait: $t2"; st=1;;
        esac
    fi
    if [ "$scen" = relay ] && [ $st = 0 ]; then
        # the queue is empty: every message must have reached the sink (its
        # counter may lag the 250 by a moment)
        local i=0
        while sunk=$(( $(sink_count) - sink0 )); [ "$sunk" -lt "$n" ] && [ $i -lt 20 ]; do
            sleep 0.1; i=$((i + 1))
        done
        [ "$sunk" = "$n" ] || { say "$(mta_name "$m") relay c=$conc: the sink got $sunk of $n messages"; st=1; del=n/a; }
    fi
    [ $st = 0 ] || purge_queue "$m" "$d"
    # clean up for the next run: Maildir emptied, queue drained (not timed)
    [ "$scen" = maildir ] && { wait_done empty 30 $(queue_dirs "$m" "$d") >/dev/null || purge_queue "$m" "$d"; }
    # the delivered files are moved aside, not deleted: on ext4 without a
    # journal every inode allocation skips (reading each one) the inodes
    # freed in the last 60 s (360 s while their table block is dirty), so deleting this run's 3000 files would slow
    # the next run's Maildir deliveries, whichever MTA's, by an artifact of
    # the benchmark itself; the trash goes with $WORK at the end
    if [ -d "$new" ]; then
        local trash; trash=$(mktemp -d "$WORK/trash.XXXXXX")
        find "$new" -type f -exec mv -t "$trash" {} + 2>/dev/null
    fi
    if [ -n "$rep" ]; then
        local gen=smtp-source
        if [ "$scen" = tls ]; then
            # the generator's own CPU share: cpu seconds / (wall seconds x cores)
            local gcpu; gcpu=$(awk '{ print $4 }' "$WORK/ts.out" 2>/dev/null)
            gen=tls-source
            if [ -n "$gcpu" ]; then
                add_res "$m,$scen,$conc,gcpu" "$(calc "100 * $gcpu / (($t1 - $t0) * $(nproc))")"
                gen="tls-source cpu=${gcpu}s"
            fi
        fi
        printf '%s %s conc=%s n=%s rep=%s accepted/s=%s delivered/s=%s %s=%.3fs\n' \
            "$(mta_name "$m")" "$scen" "$conc" "$n" "$rep" "$acc" "$del" "$gen" "$(calc "$t1 - $t0")" >> "$RAW"
        add_res "$m,$scen,$conc,acc" "$acc"
        add_res "$m,$scen,$conc,del" "$del"
    fi
    printf '  %-7s %-7s c=%-3s rep %s: accepted %s/s, delivered %s/s\n' "$(mta_name "$m")" "$scen" \
        "$conc" "${rep:-warm-up}" "$(fmt_num "$acc")" "$(fmt_num "$del")" >&2
    return $st
}

# measure M SCEN CONC N [REP]: one_run on the scenario's instance of M; after
# a failure the instance is restarted on a fresh folder, after a second one
# in the same scenario M is given up for the rest of it (keeps the sitting
# short when an MTA wedges).
declare -A FAILS GAVE_UP
measure() {
    local m=$1 scen=$2 conc=$3 n=$4 rep=${5:-}
    if [ -n "${GAVE_UP[$m,$scen]:-}" ]; then
        [ -n "$rep" ] && { add_res "$m,$scen,$conc,acc" n/a; add_res "$m,$scen,$conc,del" n/a; }
        return 1
    fi
    one_run "$m" "${DIR[$m]}" "$scen" "$conc" "$n" "$rep" && return 0
    FAILS[$m,$scen]=$(( ${FAILS[$m,$scen]:-0} + 1 ))
    NOTES="$NOTES
# $(mta_name "$m") $scen c=$conc rep ${rep:-warm-up}: failed (see stderr; its log is kept in run/bench-$(mta_name "$m")-$scen.log)"
    save_log "$m" "$scen"
    if [ "${FAILS[$m,$scen]}" -ge 2 ]; then
        say "$(mta_name "$m") $scen: second failure, giving up on this scenario"
        GAVE_UP[$m,$scen]=1
        NOTES="$NOTES
# $(mta_name "$m") $scen: gave up after the second failure: later runs are n/a"
        return 1
    fi
    say "$(mta_name "$m") $scen: restarting the instance after a failure"
    stop_mta "$m" "${DIR[$m]}"
    DIR[$m]=${DIR[$m]}.r${FAILS[$m,$scen]}
    start_mta "$m" "$scen" "${DIR[$m]}"
    return 1
}
NOTES=""

# save_log M SCEN: keep the instance's log (Postern's stderr, Postfix's maillog)
save_log() {
    local f
    if [ "$1" = pf ]; then f=${DIR[$1]}/maillog; else f=${DIR[$1]}/postern.log; fi
    cat "$f" >> "$WORK/bench-$(mta_name "$1")-$2.log" 2>/dev/null
}

MTAS=""
[ $DO_PF = 1 ] && MTAS="$MTAS pf"
[ $DO_PT = 1 ] && MTAS="$MTAS pt"

bench_settle
T_START=$(now)
for scen in $SCENARIOS; do
    case $scen in idle|hold|rules|auth|observe) continue;; esac
    say "scenario $scen: starting instances"
    [ "$scen" = relay ] && start_sink
    declare -A DIR=()
    for m in $MTAS; do DIR[$m]=$WORK/$m-$scen; start_mta "$m" "$scen" "${DIR[$m]}"; done
    # warm-up (untimed): Postfix spawns its smtpd/cleanup/delivery processes,
    # both fill their caches
    for m in $MTAS; do measure "$m" "$scen" 10 200; done
    concs=$BENCH_CONC; [ "$scen" = tls ] && concs=$BENCH_TLS_CONC
    for conc in $concs; do
        n=$BENCH_N; [ "$conc" = 1 ] && n=$BENCH_N1
        [ "$scen" = tls ] && n=$BENCH_TLS_N
        for rep in $(seq 1 "$BENCH_REPS"); do
            # interleaved, so that drift over the sitting hits both alike
            for m in $MTAS; do measure "$m" "$scen" "$conc" "$n" "$rep"; done
        done
    done
    for m in $MTAS; do stop_mta "$m" "${DIR[$m]}"; done
    [ "$scen" = relay ] && stop_sink
done

# ---- idle sessions: Pss of all the MTA's processes, before and after --------
if [[ " $SCENARIOS " == *" idle "* ]]; then
    for m in $MTAS; do
        # a fresh instance: no processes left over from the load runs
        d=$WORK/$m-idle
        start_mta "$m" discard "$d"
        sleep 2
        mp=$(master_pid "$m" "$d")
        before=$(tree_pss_kb "$mp"); nb=$(descendants "$mp" | wc -l)
        : > "$WORK/idle.out"
        "$PY" "$BENCH_DIR/idle.py" 127.0.0.1 "$(port_of "$m")" "$BENCH_IDLE" > "$WORK/idle.out" 2>&1 &
        ipid=$!
        i=0
        while ! grep -q '^ready' "$WORK/idle.out" && kill -0 "$ipid" 2>/dev/null && [ $i -lt 1200 ]; do
            sleep 0.1; i=$((i + 1))
        done
        read -r _ ok failed why < <(grep '^ready' "$WORK/idle.out") || { ok=0; failed=$BENCH_IDLE; why=$(cat "$WORK/idle.out"); }
        sleep 2
        after=$(tree_pss_kb "$mp"); na=$(descendants "$mp" | wc -l)
        kill -TERM "$ipid" 2>/dev/null; wait "$ipid" 2>/dev/null
        [ "${failed:-0}" != 0 ] && say "$(mta_name "$m") idle: $failed of $BENCH_IDLE sessions failed: $why"
        if [ "${ok:-0}" -gt 0 ]; then kb=$(calc "($after - $before) / $ok"); else kb=n/a; fi
        printf '%s idle sessions=%s failed=%s pss_before=%sKB (%s procs) pss_after=%sKB (%s procs) KB/session=%s\n' \
            "$(mta_name "$m")" "$ok" "$failed" "$before" "$nb" "$after" "$na" "$kb" >> "$RAW"
        printf '  %-7s idle: %s sessions, Pss %s KB (%s procs) -> %s KB (%s procs): %s KB/session\n' \
            "$(mta_name "$m")" "$ok" "$before" "$nb" "$after" "$na" "$(fmt_num "$kb")" >&2
        RES[$m,idle]=$kb
        stop_mta "$m" "$d"
    done
fi

# ---- hold: BENCH_HOLD (10,000) concurrent idle sessions on Postern alone ------
# (a Postfix with one smtpd process per session cannot be run that wide here)
if [[ " $SCENARIOS " == *" hold "* ]] && [[ " $MTAS " == *" pt "* ]]; then
    d=$WORK/pt-hold
    PT_LIMITS="limits { sessions = $((BENCH_HOLD + 2000)); sessions_per_ip = $((BENCH_HOLD + 2000)); }" \
        start_mta pt discard "$d"
    sleep 2
    mp=$(master_pid pt "$d")
    before=$(tree_pss_kb "$mp")
    : > "$WORK/hold.out"
    "$PY" "$BENCH_DIR/idle.py" 127.0.0.1 "$(port_of pt)" "$BENCH_HOLD" > "$WORK/hold.out" 2>&1 &
    ipid=$!
    i=0
    while ! grep -q '^ready' "$WORK/hold.out" && kill -0 "$ipid" 2>/dev/null && [ $i -lt 3000 ]; do
        sleep 0.1; i=$((i + 1))
    done
    read -r _ ok failed why < <(grep '^ready' "$WORK/hold.out") || { ok=0; failed=$BENCH_HOLD; why=$(cat "$WORK/hold.out"); }
    sleep 5
    held=$(ss -Htn state established "( sport = :$(port_of pt) )" | wc -l)
    after=$(tree_pss_kb "$mp")
    kill -TERM "$ipid" 2>/dev/null; wait "$ipid" 2>/dev/null
    if [ "${ok:-0}" -gt 0 ]; then kb=$(calc "($after - $before) / $ok"); else kb=n/a; fi
    printf 'Postern hold sessions=%s failed=%s held_after_5s=%s pss_before=%sKB pss_after=%sKB KB/session=%s %s\n' \
        "$ok" "$failed" "$held" "$before" "$after" "$kb" "$why" >> "$RAW"
    say "Postern hold: $ok of $BENCH_HOLD sessions up, $held still established after 5 s, $(fmt_num "$kb") KB/session"
    RES[pt,hold]="$held/$BENCH_HOLD held, $(fmt_num "$kb") KB/session"
    stop_mta pt "$d"
fi

# ---- rules: rule evaluation cost and the filter round trip (Postern alone) -----
if [[ " $SCENARIOS " == *" rules "* ]] && [[ " $MTAS " == *" pt "* ]]; then
    rd=$WORK/rules; mkdir -p "$rd"; chmod 755 "$rd"
    # (a) in-process: `postern rules bench FILE` times one evaluation of every
    # stage that has rules (median of 31 x 1000); gen-rules.py writes 100
    # rules typical of each pre-queue stage, none deciding; the data stage
    # reads a real queue file.
    "$PY" "$BENCH_DIR/gen-rules.py" policy > "$rd/policy.rules"
    out=$("$POSTERN_ROOT/bin/postern" rules bench "$rd/policy.rules" 2>&1)
    printf 'Postern rules-bench | %s\n' "$(printf '%s' "$out" | tr '\n' ' ')" >> "$RAW"
    for k in connect helo mail rcpt data; do
        line=$(printf '%s\n' "$out" | awk -v st="$k" '$1 == "stage" && $2 == st')
        ns=$(printf '%s\n' "$line" | sed -n 's/.* median *\([0-9]*\) ns.*/\1/p')
        ins=$(printf '%s\n' "$line" | sed -n 's/.* \([0-9]*\) instructions .*/\1/p')
        say "rules bench $k: ${ns:-n/a} ns per stage evaluation (${ins:-?} instructions)"
        [ -n "$ns" ] || NOTES="$NOTES
# rules bench $k failed: $(printf '%s' "$out" | head -c 200)"
        RES[pt,rules,$k]=${ns:-n/a}
        RES[pt,rules,$k,ins]=${ins:-?}
    done
    # (b) the filter round trip: two instances side by side, no rules file
    # (smtpd skips the stages) and one trivial rule at connect/helo/mail/rcpt;
    # latency.py alternates between them (blocks of 50 sessions, conc 1) and
    # prints the median latency per command; the difference is the round trip.
    "$PY" "$BENCH_DIR/gen-rules.py" trivial > "$rd/trivial.rules"
    chmod 644 "$rd"/*.rules
    P0=$PT_PORT P1=$((PT_PORT + 1))
    PT_PORT=$P0 start_mta pt discard "$WORK/pt-rules-none"
    PT_PORT=$P1 PT_RULES=$rd/trivial.rules start_mta pt discard "$WORK/pt-rules-trivial"
    sleep 1
    for rep in $(seq 1 "$BENCH_REPS"); do
        "$PY" "$BENCH_DIR/latency.py" 127.0.0.1 "$BENCH_LAT_N" "$P0" "$P1" > "$rd/lat.out" 2>&1
        while read -r port rest; do
            case "$port" in "$P0") v=none;; "$P1") v=trivial;; *) continue;; esac
            printf 'Postern rules-latency rep=%s policy=%s sessions=%s %s\n' "$rep" "$v" "$BENCH_LAT_N" "$rest" >> "$RAW"
            for kv in $rest; do
                case "$kv" in banner=*|ehlo=*|mail=*|rcpt=*) add_res "pt,lat,$v,${kv%%=*}" "${kv#*=}";; esac
                case "$kv" in failed=0) ;; failed=*) NOTES="$NOTES
# rules latency rep $rep ($v policy): $kv $(printf '%s' "$rest" | sed 's/.*failed=[0-9]* *//')";; esac
            done
        done < "$rd/lat.out"
        grep -qE "^$P1 " "$rd/lat.out" || { say "latency.py: $(head -c 300 "$rd/lat.out")"; NOTES="$NOTES
# rules latency rep $rep: latency.py failed"; }
    done
    PT_PORT=$P0 stop_mta pt "$WORK/pt-rules-none"
    PT_PORT=$P1 stop_mta pt "$WORK/pt-rules-trivial"
    RES[pt,rules]=1
fi

# ---- observe: metrics + JSON logs on, beside off (Postern alone) ---------------
# three instances side by side: off (text log), metrics (text log + the
# endpoint), on (JSON log + the endpoint); runs interleaved
if [[ " $SCENARIOS " == *" observe "* ]] && [[ " $MTAS " == *" pt "* ]]; then
    P_OFF=$((PT_PORT + 2)) P_ON=$((PT_PORT + 3)) P_MET=$((PT_PORT + 4)) P_MO=$((PT_PORT + 5))
    P_MOMET=$((PT_PORT + 6))
    PT_PORT=$P_OFF PT_LOG='log = { level = "info"; format = "text"; }' \
        start_mta pt observe "$WORK/pt-obs-off"
    PT_PORT=$P_MO PT_LOG='log = { level = "info"; format = "text"; }' \
        PT_EXTRA="metrics { address = \"127.0.0.1:$P_MOMET\"; }" start_mta pt observe "$WORK/pt-obs-metrics"
    PT_PORT=$P_ON PT_LOG='log = { level = "info"; format = "json"; }' \
        PT_EXTRA="metrics { address = \"127.0.0.1:$P_MET\"; }" start_mta pt observe "$WORK/pt-obs-on"
    # a Prometheus-like scraper for each endpoint: every second, counts good scrapes
    "$PY" -c 'import sys, time, urllib.request
ok = bad = 0
while True:
    for p in sys.argv[1:]:
        try:
            t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % p, timeout=5).read()
            ok += b"postern_messages_accepted_total" in t
        except Exception:
            bad += 1
    print(ok, bad, flush=True)
    time.sleep(1)' "$P_MET" "$P_MOMET" > "$WORK/scrape.out" 2>&1 &
    SCRAPER=$!
    obs_run() {  # obs_run VARIANT CONC N [REP]
        local port=$P_OFF; [ "$1" = on ] && port=$P_ON; [ "$1" = metrics ] && port=$P_MO
        PT_PORT=$port one_run pt "$WORK/pt-obs-$1" "observe-$1" "$2" "$3" "${4:-}"
    }
    for v in off metrics on; do obs_run "$v" 10 200; done
    for conc in $BENCH_OBS_CONC; do
        for rep in $(seq 1 "$BENCH_REPS"); do
            for v in off metrics on; do obs_run "$v" "$conc" "$BENCH_N" "$rep"; done
        done
    done
    kill "$SCRAPER" 2>/dev/null; wait "$SCRAPER" 2>/dev/null
    RES[pt,observe,scrapes]=$(tail -1 "$WORK/scrape.out")
    printf 'Postern observe scrapes ok/failed: %s\n' "${RES[pt,observe,scrapes]}" >> "$RAW"
    PT_PORT=$P_OFF stop_mta pt "$WORK/pt-obs-off"
    PT_PORT=$P_MO stop_mta pt "$WORK/pt-obs-metrics"
    PT_PORT=$P_ON stop_mta pt "$WORK/pt-obs-on"
    RES[pt,observe]=1
fi

# ---- auth: Postern with SPF+DKIM+DMARC verification on vs off (bench/auth.sh) --
if [[ " $SCENARIOS " == *" auth "* ]] && [ $DO_PT = 1 ]; then
    say "scenario auth: SPF+DKIM+DMARC on vs off"
    "$BENCH_DIR/auth.sh" "$WORK" "$TLS_SOURCE" > "$WORK/auth.rows" ||
        NOTES="$NOTES
# auth scenario failed (see stderr)"
fi

# ---- report ------------------------------------------------------------------
{
    pfv=$(/usr/sbin/postconf -d -h mail_version 2>/dev/null)
    mode="one message per connection (smtp-source default, no -d)"
    [ -n "$BENCH_SMTP_SOURCE_OPTS" ] && mode="smtp-source $BENCH_SMTP_SOURCE_OPTS"
    echo "# Postern vs Postfix ${pfv:-?} -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, spool on $(df -P "$BENCH_TMP" | awk 'NR==2 { print $1 }')"
    echo "# smtp-source -l 2048, N=$BENCH_N (N=$BENCH_N1 at conc 1), $mode; median of $BENCH_REPS"
    echo "# accept = N / smtp-source wall time; e2e = N / time until queue empty (discard, relay) or N files in Maildir/new"
    [[ " $SCENARIOS " == *" relay "* ]] &&
        echo "# relay: to smtp-sink 127.0.0.1:$BENCH_SINK_PORT; postern processes.delivery=$BENCH_RELAY_PROCS, postfix relay_destination_concurrency_limit=20"
    echo "# ratio = postern / postfix (throughput: higher is better; idle KB/session: lower is better)"
    printf '%-18s %5s %10s %10s %8s\n' scenario conc postfix/s postern/s ratio
    for scen in discard maildir relay; do
        [[ " $SCENARIOS " == *" $scen "* ]] || continue
        for metric in acc del; do
            case "$scen,$metric" in
                discard,acc) label="accept+queue";;
                discard,del) label="discard e2e";;
                maildir,acc) label="maildir accept";;
                maildir,del) label="maildir e2e";;
                relay,acc) label="relay accept";;
                relay,del) label="relay e2e";;
            esac
            for conc in $BENCH_CONC; do
                a=$(median ${RES[pf,$scen,$conc,$metric]:-n/a})
                b=$(median ${RES[pt,$scen,$conc,$metric]:-n/a})
                printf '%-18s %5s %10s %10s %8s\n' "$label" "$conc" "$(fmt_num "$a")" "$(fmt_num "$b")" "$(ratio "$a" "$b")"
            done
        done
    done
    if [[ " $SCENARIOS " == *" tls "* ]]; then
        for conc in $BENCH_TLS_CONC; do
            a=$(median ${RES[pf,tls,$conc,acc]:-n/a})
            b=$(median ${RES[pt,tls,$conc,acc]:-n/a})
            printf '%-18s %5s %10s %10s %8s\n' "STARTTLS accept" "$conc" "$(fmt_num "$a")" "$(fmt_num "$b")" "$(ratio "$a" "$b")"
        done
    fi
    if [[ " $SCENARIOS " == *" idle "* ]]; then
        a=${RES[pf,idle]:-n/a}; b=${RES[pt,idle]:-n/a}
        printf '%-18s %5s %10s %10s %8s\n' "idle KB/session" "$BENCH_IDLE" "$(fmt_num "$a")" "$(fmt_num "$b")" "$(ratio "$a" "$b")"
    fi
    [ -n "${RES[pt,hold]:-}" ] && printf '%-18s %5s %10s %21s\n' "sessions held" "$BENCH_HOLD" "n/a" "${RES[pt,hold]}"
    if [[ " $SCENARIOS " == *" tls "* ]]; then
        g=""
        for m in pf pt; do for conc in $BENCH_TLS_CONC; do
            v=$(median ${RES[$m,tls,$conc,gcpu]:-n/a}); g="$g $(mta_name "$m") c=$conc: $(fmt_num "$v")%"
        done; done
        echo "# STARTTLS: bench/tls-source (C, OpenSSL: full TLS handshake per message, one message per"
        echo "#   connection, N=$BENCH_TLS_N, discard delivery, RSA-2048 self-signed certificate for both);"
        echo "#   generator CPU share of the machine (median):$g"
        [ -n "${BENCH_TLS_OPTS:-}" ] && echo "#   tls-source options: $BENCH_TLS_OPTS"
    fi
    if [ -n "${RES[pt,rules]:-}" ]; then
        echo "# Postern rules: \`postern rules bench\` (in-process), median ns per stage evaluation, 100 rules at the stage, none decides"
        printf '%-18s %10s %13s\n' "stage" "ns/stage" "instructions"
        for k in connect helo mail rcpt data; do
            label="$k"
            printf '%-18s %10s %13s\n' "$label" "${RES[pt,rules,$k]:-n/a}" "${RES[pt,rules,$k,ins]:-?}"
        done
        echo "# Postern filter round trip: median latency (µs) per command at conc 1, $BENCH_LAT_N sessions x $BENCH_REPS reps,"
        echo "#   no rules file vs one trivial rule at connect/helo/mail/rcpt; extra = difference (median of reps)"
        printf '%-18s %10s %10s %10s\n' "stage" "no rules" "1 rule" "extra µs"
        for st in banner ehlo mail rcpt; do
            a=$(median ${RES[pt,lat,none,$st]:-n/a}); b=$(median ${RES[pt,lat,trivial,$st]:-n/a})
            case "$a$b" in *n/a*) x=n/a;; *) x=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", b - a }');; esac
            label=$st; [ "$st" = banner ] && label="connect (banner)"
            printf '%-18s %10s %10s %10s\n' "$label" "$a" "$b" "$x"
        done
    fi
    if [ -n "${RES[pt,observe]:-}" ]; then
        echo "# Postern observability cost: accept+queue (discard), log level info in all three:"
        echo "#   off = text log, no metrics; metrics = text log + metrics endpoint; on = JSON log +"
        echo "#   metrics endpoint; both endpoints scraped every second (scrapes ok/failed:"
        echo "#   ${RES[pt,observe,scrapes]:-?}); slower = 1 - x/off of the medians"
        printf '%-18s %5s %9s %9s %9s %9s %9s\n' "scenario" "conc" "off/s" "metrics/s" "slower" "on/s" "slower"
        for conc in $BENCH_OBS_CONC; do
            a=$(median ${RES[pt,observe-off,$conc,acc]:-n/a})
            b=$(median ${RES[pt,observe-metrics,$conc,acc]:-n/a})
            c=$(median ${RES[pt,observe-on,$conc,acc]:-n/a})
            xb=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1f%%", 100 * (1 - b / a); else print "n/a" }')
            xc=$(awk -v a="$a" -v b="$c" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1f%%", 100 * (1 - b / a); else print "n/a" }')
            printf '%-18s %5s %9s %9s %9s %9s %9s\n' "observe accept" "$conc" "$(fmt_num "$a")" \
                "$(fmt_num "$b")" "$xb" "$(fmt_num "$c")" "$xc"
        done
    fi
    if [ -s "$WORK/auth.rows" ]; then
        echo "# Postern email authentication: accepted/s with SPF (MAIL FROM), DKIM verification and DMARC"
        echo "#   (end of DATA) on vs off; one DKIM-signed message per connection (bench/auth.sh), DNS from"
        echo "#   unbound local-data; cost = 1 - on/off (target < 20%)"
        printf '%-34s %10s %10s %8s\n' "auth" "off/s" "on/s" "cost"
        cat "$WORK/auth.rows"
    fi
    [ -n "$NOTES" ] && echo "# problems:$NOTES"
    echo "# total bench time $(calc "$(now) - $T_START" | cut -d. -f1) s; raw runs: run/bench-raw.txt"
} > "$RESULTS"
mkdir -p "$REPO/run"
cp "$RESULTS" "$REPO/run/bench-results.txt"
cp "$RAW" "$REPO/run/bench-raw.txt"
rm -f "$REPO"/run/bench-postfix-*.log "$REPO"/run/bench-postern-*.log
for f in "$WORK"/bench-*-*.log; do [ -f "$f" ] && cp "$f" "$REPO/run/"; done
cat "$RESULTS"
