#!/usr/bin/python3
"""mk/layout.py - the shape of lib/, checked by `make check`.

lib/ is split by concern into folders, lowest first in LAYERS. A file in
lib/F/ may include headers of F and of folders listed before F, never one
after it: so the folders have no include cycle and each can be read (and
tested) knowing only the ones below. Every include of a shared header names
its folder ("mail/qfile.h"), so a file's dependencies are visible at its top.
Run from the repository root; prints every violation, exit 1 if any."""
import os, re, sys

LAYERS = ["util", "metrics", "config", "dns", "dkim", "spf", "dmarc", "tls", "sts", "mail", "local", "daemon", "ipc", "filter", "rules"]
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    rank = {f: i for i, f in enumerate(LAYERS)}
    headers = {}                     # basename -> folder
    bad = []
    for f in sorted(os.listdir("lib")):
        p = os.path.join("lib", f)
        if os.path.isfile(p):
            bad.append("%s: shared code lives in a folder of lib/, not lib/ itself" % p)
        elif f not in rank:
            bad.append("%s: folder not in mk/layout.py LAYERS" % p)
        else:
            for h in os.listdir(p):
                headers[h] = f
    for top, _, names in os.walk("."):
        if top.startswith(("./.git", "./obj", "./san", "./out")):
            continue
        for n in names:
            if not n.endswith((".c", ".h", ".def")):
                continue
            p = os.path.join(top, n)[2:]
            parts = p.split("/")
            own = parts[1] if parts[0] == "lib" and len(parts) == 3 else None
            for m in INC.finditer(open(p, errors="replace").read()):
                inc = m.group(1)
                if "/" not in inc:
                    if inc in headers and headers[inc] != own:
                        bad.append('%s: #include "%s" must name its folder: "%s/%s"'
                                   % (p, inc, headers[inc], inc))
                    continue
                folder = inc.split("/")[0]
                if folder not in rank or own is None:
                    continue
                if rank[folder] > rank[own]:
                    bad.append('%s: lib/%s may not include "%s" (layers, lowest first: %s)'
                               % (p, own, inc, " ".join(LAYERS)))
    for b in bad:
        print(b)
    if bad:
        sys.exit(1)
    print("layout: %d folders, no upward include" % len(LAYERS))


if __name__ == "__main__":
    main()
