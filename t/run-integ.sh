#!/bin/sh
# Runs the whole-suite integration tests (t/integ/test_*.py) against the
# binaries under $POSTERN_ROOT (bin/, libexec/). Needs root: the suite is
# started as root and drops to the `postern` user, as in production.
set -e
cd "$(dirname "$0")/.."
: "${POSTERN_ROOT:=$(pwd)}"
export POSTERN_ROOT
if [ "$(id -u)" != 0 ]; then
  echo "integration tests need root (they start the suite as root)" >&2
  exit 1
fi
id postern >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin \
    --home-dir /nonexistent postern
exec /usr/bin/python3 t/integ/runner.py "$@" t/integ/test_*.py
