#!/usr/bin/python3
"""depcheck.py [--cache FILE] [--pkgs "p1 p2 ..."] - fail when a program,
Perl or Python module, pkg-config file or runtime the build, the tests or
the README tour load comes from a Debian package outside the dependency
closure of mk/deps.sh's list (no Recommends, no Suggests), plus the
Essential / priority-required base that every Debian system has.

So a package installed by hand (or pulled in by somebody's Recommends) can
never make `make check` green on one machine and red on a fresh one.

What is checked (extend the lists below when the tests start using more):
  - PROGRAMS, plus every program t/integ/*.py starts with subprocess
    (["name", ...]), resolved through PATH and symlinks;
  - PERL_MODULES (what swaks needs for the features the tests use) and every
    file they load (%INC);
  - the Python modules t/integ/*.py import, and every file they load
    (sys.modules), with /usr/bin/python3;
  - the pkg-config files of the Makefile's PKGS and cmocka, libFuzzer.
Each file's owner comes from `dpkg -S`. A file no package owns (e.g. under
/usr/local) fails too. The apt-cache closure is cached (--cache), keyed by
the package list and the dpkg/apt databases' mtimes.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

# Programs the build, tests, dev set-up and README tour run by name.
PROGRAMS = [
    "cc", "make", "ar", "pkg-config",                  # Makefile
    "clang",                                           # make fuzz
    "/usr/bin/python3",                                # t/integ, t/run-integ.sh
    "swaks", "openssl", "mkpasswd",                    # t/integ (TLS, AUTH), dev-setup
    "ps", "pkill", "killall", "timeout", "id",         # t/integ process checks
    "useradd", "groupadd", "getent", "runuser",        # t/run-integ.sh, conf/dev-setup.sh
    "man",                                             # README tour: man -l man/*.5
    "perl",                                            # swaks
    "unshare", "ip", "mount", "unbound", "bash",       # test_dkim: opendkim-testmsg's private DNS
]
# swaks' modules for what the tests use (--tls/--tlsc, --auth PLAIN/LOGIN,
# --pipeline, plain sockets): see `swaks --support`.
PERL_MODULES = ["Net::SSLeay", "MIME::Base64", "Digest::MD5", "IO::Socket", "Time::HiRes",
                "POSIX", "Sys::Hostname"]
EXTRA_PKGCONFIG = ["cmocka", "libcurl", "libmicrohttpd"]   # libcurl: lib/sts (Makefile STS_PKGS); libmicrohttpd: master (MHD_PKGS)
APT_OPTS = ["--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
            "--no-replaces", "--no-enhances"]


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def deps_list():
    r = run([os.path.join(HERE, "deps.sh"), "--list"])
    if r.returncode != 0:
        sys.exit(f"depcheck: mk/deps.sh --list failed: {r.stderr.strip()}")
    return r.stdout.split()


def base_packages():
    """Installed Essential or priority-required packages: a fresh Debian
    system has all of them."""
    r = run(["dpkg-query", "-W", "-f=${Package} ${Essential} ${Priority} ${db:Status-Status}\n"])
    out = []
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[3] == "installed" and (f[1] == "yes" or f[2] == "required"):
            out.append(f[0])
    return out


def db_stamp():
    parts = []
    for p in ("/var/lib/dpkg/status", "/var/cache/apt/pkgcache.bin", "/var/lib/apt/lists"):
        try:
            parts.append(f"{p}:{os.stat(p).st_mtime_ns}")
        except OSError:
            parts.append(f"{p}:-")
    return ";".join(parts)


def bare(name):
    return name.strip().strip("<>").split(":")[0]


def closure(pkgs, cache):
    key = hashlib.sha256((" ".join(sorted(pkgs)) + "|" + db_stamp()).encode()).hexdigest()
    if cache:
        try:
            with open(cache) as f:
                c = json.load(f)
            if c.get("key") == key:
                return set(c["closure"])
        except (OSError, ValueError, KeyError):
            pass
    r = run(["apt-cache", "depends", *APT_OPTS, *sorted(pkgs)])
    if r.returncode != 0 and not r.stdout:
        sys.exit(f"depcheck: apt-cache depends failed: {r.stderr.strip()}")
    # top-level lines name every package (and virtual package) reached
    got = {bare(l) for l in r.stdout.splitlines() if l and not l[0].isspace()}
    got |= set(pkgs)
    if cache:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
            tmp = cache + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"key": key, "closure": sorted(got)}, f)
            os.replace(tmp, cache)
        except OSError:
            pass
    return got


# ---- what the tests load --------------------------------------------------

def test_programs():
    """Programs t/integ/*.py start by name: subprocess.X(["prog", ...])."""
    pat = re.compile(r'subprocess\.(?:run|Popen|call|check_call|check_output)\(\s*\[\s*"([\w.+/-]+)"')
    out = []
    for path in sorted(glob.glob(os.path.join(TOP, "t", "integ", "*.py"))):
        with open(path) as f:
            out += pat.findall(f.read())
    return out


def test_python_modules():
    local = {os.path.splitext(os.path.basename(p))[0]
             for p in glob.glob(os.path.join(TOP, "t", "integ", "*.py"))}
    mods = set()
    for path in glob.glob(os.path.join(TOP, "t", "integ", "*.py")):
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*import\s+([\w., ]+)", line)
                if m:
                    for part in m.group(1).split(","):
                        mods.add(part.strip().split(" ")[0].split(".")[0])
                m = re.match(r"\s*from\s+([\w.]+)\s+import\b", line)
                if m and not m.group(1).startswith("."):
                    mods.add(m.group(1).split(".")[0])
    return sorted(m for m in mods if m and m not in local)


def usrmerge_variants(path):
    out = [path]
    for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib/", "/lib/"),
                 ("/usr/lib64/", "/lib64/")):
        if path.startswith(a):
            out.append(b + path[len(a):])
        elif path.startswith(b):
            out.append(a + path[len(b):])
    return out


def candidates(path):
    out = []
    for p in (path, os.path.realpath(path)):
        for v in usrmerge_variants(p):
            if v not in out:
                out.append(v)
    return out


def collect(items, missing):
    """items: [(label, path)] -> add programs, modules and files."""
    path_env = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    for p in dict.fromkeys(PROGRAMS + test_programs()):
        w = p if p.startswith("/") and os.access(p, os.X_OK) else shutil.which(p, path=path_env)
        if w is None:
            missing.append(f"program {p}")
        else:
            items.append((f"program {p}", w))

    code = ('my @m; for my $m (@ARGV) { eval "require $m; 1" or push @m, $m } '
            'print "MISSING $_\\n" for @m; print "FILE $_ $INC{$_}\\n" for sort keys %INC')
    r = run(["perl", "-e", code, *PERL_MODULES]) if shutil.which("perl") else None
    if r is None:
        missing += [f"perl module {m}" for m in PERL_MODULES]
    else:
        for line in r.stdout.splitlines():
            f = line.split(" ", 2)
            if f[0] == "MISSING":
                missing.append(f"perl module {f[1]}")
            elif f[0] == "FILE" and len(f) == 3 and f[2].startswith("/"):
                if f[1].endswith(".pm"):
                    items.append((f"perl module {f[1][:-3].replace('/', '::')}", f[2]))
                else:
                    items.append(("perl file", f[2]))

    mods = test_python_modules()
    # modules loaded before the imports (site's .pth hooks of whatever is
    # installed) are not the tests' business
    code = ("import importlib, sys\n"
            "before = set(sys.modules)\n"
            "for m in sys.argv[1:]:\n"
            "    try: importlib.import_module(m)\n"
            "    except Exception: print('MISSING', m)\n"
            "for n, m in sorted(sys.modules.items()):\n"
            "    if n in before and n not in sys.argv[1:]: continue\n"
            "    f = getattr(m, '__file__', None)\n"
            "    if f: print('FILE', n, f)\n")
    r = run(["/usr/bin/python3", "-c", code, *mods], cwd="/")
    for line in r.stdout.splitlines():
        f = line.split(" ", 2)
        if f[0] == "MISSING":
            missing.append(f"python3 module {f[1]}")
        elif f[0] == "FILE" and len(f) == 3 and f[2].startswith("/"):
            items.append((f"python3 module {f[1]}", f[2]))

    pkgs = EXTRA_PKGCONFIG[:]
    try:
        with open(os.path.join(TOP, "Makefile")) as f:
            m = re.search(r"^PKGS\s*=\s*(.*)$", f.read(), re.M)
            if m:
                pkgs = m.group(1).split() + pkgs
    except OSError:
        pass
    for p in pkgs:
        r = run(["pkg-config", "--path", p]) if shutil.which("pkg-config") else None
        if r is None or r.returncode != 0 or not r.stdout.strip():
            missing.append(f"pkg-config {p}")
        else:
            items.append((f"pkg-config {p}", r.stdout.strip()))

    if shutil.which("clang"):
        r = run(["clang", "--print-runtime-dir"])
        lib = os.path.join(r.stdout.strip(), f"libclang_rt.fuzzer-{os.uname().machine}.a")
        if os.path.exists(lib):
            items.append(("libFuzzer runtime", lib))
        else:
            missing.append("libFuzzer runtime (libclang_rt.fuzzer)")


def owners(paths):
    """path -> set of packages, via one dpkg -S call."""
    r = run(["dpkg", "-S", *paths])
    own = {}
    for line in r.stdout.splitlines():
        if line.startswith("diversion ") or ": " not in line:
            continue
        pk, path = line.split(": ", 1)
        own.setdefault(path, set()).update(bare(p) for p in pk.split(","))
    return own


def outside_of(items, cand, own, clo):
    """-> ({package: [labels]} outside clo, [labels of unowned files])"""
    outside, unowned = {}, []
    for label, path in items:
        pk = set()
        for c in cand[path]:
            if c in own:
                pk = own[c]
                break
        if not pk:
            unowned.append(f"{label}: {path}")
        elif not pk & clo:
            for p in sorted(pk):
                outside.setdefault(p, []).append(f"{label} ({path})")
    return outside, unowned


# The check checks itself: without this package in the list, swaks' TLS
# module must be reported (the fresh-machine failure of issue 7).
SELF_TEST = ("libnet-ssleay-perl", "perl module Net::SSLeay")


def main():
    args = sys.argv[1:]
    cache = None
    pkgs = None
    while args:
        a = args.pop(0)
        if a == "--cache" and args:
            cache = args.pop(0)
        elif a == "--pkgs" and args:
            pkgs = args.pop(0).split()      # for testing the check itself
        else:
            sys.exit(__doc__)
    if pkgs is None:
        pkgs = deps_list()
    base = set(base_packages())
    clo = closure(set(pkgs) | base, cache)

    items, missing = [], []
    collect(items, missing)
    cand = {}
    for _, path in items:
        cand[path] = candidates(path)
    own = owners(sorted({c for cs in cand.values() for c in cs}))
    outside, unowned = outside_of(items, cand, own, clo)

    ok = True
    if missing:
        ok = False
        print("depcheck: not installed (name its package in mk/deps.sh):")
        for m in sorted(set(missing)):
            print(f"  {m}")
    if unowned:
        ok = False
        print("depcheck: not from any Debian package (installed by hand?):")
        for u in sorted(set(unowned)):
            print(f"  {u}")
    if outside:
        ok = False
        print("depcheck: from packages outside the closure of mk/deps.sh's list "
              "(without Recommends); add them to PKGS in mk/deps.sh:")
        for p in sorted(outside):
            labels = sorted(set(outside[p]))
            more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
            print(f"  {p}: {'; '.join(labels[:3])}{more}")
    if not ok:
        return 1
    if SELF_TEST[0] in pkgs:
        st_cache = cache + ".self" if cache else None
        clo2 = closure((set(pkgs) - {SELF_TEST[0]}) | base, st_cache)
        out2, _ = outside_of(items, cand, own, clo2)
        if not any(l.startswith(SELF_TEST[1] + " ") for l in out2.get(SELF_TEST[0], [])):
            print(f"depcheck: self-test failed: without {SELF_TEST[0]} in the list, "
                  f"{SELF_TEST[1]} was not reported")
            return 1
    print(f"depcheck: ok ({len(items)} programs, modules and files; "
          f"closure of {len(pkgs)} packages + base: {len(clo)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
