#!/bin/sh
# install.sh DESTDIR PREFIX [BUILDDIR] - installs a built Postern tree.
#   bin/postern (+ sendmail, mailq, newaliases links) -> $DESTDIR$PREFIX/bin/
#   libexec/<daemon>                           -> $DESTDIR$PREFIX/libexec/postern/
#   libexec/postdrop (sendmail's helper)       -> the same, root:postdrop 2755
#   man/*.[1578]                               -> $DESTDIR$PREFIX/share/man/manN/
#   conf/postern.conf, conf/rules/*            -> $DESTDIR$PREFIX/etc/postern/ (never replaced)
#   a self-signed tls/mx.pem + mx.key and an empty `users` file there when missing
#   conf/postern.service.in                    -> $DESTDIR$PREFIX/lib/systemd/system/postern.service
# Creates the `postern` system user and group when missing, but only for a
# real install (empty DESTDIR) run as root. The binaries find the config at
# PREFIX/etc/postern/postern.conf only if built with the same PREFIX
# (make passes -DPOSTERN_PREFIX); -c FILE or $POSTERN_CONFIG always work.
set -eu

DESTDIR=${1-}
PREFIX=${2:-/usr/local}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${3:-$SRC}
USER_NAME=postern

case "$PREFIX" in
  /*) ;;
  *) echo "install.sh: PREFIX must be an absolute path (got '$PREFIX')" >&2; exit 2 ;;
esac
[ -x "$BUILD/bin/postern" ] || { echo "install.sh: $BUILD/bin/postern not built (run make)" >&2; exit 1; }

root="$DESTDIR$PREFIX"
install -d -m 0755 "$root/bin" "$root/libexec/postern" "$root/etc/postern"

install -m 0755 "$BUILD/bin/postern" "$root/bin/postern"
for l in sendmail mailq newaliases; do
  ln -sf postern "$root/bin/$l"
done
echo "installed $root/bin/postern (+ sendmail, mailq, newaliases)"

n=0
for f in "$BUILD"/libexec/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  install -m 0755 "$f" "$root/libexec/postern/$(basename "$f")"
  n=$((n + 1))
done
echo "installed $n daemons in $root/libexec/postern/"

for f in "$SRC"/man/*.[1578]; do
  [ -f "$f" ] || continue
  sec=${f##*.}
  install -d -m 0755 "$root/share/man/man$sec"
  install -m 0644 "$f" "$root/share/man/man$sec/$(basename "$f")"
done

etc="$root/etc/postern"
conf="$etc/postern.conf"
if [ -e "$conf" ]; then
  echo "kept existing $conf"
else
  install -m 0644 "$SRC/conf/postern.conf" "$conf"
  echo "installed $conf"
fi
install -d -m 0755 "$etc/rules"
for f in "$SRC"/conf/rules/*; do
  [ -e "$etc/rules/$(basename "$f")" ] || install -m 0644 "$f" "$etc/rules/$(basename "$f")"
done
echo "installed the sample rules in $etc/rules/ (existing files kept)"

# The sample config names tls/mx.pem and tls/mx.key: a self-signed pair for
# this host (like Debian's snakeoil certificate) until a real one replaces it.
install -d -m 0755 "$etc/tls"
if [ ! -e "$etc/tls/mx.pem" ] && [ ! -e "$etc/tls/mx.key" ]; then
  cn=$(hostname -f 2>/dev/null || hostname)
  (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$cn" \
     -addext "subjectAltName=DNS:$cn" -keyout "$etc/tls/mx.key" -out "$etc/tls/mx.pem" \
     2>/dev/null)
  chmod 0644 "$etc/tls/mx.pem"
  echo "made a self-signed certificate for $cn in $etc/tls/ (replace it with a real one)"
fi
# auth.users: read by smtpd; root:postern 0640 so the daemons' user can re-read it
if [ ! -e "$etc/users" ]; then
  (umask 027 && : > "$etc/users")
  echo "created an empty $etc/users (user:crypt-hash lines, e.g. mkpasswd -m yescrypt)"
fi

unit="$root/lib/systemd/system"
install -d -m 0755 "$unit"
sed "s|@PREFIX@|$PREFIX|g" "$SRC/conf/postern.service.in" > "$unit/postern.service"
chmod 0644 "$unit/postern.service"
echo "installed $unit/postern.service"

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then
  # sendmail's setgid helper: its group may search the spool and write maildrop/
  if ! getent group postdrop >/dev/null; then
    groupadd --system postdrop
    echo "created group postdrop"
  fi
  if [ -f "$root/libexec/postern/postdrop" ]; then
    chown root:postdrop "$root/libexec/postern/postdrop"
    chmod 2755 "$root/libexec/postern/postdrop"
    echo "set $root/libexec/postern/postdrop setgid postdrop"
  fi
  if ! getent group "$USER_NAME" >/dev/null; then
    groupadd --system "$USER_NAME"
    echo "created group $USER_NAME"
  fi
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin \
      --home-dir /var/spool/postern --gid "$USER_NAME" "$USER_NAME"
    echo "created user $USER_NAME"
  fi
fi
if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ] && getent group "$USER_NAME" >/dev/null; then
  chgrp "$USER_NAME" "$etc/users" && chmod 0640 "$etc/users"
fi
echo "check the configuration with: $PREFIX/bin/postern -c $PREFIX/etc/postern/postern.conf check"
