#!/bin/sh
# sendmail-links.sh PREFIX [ROOT] - make Postern the system's sendmail:
#   ROOT/usr/sbin/sendmail, ROOT/usr/lib/sendmail -> PREFIX/bin/postern
#   ROOT/usr/bin/mailq, ROOT/usr/bin/newaliases   -> PREFIX/bin/postern
# (the one program acts by the name it is called by). ROOT defaults to "/"
# (`make install-sendmail`); tests give a scratch directory.
# A file already there that is not ours is kept: on the real system, when
# a Debian package owns it (postfix, exim4...), dpkg-divert --local --rename
# moves it to NAME.postern-diverted and keeps package upgrades from
# writing it back; otherwise it is renamed NAME.pre-postern. Running the
# script again changes nothing. `sendmail-links.sh --remove PREFIX [ROOT]`
# undoes it (links removed, diversions and renamed files put back).
set -eu

remove=0
if [ "${1:-}" = "--remove" ]; then remove=1; shift; fi
PREFIX=${1:?usage: sendmail-links.sh [--remove] PREFIX [ROOT]}
ROOT=${2:-/}
ROOT=${ROOT%/}
target="$PREFIX/bin/postern"
[ -x "$target" ] || { echo "sendmail-links.sh: $target is not installed" >&2; exit 1; }

# dpkg knows the file (only on the real root, where dpkg's database applies)
packaged() {
  [ -z "$ROOT" ] && command -v dpkg-query >/dev/null 2>&1 && dpkg-query -S "$1" >/dev/null 2>&1
}

link() {
  path="$ROOT$1"
  if [ -L "$path" ] && [ "$(readlink "$path")" = "$target" ]; then
    echo "$path: already Postern"
    return
  fi
  install -d -m 0755 "$(dirname "$path")"
  if [ -e "$path" ] || [ -L "$path" ]; then
    if packaged "$1"; then
      dpkg-divert --local --rename --divert "$1.postern-diverted" --add "$1" >/dev/null
      echo "$path: the packaged file diverted to $1.postern-diverted"
    else
      mv -f "$path" "$path.pre-postern"
      echo "$path: the old one kept as $path.pre-postern"
    fi
  fi
  ln -s "$target" "$path"
  echo "$path -> $target"
}

unlink_one() {
  path="$ROOT$1"
  if [ -L "$path" ] && [ "$(readlink "$path")" = "$target" ]; then
    rm -f "$path"
    echo "$path: removed"
  fi
  if [ -z "$ROOT" ] && command -v dpkg-divert >/dev/null 2>&1 &&
     dpkg-divert --list "$1" | grep -q "postern-diverted"; then
    dpkg-divert --local --rename --remove "$1" >/dev/null
    echo "$path: the packaged file is back"
  elif [ -e "$path.pre-postern" ] || [ -L "$path.pre-postern" ]; then
    mv -f "$path.pre-postern" "$path"
    echo "$path: the old one is back"
  fi
}

for p in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do
  if [ $remove = 1 ]; then unlink_one "$p"; else link "$p"; fi
done
