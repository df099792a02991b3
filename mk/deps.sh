#!/bin/sh
# Installs the Debian packages Postern builds and tests with, when missing.
# Used by `make deps`, `make check`, `make run`. (whois: mkpasswd, for the
# AUTH tests' yescrypt/bcrypt hashes.) Needs root to install; as a
# normal user it only reports what is missing.
set -e
PKGS="build-essential pkg-config libevent-dev libssl-dev libcrypt-dev libcmocka-dev
libunbound-dev libpcre2-dev clang libclang-rt-14-dev swaks python3 python3-aiosmtpd
openssl procps psmisc whois"
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
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
