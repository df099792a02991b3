#!/bin/sh
# dev-setup.sh - run by `make run` before starting the suite with
# conf/dev.conf. As root: creates the `postern` user when missing and
# prepares run/ (spool parent) and run/mail (owned by postern, so delivery
# running as postern can create Maildirs), creates the postdrop group and
# makes libexec/postdrop setgid to it (sendmail by any user). Always: a self-signed TLS
# certificate under run/tls/ and run/auth-users (dev/dev) on first start. As a normal user it only creates
# the directories: every process then runs as the invoking user.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
USER_NAME=postern

mkdir -p "$ROOT/run" "$ROOT/run/mail"

# TLS for the dev listeners: a self-signed certificate, made once. The key
# is 0600 (root's when run as root): smtpd reads it before dropping root.
TLS="$ROOT/run/tls"
if [ ! -s "$TLS/dev.pem" ] || [ ! -s "$TLS/dev.key" ]; then
  mkdir -p "$TLS"
  (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
     -subj "/CN=mx.example.test" -addext "subjectAltName=DNS:mx.example.test,DNS:localhost" \
     -keyout "$TLS/dev.key" -out "$TLS/dev.pem" 2>/dev/null)
  chmod 0644 "$TLS/dev.pem"
  echo "dev-setup: created a self-signed certificate in $TLS"
fi
# AUTH for the submission listeners: user "dev", password "dev" (loopback only)
if [ ! -s "$ROOT/run/auth-users" ]; then
  (umask 077 && printf 'dev:%s\n' "$(openssl passwd -6 dev)" > "$ROOT/run/auth-users")
  echo "dev-setup: created run/auth-users (user dev, password dev)"
fi
[ "$(id -u)" = 0 ] || exit 0

if ! getent passwd "$USER_NAME" >/dev/null; then
  getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
  useradd --system --no-create-home --shell /usr/sbin/nologin \
    --home-dir /var/spool/postern --gid "$USER_NAME" "$USER_NAME"
  echo "dev-setup: created user $USER_NAME"
fi
chown "$USER_NAME:" "$ROOT/run/mail"

# sendmail's helper: group postdrop, and the built libexec/postdrop setgid to it
if ! getent group postdrop >/dev/null; then
  groupadd --system postdrop
  echo "dev-setup: created group postdrop"
fi
for d in "$ROOT/libexec" "$ROOT/san/libexec"; do
  if [ -f "$d/postdrop" ]; then
    chown root:postdrop "$d/postdrop"
    chmod 2755 "$d/postdrop"
  fi
done

# the daemons run as postern: they must be able to reach run/mail
if command -v runuser >/dev/null && ! runuser -u "$USER_NAME" -- test -x "$ROOT/run/mail"; then
  echo "dev-setup: warning: user $USER_NAME cannot reach $ROOT/run/mail" \
       "(a parent directory lacks o+x); local delivery will fail" >&2
fi
exit 0
