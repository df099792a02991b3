"""SPF test helpers shared by test_spf_suite.py and test_spf_pyspf.py.

Zone data in the openspf suite's form ({name: [{"TXT": ...}, {"A": ...},
"TIMEOUT", ...]}) becomes an unbound.conf of local-data (what Postern's
dns.unbound_config reads; nothing leaves the host): every other name is
NXDOMAIN ("." static), a name that has no data of the asked type answers
NODATA, and a TIMEOUT name is a refusing zone (REFUSED: a temporary DNS
failure), its own records still answered. `postern spf` runs against it.
The same zone data answers python3-spf in-process (pyspf_lookup)."""
import os
import socket
import subprocess
import tempfile

from dnszone import dns_conf, write_unbound_conf
from suite import POSTERN


def _esc_name(name):
    out = []
    for ch in name.rstrip(".").encode("utf-8"):
        c = chr(ch)
        out.append(c if (c.isalnum() and ch < 128) or c in "-_." else "\\%03d" % ch)
    return "".join(out) + "."


def _txt(strings):
    if isinstance(strings, str):
        strings = [strings]
    parts = []
    for s in strings:
        b = s.encode("utf-8")
        chunks = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
        for c in chunks:
            parts.append('"' + "".join(
                chr(x) if 32 <= x < 127 and chr(x) not in '"\\\'' else "\\%03d" % x
                for x in c) + '"')
    return " ".join(parts) or '""'    # no strings at all: DNS cannot say it


def records(zonedata):
    """The suite driver's view (testspf.getrdata): SPF records stand in for
    TXT when a name has no TXT; TXT "NONE" means no TXT. Yields
    (name, type, value) and (name, "TIMEOUT", None)."""
    for name, rrs in zonedata.items():
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in rrs)
        for r in rrs:
            if r == "TIMEOUT":
                yield name, "TIMEOUT", None
                continue
            for t, v in r.items():
                if t == "SPF":
                    if not has_txt:
                        yield name, "TXT", v
                elif t == "TXT" and v == "NONE":
                    continue
                else:
                    yield name, t, v


def flatten(zonedata):
    """(name, type, value) with CNAMEs resolved the way a recursive
    resolver answers them: the alias gets the target's records (a loop or
    a dangling alias: nothing). libunbound's local-data does not chase a
    CNAME, a real resolver does."""
    recs = list(records(zonedata))
    by = {}
    for name, t, v in recs:
        by.setdefault(name.lower().rstrip("."), []).append((t, v))
    out = []
    for name, t, v in recs:
        if t != "CNAME":
            out.append((name, t, v))
            continue
        seen, target = {name.lower()}, v.lower().rstrip(".")
        while target in by and target not in seen:
            seen.add(target)
            nxt = [x for tt, x in by[target] if tt == "CNAME"]
            if not nxt:
                out += [(name, tt, x) for tt, x in by[target] if tt != "TIMEOUT"]
                break
            target = nxt[0].lower().rstrip(".")
    return out


def unbound_conf(zonedata, path):
    """Write zonedata as an unbound.conf at path (dnszone.py); returns path."""
    zones = [("in-addr.arpa.", "nodefault"), ("ip6.arpa.", "nodefault")]
    data = []
    recs = flatten(zonedata)
    timeouts = {name.lower().rstrip(".") for name, t, _ in recs if t == "TIMEOUT"}
    seen = set()
    for name, t, v in recs:
        low = name.lower().rstrip(".")
        n = _esc_name(name)
        # a refusing zone refuses the names below it too: those with data
        # of their own get a zone of their own
        if t == "TIMEOUT" or any(low.endswith("." + z) for z in timeouts):
            if n.lower() not in seen:
                zones.append((n, "refuse" if t == "TIMEOUT" or low in timeouts else "static"))
                seen.add(n.lower())
            if t == "TIMEOUT":
                continue
        if t == "TXT":
            rd = _txt(v)
        elif t == "MX":
            rd = f"{v[0]} {_esc_name(v[1])}"
        elif t in ("PTR", "CNAME"):
            rd = _esc_name(v)
        else:
            rd = str(v)
        data.append(f"{n} 300 IN {t} {rd}")
    return write_unbound_conf(path, data, zones)


class SpfRig:
    """A temp dir with postern.conf + unbound.conf for one zone."""

    def __init__(self, zonedata, hostname="mx.example.test"):
        self.dir = tempfile.mkdtemp(prefix="postern-spf-")
        self.ub = os.path.join(self.dir, "unbound.conf")
        unbound_conf(zonedata, self.ub)
        self.conf = os.path.join(self.dir, "postern.conf")
        with open(self.conf, "w") as f:
            f.write(f'hostname = "{hostname}";\n{dns_conf(self.ub, timeout="3s")}\n')

    def check(self, ip, sender, helo):
        """(result, explanation) from `postern spf`."""
        r = subprocess.run([POSTERN, "-c", self.conf, "spf", ip, sender, helo],
                           capture_output=True, timeout=60)
        out = r.stdout.decode("utf-8", "replace").rstrip("\n")
        assert r.returncode == 0, (r.returncode, out, r.stderr, ip, sender, helo, self.conf)
        word, _, rest = out.partition(" ")
        return word, rest

    def cleanup(self):
        for n in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, n))
        os.rmdir(self.dir)


def default_explanation(ip, sender, helo):
    dom = sender.split("@", 1)[1] if "@" in sender else (sender or helo)
    return f"{dom} does not designate {ip} as permitted sender"


def pyspf_result(zonedata, ip, sender, helo, receiver="mx.example.test"):
    """python3-spf's (result, explanation) over the same zone, no network:
    its DNSLookup answers what the unbound config above answers (CNAMEs
    flattened, a name in or below a TIMEOUT zone without records of its
    own: TempError)."""
    import spf
    zone = {}
    for name, t, v in flatten(zonedata):
        zone.setdefault(name.lower().rstrip("."), []).append((t, v))
    timeouts = {n for n, rr in zone.items() if any(t == "TIMEOUT" for t, _ in rr)}

    def lookup(name, qtype, strict=True, timeout=None, level=0):
        name = name.lower().rstrip(".")
        for label in name.split("."):
            if len(label) > 63:
                raise spf.TempError("DNS label too long")
        rrs = [(t, v) for t, v in zone.get(name, []) if t != "TIMEOUT"]
        if not rrs and any(name == z or name.endswith("." + z) for z in timeouts):
            raise spf.TempError("DNS refused")
        for t, v in rrs:
            if t != qtype:
                continue
            if t == "AAAA":
                v = socket.inet_pton(socket.AF_INET6, v)
            elif t == "TXT":
                v = tuple(x.encode("utf-8") for x in ([v] if isinstance(v, str) else v))
            elif t == "MX":
                v = (v[0], v[1])
            yield ((name, t), v)

    saved = spf.DNSLookup
    spf.DNSLookup = lookup
    try:
        q = spf.query(i=ip, s=sender, h=helo, receiver=receiver, strict=True)
        q.set_default_explanation("DEFAULT")
        res, _code, exp = q.check()
    finally:
        spf.DNSLookup = saved
    return res, exp
