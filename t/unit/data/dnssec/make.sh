#!/bin/sh
# make.sh - regenerates the DNSSEC test zones of t/unit/test_dns.c (run in
# this directory; needs ldnsutils). Two zones signed with ECDSA P-256 keys,
# valid until 2090 (RRSIG times are 32-bit serial numbers: inception to expiry must stay under 68 years): sec.test (a correct signed zone: answers are secure) and
# bad.test (signed, then one A record changed: answers are bogus). anchor.key
# holds both zones' key-signing keys, the trust anchors.
set -e
cd "$(dirname "$0")"
rm -f K*.key K*.private K*.ds *.signed anchor.key
for z in sec.test bad.test; do
    cat > $z.zone <<ZONE
\$ORIGIN $z.
\$TTL 300
@    IN SOA ns.$z. hostmaster.$z. 1 3600 600 86400 300
@    IN NS  ns.$z.
ns   IN A   192.0.2.53
@    IN MX  10 mx.$z.
mx   IN A   192.0.2.25
_25._tcp.mx IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ZONE
    zsk=$(ldns-keygen -a ECDSAP256SHA256 $z)
    ksk=$(ldns-keygen -a ECDSAP256SHA256 -k $z)
    ldns-signzone -n -i 20240101000000 -e 20900101000000 $z.zone $zsk $ksk
    grep -h DNSKEY $ksk.key >> anchor.key
    rm -f $zsk.* $ksk.*
done
# bad.test: a record changed after signing, so its signature no longer matches
sed -i 's/^mx\.bad\.test\.\(.*\)192\.0\.2\.25$/mx.bad.test.\1192.0.2.66/' bad.test.zone.signed
grep -q 192.0.2.66 bad.test.zone.signed
rm -f sec.test.zone bad.test.zone
