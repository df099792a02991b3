#!/bin/sh
# Installs the Debian packages Postern builds and tests with, when missing.
# Used by `make deps`, `make check`, `make run`. Needs root to install; as a
# normal user it only reports what is missing. `mk/deps.sh --list` prints
# the list (mk/depcheck.py checks that every program and module the tests
# load comes from a package in its closure).
#
# Packages are installed with --no-install-recommends, exactly as on a fresh
# machine: name every package whose files the build, the tests or the README
# tour use, even when another package only recommends it. One group a line:
#   build:  cc, make, ar (build-essential), pkg-config, the -dev libraries
#           (libcurl4-openssl-dev: the MTA-STS policy fetch over HTTPS, lib/sts/)
#           (libcdb-dev: tinycdb, the compiled local.aliases index)
#           (libidn2-dev: U-labels to A-labels before SPF/DKIM/DMARC, lib/mail/idna.c)
#   fuzz:   clang + libFuzzer (libclang-rt-14-dev)
#   tests:  python3 (/usr/bin/python3), swaks (SMTP client) with
#           libnet-ssleay-perl (swaks --tls/--tlsc: Net::SSLeay, only a
#           Recommends of swaks), openssl (certificates, s_client), whois
#           (mkpasswd: the AUTH tests' yescrypt/bcrypt hashes), procps (ps,
#           pkill), psmisc (killall, fuser), python3-aiosmtpd (SMTP peer),
#           bsd-mailx (mail -s: test_sendmail submits through it, as users do)
#   dns:    dns-root-data (/usr/share/dns/root.key: the DNSSEC root trust anchor),
#           ldnsutils (ldns-keygen/ldns-signzone: t/unit/data/dnssec/make.sh,
#           t/integ/test_dane.py), nsd (test_dane.py's local authoritative
#           server for the signed zone)
#   tour:   man-db (man -l man/*.5)
#   peers:  bsd-mailx (mail -s through our sendmail in the sendmail tests)
#   bench:  postfix (the private Postfix peer of `make bench`, smtp-source,
#           smtp-sink; installed unconfigured: "No configuration", not started)
#   spf:    python3-spf (pyspf: the reference SPF evaluator, and the openspf
#           RFC 7208 test suite in its doc folder), python3-yaml (reads that suite)
#   metrics: libmicrohttpd-dev (master's metrics endpoint: HTTP parsing by a
#           well-kept library, not by hand), python3-prometheus-client (its
#           text-format parser checks the scrape in test_metrics), tmux
#           (drives `postern top` in a terminal for the load-run capture)
#   dkim:   libopendkim-dev (lib/dkim: DKIM verify and sign), opendkim-tools
#           (opendkim-testmsg/opendkim-genkey: the independent verifier and key maker
#           of the tests), python3-dkim (dkimpy: signs and verifies in the tests),
#           python3-authres (parses Authentication-Results in the tests), unbound
#           (a private DNS server on 127.0.0.1:53 inside `unshare -n` for opendkim-testmsg),
#           iproute2 (ip link set lo up in that namespace)
#   dmarc:  libopendmarc-dev (lib/dmarc: DMARC policy and alignment), publicsuffix
#           (the Public Suffix List for organizational domains), python3-authheaders
#           (the reference DMARC evaluator the tests compare with)
set -e
PKGS="build-essential make pkg-config libevent-dev libssl-dev libcrypt-dev libcmocka-dev
libunbound-dev libpcre2-dev libcurl4-openssl-dev libcdb-dev libidn2-dev
dns-root-data ldnsutils
clang libclang-rt-14-dev
python3 python3-aiosmtpd swaks libnet-ssleay-perl openssl whois procps psmisc
man-db nsd bsd-mailx
postfix
python3-spf python3-yaml
libmicrohttpd-dev python3-prometheus-client tmux
libopendkim-dev opendkim-tools python3-dkim python3-authres unbound iproute2
libopendmarc-dev publicsuffix python3-authheaders"
if [ "${1:-}" = "--list" ]; then
  echo $PKGS
  exit 0
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages:$missing (run 'make deps' as root)" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# postfix: no system mailer set up by its postinst (make bench runs private instances)
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
