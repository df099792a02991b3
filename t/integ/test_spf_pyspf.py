"""Postern's SPF against python3-spf (pyspf), scenario by scenario: one
zone (served to `postern spf` by libunbound local-data, to pyspf by its
replaced DNSLookup, both from spfzone.py; no network), 40+ checks over
macros, include, redirect, exp, void lookups, the term and MX limits, ip6
and IPv4-mapped clients, ptr and %{p}, exists, malformed records and
temporary DNS failures. The results must be equal, and so must the
explanation of a fail that has an exp= text."""
from spfzone import SpfRig, pyspf_result

V4, V4B, V6 = "192.0.2.10", "198.51.100.7", "2001:db8:1::10"

ZONE = {
    # plain results
    "pass.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "soft.test": [{"TXT": "v=spf1 ip4:203.0.113.0/24 ~all"}],
    "neutral.test": [{"TXT": "v=spf1 ?all"}],
    "empty.test": [{"TXT": "v=spf1"}],
    "plusall.test": [{"TXT": "v=spf1 +all"}],
    "upper.test": [{"TXT": "V=SpF1 IP4:192.0.2.0/24 -ALL"}],
    "other-txt.test": [{"TXT": "google-site-verification=abc"}, {"A": "192.0.2.1"}],
    "two.test": [{"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 +all"}],
    "split.test": [{"TXT": ["v=spf1 ip4:192.0.2", ".0/24 -all"]}],
    # a / mx / ip6
    "a.test": [{"TXT": "v=spf1 a/24 -all"}, {"A": "192.0.2.1"}],
    "a-other.test": [{"TXT": "v=spf1 a:host.a-other.test -all"}],
    "host.a-other.test": [{"A": "192.0.2.10"}],
    "mx.test": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "mx1.mx.test"]},
                {"MX": [20, "mx2.mx.test"]}],
    "mx1.mx.test": [{"A": "203.0.113.1"}],
    "mx2.mx.test": [{"A": "192.0.2.10"}, {"AAAA": "2001:db8:1::10"}],
    "mx6.test": [{"TXT": "v=spf1 mx//64 -all"}, {"MX": [10, "mx.mx6.test"]}],
    "mx.mx6.test": [{"AAAA": "2001:db8:1::1"}],
    "ip6.test": [{"TXT": "v=spf1 ip6:2001:db8:1::/48 -all"}],
    "a6.test": [{"TXT": "v=spf1 a -all"}, {"A": "192.0.2.10"}],
    "manymx.test": [{"TXT": "v=spf1 mx -all"}] +
                   [{"MX": [i, f"m{i}.manymx.test"]} for i in range(11)],
    # include / redirect / exp
    "inc.test": [{"TXT": "v=spf1 include:inner.test -all"}],
    "inner.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "incfail.test": [{"TXT": "v=spf1 include:innerfail.test ?all"}],
    "innerfail.test": [{"TXT": "v=spf1 -all"}],
    "incnone.test": [{"TXT": "v=spf1 include:nothing.test -all"}],
    "inctemp.test": [{"TXT": "v=spf1 include:slow.test -all"}],
    "slow.test": ["TIMEOUT"],
    "red.test": [{"TXT": "v=spf1 redirect=inner.test"}],
    "rednone.test": [{"TXT": "v=spf1 redirect=nothing.test"}],
    "redall.test": [{"TXT": "v=spf1 ?all redirect=innerfail.test"}],
    "red2.test": [{"TXT": "v=spf1 redirect=a.test redirect=b.test"}],
    "exp.test": [{"TXT": "v=spf1 -all exp=why.exp.test"}],
    "why.exp.test": [{"TXT": "%{i} may not send for %{d} as %{l} (%{o}, %{v}, %{h})"}],
    "exp2.test": [{"TXT": "v=spf1 -all exp=two.exp2.test"}],
    "two.exp2.test": [{"TXT": "one"}, {"TXT": "two"}],
    "expred.test": [{"TXT": "v=spf1 exp=why.exp.test redirect=innerfail2.test"}],
    "innerfail2.test": [{"TXT": "v=spf1 -all exp=why2.test"}],
    "why2.test": [{"TXT": "redirected: %{d}"}],
    "expinc.test": [{"TXT": "v=spf1 include:incexp.test -all"}],
    "incexp.test": [{"TXT": "v=spf1 -all exp=why.exp.test"}],
    "expempty.test": [{"TXT": "v=spf1 -all exp="}],
    "loop1.test": [{"TXT": "v=spf1 include:loop2.test -all"}],
    "loop2.test": [{"TXT": "v=spf1 include:loop1.test -all"}],
    # exists and macros
    "exists.test": [{"TXT": "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"}],
    "10.2.0.192.bob._spf.exists.test": [{"A": "127.0.0.2"}],
    "hmacro.test": [{"TXT": "v=spf1 exists:%{h}.h.%{d2} -all"}],
    "helo.example.h.hmacro.test": [{"A": "127.0.0.2"}],
    "url.test": [{"TXT": "v=spf1 exists:%{L}.u.url.test -all"}],
    "a%2Bb.u.url.test": [{"A": "127.0.0.2"}],
    "v6macro.test": [{"TXT": "v=spf1 exists:%{ir}.%{v}.v6macro.test -all"}],
    "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.v6macro.test":
        [{"A": "127.0.0.2"}],
    "delim.test": [{"TXT": "v=spf1 exists:%{o2r}.%{l1=}.d.delim.test -all"}],
    "test.delim.y.d.delim.test": [{"A": "127.0.0.2"}],
    "badmacro.test": [{"TXT": "v=spf1 exists:%{x}.badmacro.test -all"}],
    "crt.test": [{"TXT": "v=spf1 exists:%{c}.crt.test -all"}],
    "pct.test": [{"TXT": "v=spf1 -all exp=why.pct.test"}],
    "why.pct.test": [{"TXT": "100%% sure%_%-: %{d1r}"}],
    # ptr and %{p}
    "10.2.0.192.in-addr.arpa": [{"PTR": "host.ptr.test"}, {"PTR": "liar.test"}],
    "host.ptr.test": [{"A": "192.0.2.10"}],
    "liar.test": [{"A": "203.0.113.9"}],
    "ptr.test": [{"TXT": "v=spf1 ptr -all"}],
    "ptrliar.test": [{"TXT": "v=spf1 ptr:liar.test -all"}],
    "pmacro.test": [{"TXT": "v=spf1 -all exp=why.pmacro.test"}],
    "why.pmacro.test": [{"TXT": "connect from %{p}"}],
    # limits
    "void2.test": [{"TXT": "v=spf1 a:nx1.void2.test a:nx2.void2.test ?all"}],
    "void3.test": [{"TXT": "v=spf1 a:nx1.void3.test a:nx2.void3.test a:nx3.void3.test ?all"}],
    "ten.test": [{"TXT": "v=spf1 " + " ".join(f"a:h{i}.ten.test" for i in range(10)) + " -all"}],
    "eleven.test": [{"TXT": "v=spf1 " + " ".join(f"a:h{i}.ten.test" for i in range(11)) + " -all"}],
    # malformed
    "cidr33.test": [{"TXT": "v=spf1 ip4:192.0.2.0/33 -all"}],
    "numtop.test": [{"TXT": "v=spf1 a:foo.123 -all"}],
    "unknown.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 foo -all"}],
    "allarg.test": [{"TXT": "v=spf1 all:foo"}],
    "badip4.test": [{"TXT": "v=spf1 ip4:192.0.2.01 -all"}],
    "unkmod.test": [{"TXT": "v=spf1 foo=bar ip4:192.0.2.0/24 -all"}],
    "badmod.test": [{"TXT": "v=spf1 foo=%{q} ip4:192.0.2.0/24 -all"}],
    "spaces.test": [{"TXT": "v=spf1   ip4:192.0.2.0/24    -all  "}],
    "nonascii.test": [{"TXT": "v=spf1 a:caf\u00e9.test -all"}],
    # temporary failures
    "tempa.test": [{"TXT": "v=spf1 a:slow.test -all"}],
    "temptop.test": ["TIMEOUT"],
    "helo.example": [{"TXT": "v=spf1 ip4:192.0.2.10 -all"}],
}
for i in range(11):
    ZONE[f"h{i}.ten.test"] = [{"A": "203.0.113.50"}]
    ZONE[f"m{i}.manymx.test"] = [{"A": "192.0.2.10"}]

# (ip, sender, helo)
CASES = [
    (V4, "a@pass.test", "helo.example"), (V4B, "a@pass.test", "helo.example"),
    (V4, "a@soft.test", "helo.example"), (V4, "a@neutral.test", "helo.example"),
    (V4, "a@empty.test", "helo.example"), (V4, "a@plusall.test", "helo.example"),
    (V4, "a@upper.test", "helo.example"), (V4, "a@other-txt.test", "helo.example"),
    (V4, "a@nothing.test", "helo.example"), (V4, "a@two.test", "helo.example"),
    (V4, "a@split.test", "helo.example"), (V4, "a@a.test", "helo.example"),
    (V4B, "a@a.test", "helo.example"), (V4, "a@a-other.test", "helo.example"),
    (V4, "a@mx.test", "helo.example"), (V6, "a@mx.test", "helo.example"),
    (V6, "a@mx6.test", "helo.example"), (V6, "a@ip6.test", "helo.example"),
    (V4, "a@ip6.test", "helo.example"), ("::ffff:192.0.2.10", "a@pass.test", "helo.example"),
    (V6, "a@a6.test", "helo.example"), (V4, "a@manymx.test", "helo.example"),
    (V4, "a@inc.test", "helo.example"), (V4, "a@incfail.test", "helo.example"),
    (V4, "a@incnone.test", "helo.example"), (V4, "a@inctemp.test", "helo.example"),
    (V4, "a@red.test", "helo.example"), (V4B, "a@red.test", "helo.example"),
    (V4, "a@rednone.test", "helo.example"), (V4, "a@redall.test", "helo.example"),
    (V4, "a@red2.test", "helo.example"), (V4, "joe@exp.test", "helo.example"),
    (V4, "a@exp2.test", "helo.example"), (V4, "a@expred.test", "helo.example"),
    (V4, "a@expinc.test", "helo.example"), (V4, "a@expempty.test", "helo.example"),
    (V4, "a@loop1.test", "helo.example"), (V4, "bob@exists.test", "helo.example"),
    (V4, "bob-x@exists.test", "helo.example"), (V4, "a@hmacro.test", "helo.example"),
    (V4, "a+b@url.test", "helo.example"), (V6, "a@v6macro.test", "helo.example"),
    (V4, "x=y@delim.test", "helo.example"), (V4, "a@badmacro.test", "helo.example"),
    (V4, "a@crt.test", "helo.example"), (V4, "a@pct.test", "helo.example"),
    (V4, "a@ptr.test", "helo.example"), (V4B, "a@ptr.test", "helo.example"),
    (V4, "a@ptrliar.test", "helo.example"), (V4, "a@pmacro.test", "helo.example"),
    (V4B, "a@pmacro.test", "helo.example"), (V4, "a@void2.test", "helo.example"),
    (V4, "a@void3.test", "helo.example"), (V4, "a@ten.test", "helo.example"),
    (V4, "a@eleven.test", "helo.example"), (V4, "a@cidr33.test", "helo.example"),
    (V4, "a@numtop.test", "helo.example"), (V4, "a@unknown.test", "helo.example"),
    (V4, "a@allarg.test", "helo.example"), (V4, "a@badip4.test", "helo.example"),
    (V4, "a@unkmod.test", "helo.example"), (V4, "a@badmod.test", "helo.example"),
    (V4, "a@spaces.test", "helo.example"), (V4, "a@nonascii.test", "helo.example"),
    (V4, "a@tempa.test", "helo.example"), (V4, "a@temptop.test", "helo.example"),
    (V4, "", "helo.example"), (V4B, "", "helo.example"),
    (V4, "@exp.test", "helo.example"), (V4, "exp.test", "helo.example"),
]


def test_spf_matches_pyspf():
    assert len(CASES) >= 40
    rig = SpfRig(ZONE)
    bad = []
    results = set()
    try:
        for ip, sender, helo in CASES:
            want, wexp = pyspf_result(ZONE, ip, sender, helo)
            got, exp = rig.check(ip, sender, helo)
            results.add(got)
            if got != want or (want == "fail" and wexp != "DEFAULT" and exp != wexp):
                bad.append(f"{ip} {sender!r} {helo}: pyspf {want} {wexp!r}, "
                           f"postern {got} {exp!r}")
    finally:
        rig.cleanup()
    for b in bad:
        print("  spf vs pyspf:", b)
    assert not bad, f"{len(bad)} of {len(CASES)} differ"
    # the table covers every result
    assert results == {"pass", "fail", "softfail", "neutral", "none", "temperror",
                       "permerror"}, results


if __name__ == "__main__":
    test_spf_matches_pyspf()


def test_spf_cli_exit_codes():
    import subprocess
    from suite import POSTERN
    rig = SpfRig({"pass.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}]})
    try:
        assert rig.check("not-an-ip", "a@pass.test", "h")[0] == "permerror"   # still exit 0
        r = subprocess.run([POSTERN, "-c", rig.conf, "spf", "192.0.2.1"], capture_output=True)
        assert r.returncode == 2 and b"usage" in r.stderr, r
        r = subprocess.run([POSTERN, "-c", rig.dir + "/missing.conf", "spf", "192.0.2.1", "a@b.c"],
                           capture_output=True)
        assert r.returncode == 1, r
    finally:
        rig.cleanup()
