#!/bin/sh
# dev-setup.sh - run by `make run` before starting the suite with
# conf/dev.conf. As root: creates the `postern` user when missing and
# prepares run/ (spool parent) and run/mail (owned by postern, so delivery
# running as postern can create Maildirs). As a normal user it only creates
# the directories: every process then runs as the invoking user.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
USER_NAME=postern

mkdir -p "$ROOT/run" "$ROOT/run/mail"
[ "$(id -u)" = 0 ] || exit 0

if ! getent passwd "$USER_NAME" >/dev/null; then
  getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
  useradd --system --no-create-home --shell /usr/sbin/nologin \
    --home-dir /var/spool/postern --gid "$USER_NAME" "$USER_NAME"
  echo "dev-setup: created user $USER_NAME"
fi
chown "$USER_NAME:" "$ROOT/run/mail"

# the daemons run as postern: they must be able to reach run/mail
if command -v runuser >/dev/null && ! runuser -u "$USER_NAME" -- test -x "$ROOT/run/mail"; then
  echo "dev-setup: warning: user $USER_NAME cannot reach $ROOT/run/mail" \
       "(a parent directory lacks o+x); local delivery will fail" >&2
fi
exit 0
