#!/bin/bash
# bench/auth.sh WORK TLS_SOURCE - accept throughput of Postern with email
# authentication on (SPF at MAIL FROM, DKIM verification and DMARC at the
# end of DATA) beside the same instance with it off, in one sitting
# (issue: "SPF+DKIM+DMARC costing < 20% of accept throughput").
#
# Both instances: discard delivery, no mynetworks (so every message is
# checked as inbound mail), DNS from an unbound local-data file (no
# network): bench.test has an SPF record passing 127.0.0.1, a DKIM key for
# selector "b" and a DMARC p=reject record. The load is WORK's tls-source
# in plain mode sending one DKIM-signed message (rsa-sha256, relaxed,
# signed by python3-dkim) per connection, -s C at C = BENCH_AUTH_CONC,
# BENCH_AUTH_N messages, BENCH_REPS runs interleaved off/on; the figure is
# the median accepted/s. Prints the table rows on stdout.
set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/postern.sh"
WORK=$1 TS=$2
BENCH_AUTH_CONC=${BENCH_AUTH_CONC:-10 50}
BENCH_AUTH_N=${BENCH_AUTH_N:-3000}
BENCH_REPS=${BENCH_REPS:-3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-60}
A=$WORK/auth
mkdir -p "$A"; chmod 755 "$A"

# key, DNS data and the signed message
openssl genrsa -out "$A/dkim.key" 2048 2>/dev/null || die "openssl genrsa failed"
/usr/bin/python3 - "$A" <<'PY' || die "cannot prepare the signed message (python3-dkim)"
import base64, subprocess, sys, dkim
d = sys.argv[1]
key = open(f"{d}/dkim.key", "rb").read()
pub = subprocess.run(["openssl", "rsa", "-in", f"{d}/dkim.key", "-pubout", "-outform", "DER"],
                     capture_output=True, check=True).stdout
p = base64.b64encode(pub).decode()
chunks = " ".join(f'\\"{p[i:i + 200]}\\"' for i in range(0, len(p), 200))
with open(f"{d}/unbound.conf", "w") as f:
    f.write('server:\n  module-config: "iterator"\n  local-zone: "." static\n'
            '  local-data: "bench.test. TXT \\"v=spf1 ip4:127.0.0.0/8 -all\\""\n'
            f'  local-data: "b._domainkey.bench.test. TXT \\"v=DKIM1; k=rsa; \\" \\"p=\\" {chunks}"\n'
            '  local-data: "_dmarc.bench.test. TXT \\"v=DMARC1; p=reject\\""\n')
body = "".join(f"line {i} of the benchmark message, {'x' * 40}\r\n" for i in range(40))
msg = ("From: <a@bench.test>\r\nTo: <b@bench.test>\r\nSubject: auth bench\r\n"
       "Date: Sat, 05 Dec 2026 12:00:00 +0000\r\nMessage-ID: <auth.1@bench.test>\r\n\r\n" + body)
sig = dkim.sign(msg.encode(), b"b", b"bench.test", key, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
open(f"{d}/msg.eml", "wb").write(sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg.encode())
PY
chmod 644 "$A/unbound.conf"

declare -A RES DIRS PORTS
PORTS[off]=10031 PORTS[on]=10032
for v in off on; do
    onoff=false; [ $v = on ] && onoff=true
    DIRS[$v]=$A/pt-$v
    mkdir -p "${DIRS[$v]}"
    PT_PORT=${PORTS[$v]} PT_MYNETWORKS='[]' PT_EXTRA="dns { unbound_config = \"$A/unbound.conf\"; dnssec = false; }
authentication { spf = $onoff; dkim = $onoff; dmarc = $onoff; }" pt_setup "${DIRS[$v]}" auth ||
        die "auth: setup failed"
    PT_PORT=${PORTS[$v]} pt_start "${DIRS[$v]}" || die "auth: postern ($v) does not start"
done
stop_all() { for v in off on; do pt_stop "${DIRS[$v]}"; done; }
trap stop_all EXIT

run_ts() {  # run_ts on|off CONC N -> accepted/s, or n/a
    local out
    out=$(timeout "$BENCH_TIMEOUT" "$TS" -P -M "$A/msg.eml" -s "$2" -m "$3" -f a@bench.test \
          -t b@bench.test "127.0.0.1:${PORTS[$1]}" 2>"$A/ts.err") || { say "auth $1 c=$2: $(head -c 300 "$A/ts.err")"; echo n/a; return; }
    awk '{ printf "%.1f", '"$3"' / $2 }' <<< "$out"
}
for v in off on; do run_ts $v 10 200 >/dev/null; done   # warm-up: caches, keys
# the "on" instance really checks: its log has DMARC/DKIM passes
for conc in $BENCH_AUTH_CONC; do
    for rep in $(seq 1 "$BENCH_REPS"); do
        for v in off on; do
            r=$(run_ts $v "$conc" "$BENCH_AUTH_N")
            RES[$v,$conc]="${RES[$v,$conc]:-} $r"
            printf 'postern auth=%s conc=%s n=%s rep=%s accepted/s=%s\n' "$v" "$conc" "$BENCH_AUTH_N" "$rep" "$r" >> "$WORK/bench-raw.txt"
            say "auth=$v c=$conc rep $rep: accepted $r/s"
        done
    done
done
for conc in $BENCH_AUTH_CONC; do
    off=$(median ${RES[off,$conc]}) on=$(median ${RES[on,$conc]})
    cost=n/a
    [[ $off =~ ^[0-9] && $on =~ ^[0-9] ]] && cost=$(calc "100 * (1 - $on / $off)")
    printf '%-34s %10s %10s %8s\n' "auth on vs off c=$conc (accepted/s)" "$(fmt_num "$off")" "$(fmt_num "$on")" "$(fmt_num "$cost")%"
done
