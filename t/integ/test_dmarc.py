"""DMARC end to end over SMTP (authentication.dmarc, RFC 7489): policy
records, SPF and DKIM keys served by the test unbound.conf's local-data
(nothing leaves the host); messages signed by dkimpy (python3-dkim); the
Authentication-Results field parsed by python3-authres and each DMARC
result compared with python3-authheaders' evaluator over the same records.
The domains sit under a listed public suffix (.com; only in the test's own
DNS): authheaders takes the organizational domain of a name under an
unlisted TLD such as .test to be the TLD itself, where RFC 7489 3.2 (and
libopendmarc, and Postern) apply the default "*" rule; and its address
parser takes no '-' in a domain, so the names have none.

Cases: SPF-aligned pass, DKIM-aligned pass (strict and relaxed), unaligned
under p=reject (550 5.7.1 with dmarc_failure = reject, delivered with
dmarc=fail under none), no record, p=quarantine (quarantine/dmarc/), the
subdomain policy sp=, pct=0 against pct=100, a temporary DNS failure (never
rejected), DMARC on SPF alone with authentication.dkim off, dmarc.result/dmarc.policy in the data-stage rules, the
aggregate-report lines in the spool, and `postern dmarc DOMAIN`; and the
From fields an attacker writes to have his own domain judged instead of
the author's (addresses in display names and comments, several authors,
two From fields, more author domains than are checked)."""
import base64
import glob
import os
import smtplib
import subprocess

import authheaders
import authres
import dkim

from dnszone import dns_conf
from suite import Suite, wait_for
from spfzone import unbound_conf
from test_rules import rules_dir, write

SPF_OK = {"TXT": "v=spf1 ip4:127.0.0.0/8 -all"}
DMARC = {
    "aligneddm.com": "v=DMARC1; p=reject",
    "rejectdm.com": "v=DMARC1; p=reject",
    "quardm.com": "v=DMARC1; p=quarantine",
    "subdm.com": "v=DMARC1; p=none; sp=reject",
    "q0dm.com": "v=DMARC1; p=quarantine; pct=0",
    "q100dm.com": "v=DMARC1; p=quarantine; pct=100",
    "r0dm.com": "v=DMARC1; p=reject; pct=0",
    "dkdm.com": "v=DMARC1; p=reject; adkim=s",
    "dkrdm.com": "v=DMARC1; p=reject",
}

RULES = '''
stage data {
  action "dmarc" { add_header("X-Dmarc-Rules", `${dmarc.result} ${dmarc.policy}`); }
}
'''


def make_key(d):
    key = os.path.join(d, "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return open(key, "rb").read(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


class World:
    """The zone, as unbound local-data for Postern and as a dnsfunc for
    authheaders/dkimpy."""

    def __init__(self):
        self.dir = rules_dir()
        self.key, self.keytxt = make_key(self.dir)
        self.txt = {}
        for dom in ("aligneddm.com", "senderdm.com", "dkdm.com", "dkrdm.com"):
            self.txt[dom] = SPF_OK["TXT"]
        for dom, rec in DMARC.items():
            self.txt["_dmarc." + dom] = rec
        for dom in ("dkdm.com", "dkrdm.com", "otherdm.com"):
            self.txt["s1._domainkey." + dom] = self.keytxt
        zone = {name: [{"TXT": v}] for name, v in self.txt.items()}
        zone["tempfaildm.com"] = ["TIMEOUT"]
        self.ub = os.path.join(self.dir, "unbound.conf")
        unbound_conf(zone, self.ub)
        os.chmod(self.ub, 0o644)
        self.rules = os.path.join(self.dir, "main.rules")
        write(self.rules, RULES)

    def dnsfunc(self, name, timeout=5):
        if isinstance(name, bytes):       # dkimpy: bytes with a final dot -> bytes
            return self.txt.get(name.decode().rstrip("."), "").encode()
        return self.txt.get(name.rstrip("."), None)   # authheaders' DMARC lookups

    def suite(self, failure, dkim_on=True, spf_on=True, rules=True):
        return Suite(mynetworks="[]", extra_conf=(
            (f'rules = "{self.rules}"; ' if rules else "") + f'{dns_conf(self.ub, timeout="3s")}'
            f' authentication {{ spf = {"true" if spf_on else "false"};'
            f' dkim = {"true" if dkim_on else "false"};'
            f' dmarc = true; dmarc_failure = "{failure}"; }}'))

    def message(self, from_addr, n, sign=None):
        msg = (f"From: {from_addr}\r\nTo: user@example.test\r\nSubject: dmarc {n}\r\n"
               f"Message-ID: <dmarc-{n}@example.test>\r\nDate: Sat, 05 Dec 2026 20:00:00 +0000\r\n"
               f"\r\nbody {n}\r\n").encode()
        if sign:
            msg = dkim.sign(msg, b"s1", sign.encode(), self.key,
                            include_headers=[b"from", b"to", b"subject", b"message-id"]) + msg
        return msg

    def reference(self, msg, spf_result, mail_from):
        """authheaders' DMARC result for msg, with our SPF result as given."""
        prev = f"Authentication-Results: ref; spf={spf_result} smtp.mailfrom={mail_from}"
        ar = authheaders.authenticate_message(msg, "ref", prev=prev, spf=False, dkim=True,
                                              dmarc=True, dnsfunc=self.dnsfunc)
        res = authres.AuthenticationResultsHeader.parse(ar)
        return next(r for r in res.results if r.method == "dmarc")


def send(s, mail_from, msg):
    c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
    c.ehlo("client.example.test")
    try:
        c.sendmail(mail_from, ["user@example.test"], msg)
        return 250, b""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error
    finally:
        c.quit()


def ours(data):
    """Our Authentication-Results field in a delivered message, parsed."""
    head = data.split(b"\n\n", 1)[0].decode()
    fields, cur = [], None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and cur is not None:
            cur += " " + line.strip()
            continue
        if cur is not None:
            fields.append(cur)
        cur = line
    fields.append(cur)
    ar = [f for f in fields if f.lower().startswith("authentication-results:")]
    assert len(ar) == 1, head
    parsed = authres.AuthenticationResultsHeader.parse(ar[0])
    assert parsed.authserv_id == "mx.example.test", ar[0]
    rules = [f for f in fields if f.startswith("X-Dmarc-Rules:")]
    return {r.method: r for r in parsed.results}, (rules[0].split(":", 1)[1].strip() if rules else None)


def prop(r, ptype, name):
    for p in r.properties:
        if p.type == ptype and p.name == name:
            return p.value
    return None


# (name, MAIL FROM, From, DKIM d= or None, expected: delivered result+policy,
#  "reject" or "quarantine" under dmarc_failure = reject)
CASES = [
    ("spf aligned", "a@aligneddm.com", "x@aligneddm.com", None, ("pass", "reject")),
    ("spf unaligned p=reject", "a@senderdm.com", "x@rejectdm.com", None, "reject"),
    ("no record", "a@senderdm.com", "x@nodmarcdm.com", None, ("none", None)),
    ("p=quarantine", "a@senderdm.com", "x@quardm.com", None, "quarantine"),
    ("sp=reject for a subdomain", "a@senderdm.com", "x@a.subdm.com", None, "reject"),
    ("p=none for the domain", "a@senderdm.com", "x@subdm.com", None, ("fail", "none")),
    ("pct=0 quarantine", "a@senderdm.com", "x@q0dm.com", None, ("fail", "none")),
    ("pct=100 quarantine", "a@senderdm.com", "x@q100dm.com", None, "quarantine"),
    ("pct=0 reject lowered", "a@senderdm.com", "x@r0dm.com", None, "quarantine"),
    ("temperror", "a@senderdm.com", "x@tempfaildm.com", None, ("temperror", None)),
    ("dkim strict aligned", "a@senderdm.com", "x@dkdm.com", "dkdm.com", ("pass", "reject")),
    ("dkim strict subdomain", "a@senderdm.com", "x@news.dkdm.com", "dkdm.com", "reject"),
    ("dkim relaxed subdomain", "a@senderdm.com", "x@news.dkrdm.com", "dkrdm.com",
     ("pass", "reject")),
    ("dkim unaligned", "a@senderdm.com", "x@rejectdm.com", "otherdm.com", "reject"),
]


def test_dmarc_reject():
    w = World()
    with w.suite("reject") as s:
        delivered = 0
        for i, (name, mfrom, hfrom, signer, want) in enumerate(CASES):
            msg = w.message(hfrom, i, signer)
            code, text = send(s, mfrom, msg)
            ref = w.reference(msg, "pass", mfrom)
            if want == "reject":
                assert (code, text[:6]) == (550, b"5.7.1 "), (name, code, text)
                assert ref.result == "fail", (name, str(ref))
                continue
            assert code == 250, (name, code, text)
            if want == "quarantine":
                assert ref.result == "fail", (name, str(ref))
                continue
            delivered += 1
            got = s.wait_delivered("user", delivered)
            data = [open(p, "rb").read() for p in got]
            data = [d for d in data if f"Subject: dmarc {i}\n".encode() in d][0]
            res, rules = ours(data)
            d = res["dmarc"]
            assert d.result == want[0], (name, str(d))
            assert prop(d, "header", "from") == hfrom.split("@")[1], (name, str(d))
            assert prop(d, "policy", "dmarc") == want[1], (name, str(d))
            assert rules == f"{want[0]} {want[1] or 'none'}", (name, rules)
            if want[0] != "temperror":        # authheaders has no resolver failures
                assert ref.result == d.result, (name, str(ref), str(d))
            if signer:
                assert res["dkim"].result == "pass", (name, str(res["dkim"]))
        quarantined = glob.glob(os.path.join(s.spool, "quarantine", "dmarc", "*"))
        assert len(quarantined) == 3, quarantined
        # applied as a quarantine mutation: the queue file notes who decided
        show = s.postern("queue", "show", os.path.basename(quarantined[0]),
                         check=True).stdout.decode()
        assert "authentication.dmarc_failure" in show and "dmarc" in show, show
        log = s.log()
        assert "dmarc=fail header.from=rejectdm.com policy=reject disposition=reject" in log, log
        assert "dmarc=temperror header.from=tempfaildm.com" in log, log
        recs = open(os.path.join(s.spool, "dmarc", "records")).read().splitlines()
        assert len(recs) == len(CASES), recs
        byfrom = {}
        for line in recs:
            kv = dict(f.split("=", 1) for f in line.split(" "))
            byfrom.setdefault(kv["header_from"], []).append(kv)
        r = byfrom["rejectdm.com"][0]
        assert (r["dmarc"], r["disposition"], r["p"], r["source_ip"]) == \
            ("fail", "reject", "reject", "127.0.0.1"), r
        assert (r["spf_domain"], r["spf_result"], r["spf_aligned"]) == \
            ("senderdm.com", "pass", "fail"), r
        r = byfrom["dkdm.com"][0]
        assert (r["dmarc"], r["dkim_domain"], r["dkim_result"], r["dkim_aligned"], r["adkim"]) == \
            ("pass", "dkdm.com", "pass", "pass", "s"), r
        r = byfrom["a.subdm.com"][0]
        assert (r["policy_domain"], r["org_domain"], r["sp_used"], r["p"]) == \
            ("subdm.com", "subdm.com", "yes", "reject"), r
        r = byfrom["r0dm.com"][0]
        assert (r["disposition"], r["sampled_out"], r["pct"]) == ("quarantine", "yes", "0"), r


# The From field an attacker writes to have DMARC judge his own domain
# while the message's author address is another's (RFC 7489 6.6.1: each
# author domain of a multi-valued From is checked and the strictest failing
# policy applies; RFC 5322 3.4: quoted strings and comments are not
# addresses). aligneddm.com is the attacker's: SPF-aligned for MAIL FROM
# a@aligneddm.com. rejectdm.com publishes p=reject.
FROM_TRICKS = [
    ("angle address in a quoted display name",
     '"Mallory <a@aligneddm.com>" <ceo@rejectdm.com>', "reject"),
    ("angle address in a comment", "ceo@rejectdm.com (via <a@aligneddm.com>)", "reject"),
    ("two authors, the attacker's first", "a@aligneddm.com, ceo@rejectdm.com", "reject"),
    ("two authors in angle brackets", '"A" <a@aligneddm.com>, "B" <ceo@rejectdm.com>', "reject"),
    ("the victim in the display name only", '"ceo@rejectdm.com" <a@aligneddm.com>',
     "aligneddm.com"),
    ("the victim as an unquoted display name", "ceo@rejectdm.com <a@aligneddm.com>", "reject"),
    ("a comment naming the victim", "a@aligneddm.com (not ceo@rejectdm.com)", "aligneddm.com"),
    ("one author twice", "a@aligneddm.com, b@ALIGNEDDM.com", "aligneddm.com"),
    ("two From fields", "a@aligneddm.com\r\nFrom: ceo@rejectdm.com", "reject"),
    ("a second From with a blank before its colon", "a@aligneddm.com\r\nFROM : ceo@rejectdm.com",
     "reject"),
    ("quarantine first, reject second", "x@quardm.com, ceo@rejectdm.com", "reject"),
    ("the second author decides", "a@aligneddm.com, x@nodmarcdm.com", ("none", "nodmarcdm.com")),
    ("reject behind seven others", ", ".join(f"x@n{k}dm.com" for k in range(7)) +
     ", ceo@rejectdm.com", "reject"),
    ("more author domains than are checked", ", ".join(f"x@n{k}dm.com" for k in range(9)),
     "too many"),
]


def test_dmarc_from_tricks():
    w = World()
    with w.suite("reject") as s:
        # (the first case was delivered with dmarc=pass for aligneddm.com
        # before From fields were parsed past the first '<' of the field)
        delivered = 0
        for i, (name, hfrom, want) in enumerate(FROM_TRICKS):
            code, text = send(s, "a@aligneddm.com", w.message(hfrom, 100 + i))
            if want == "reject":
                assert (code, text) == (550, b"5.7.1 Message rejected: DMARC policy of "
                                        b"rejectdm.com"), (name, code, text)
                continue
            if want == "too many":
                assert (code, text) == (550, b"5.7.1 Message rejected: DMARC cannot check "
                                        b"9 author domains"), (name, code, text)
                continue
            assert code == 250, (name, code, text)
            delivered += 1
            got = s.wait_delivered("user", delivered)
            data = [open(p, "rb").read() for p in got]
            data = [d for d in data if f"Subject: dmarc {100 + i}\n".encode() in d][0]
            d = ours(data)[0]["dmarc"]
            want = want if isinstance(want, tuple) else ("pass", want)
            assert (d.result, prop(d, "header", "from")) == want, (name, str(d))


def test_dmarc_failure_none():
    w = World()
    with w.suite("none") as s:
        msg = w.message("x@rejectdm.com", 1)
        assert send(s, "a@senderdm.com", msg)[0] == 250
        msg = w.message("x@quardm.com", 2)
        assert send(s, "a@senderdm.com", msg)[0] == 250
        got = s.wait_delivered("user", 2)
        for p in got:
            res, rules = ours(open(p, "rb").read())
            d = res["dmarc"]
            assert d.result == "fail", str(d)
            assert prop(d, "policy", "dmarc") in ("reject", "quarantine"), str(d)
            assert "dis=none" in (d.reason or ""), str(d)
        assert not glob.glob(os.path.join(s.spool, "quarantine", "*", "*"))


def test_dmarc_without_rules():
    """No data-stage rules: a message DMARC lets through is committed by the
    authentication worker itself (no trip back through cleanup's loop);
    reject and quarantine still go through the loop. Logs, report lines and
    Authentication-Results are the same either way."""
    w = World()
    os.environ["POSTERN_TRACE"] = "4"           # TRACE_QUEUE: how each was committed
    try:
        s = w.suite("reject", rules=False)
    finally:
        del os.environ["POSTERN_TRACE"]
    with s:
        assert send(s, "a@senderdm.com", w.message("x@dkdm.com", 1, "dkdm.com"))[0] == 250
        code, text = send(s, "a@senderdm.com", w.message("x@rejectdm.com", 2, "otherdm.com"))
        assert (code, text[:6]) == (550, b"5.7.1 "), (code, text)
        assert send(s, "a@senderdm.com", w.message("x@quardm.com", 3))[0] == 250
        got = s.wait_delivered("user", 1)
        res, _ = ours(open(got[0], "rb").read())
        assert res["dmarc"].result == "pass" and res["dkim"].result == "pass", res
        assert res["spf"].result == "pass", res
        wait_for(lambda: len(glob.glob(os.path.join(s.spool, "quarantine", "dmarc", "*"))) == 1,
                 what="the quarantined message")
        log = wait_for(lambda: "dmarc=fail header.from=quardm.com" in s.log() and s.log(),
                       what="the quarantine's dmarc line")
        assert "dkim=pass d=dkdm.com s=s1" in log, log
        assert "dmarc=pass header.from=dkdm.com" in log, log
        assert "dmarc=fail header.from=rejectdm.com policy=reject disposition=reject" in log, log
        recs = open(os.path.join(s.spool, "dmarc", "records")).read().splitlines()
        assert len(recs) == 3, recs
        committed = [l for l in log.splitlines() if "committed: " in l]
        assert len(committed) == 2, committed      # the passing one and the quarantined one
        assert "incoming/" in committed[0] and "by the authentication worker" in committed[0]
        assert "quarantine/" in committed[1] and "authentication worker" not in committed[1]


def test_dmarc_without_dkim():
    """authentication.dkim off: DMARC still runs, on SPF alone (a signature
    is then not looked at)."""
    w = World()
    with w.suite("reject", dkim_on=False) as s:
        assert send(s, "a@aligneddm.com", w.message("x@aligneddm.com", 1))[0] == 250
        code, text = send(s, "a@senderdm.com", w.message("x@dkdm.com", 2, "dkdm.com"))
        assert (code, text[:6]) == (550, b"5.7.1 "), (code, text)
        got = s.wait_delivered("user", 1)
        res, rules = ours(open(got[0], "rb").read())
        assert res["dmarc"].result == "pass" and "dkim" not in res, res
        assert rules == "pass reject", rules
    # DMARC alone: nothing can align (no SPF, no DKIM), but it still runs
    with w.suite("none", dkim_on=False, spf_on=False) as s:
        assert send(s, "a@aligneddm.com", w.message("x@aligneddm.com", 3))[0] == 250
        got = s.wait_delivered("user", 1)
        res, rules = ours(open(got[0], "rb").read())
        assert res["dmarc"].result == "fail" and rules == "fail reject", (res, rules)


def test_dmarc_cli():
    w = World()
    with w.suite("none") as s:
        r = s.postern("dmarc", "a.subdm.com", check=True)
        out = r.stdout.decode()
        assert "record: v=DMARC1; p=none; sp=reject\n" in out, out
        assert "record_domain: _dmarc.subdm.com\n" in out, out
        assert "organizational_domain: subdm.com\n" in out, out
        assert "policy: reject (sp=)\n" in out, out
        r = s.postern("dmarc", "nodmarcdm.com", check=True)
        assert "record: none\n" in r.stdout.decode() and \
            "policy: none" in r.stdout.decode(), r.stdout
        r = s.postern("dmarc", "x.tempfaildm.com")
        assert r.returncode == 1 and b"temperror" in r.stderr, r
        assert s.postern("dmarc").returncode == 2
        assert s.postern("dmarc", "a..b").returncode == 2
        assert s.postern("dmarc", "a", "b").returncode == 2
        # check: the keys are supported (no "not supported yet")
        r = s.postern("check")
        assert b"dmarc" not in r.stderr, r.stderr
        # ... but a failure action with neither SPF nor DKIM is a problem
        good = s.conf_text
        s.write_conf(good.replace("spf = true; dkim = true;", "spf = false;")
                     .replace('dmarc_failure = "none"', 'dmarc_failure = "reject"'))
        r = s.postern("check")
        s.write_conf(good)
        assert r.returncode == 1 and b"authentication.dmarc_failure: DMARC can only pass" \
            in r.stderr, r.stderr


# RFC 8616 4 / 6: an author domain in U-labels (an SMTPUTF8 message's
# From, RFC 6532) is looked up by its A-labels. Before, it was read as no
# author domain at all, so a p=reject domain's policy was never applied to
# mail written in its Unicode name.
def test_dmarc_idn_author():
    w = World()
    w.txt["_dmarc.xn--bnk-qla.com"] = "v=DMARC1; p=reject"
    w.txt["_dmarc.xn--bcher-kva.com"] = "v=DMARC1; p=none"
    unbound_conf({name: [{"TXT": v}] for name, v in w.txt.items()}, w.ub)
    with w.suite("reject") as s:
        def sendu(hfrom, n):
            msg = w.message(hfrom, n)
            c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
            c.ehlo("client.example.test")
            try:
                c.sendmail("a@aligneddm.com", ["user@example.test"], msg,
                           mail_options=["SMTPUTF8"])
                return 250, b""
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
            finally:
                c.quit()
        code, text = sendu("ceo@b\u00e4nk.com", 200)
        assert (code, text) == (550, b"5.7.1 Message rejected: DMARC policy of "
                                b"xn--bnk-qla.com"), (code, text)
        # the same domain written in A-labels, and in upper case U-labels
        code, text = sendu("ceo@xn--bnk-qla.com", 201)
        assert code == 550, (code, text)
        code, text = sendu("ceo@B\u00c4NK.com", 202)
        assert code == 550, (code, text)
        # an aligned-looking but different Unicode domain: its own policy
        assert sendu("\"B\" <x@b\u00fccher.com>", 203)[0] == 250
        got = s.wait_delivered("user", 1)
        d = ours(open(got[0], "rb").read())[0]["dmarc"]
        assert (d.result, prop(d, "header", "from"), prop(d, "policy", "dmarc")) == \
            ("fail", "xn--bcher-kva.com", "none"), str(d)
        # a domain that is no valid IDN (U+2028 in a label) is no author
        # domain: dmarc=none, as a From without one
        assert sendu("x@b\u00e4nk\u2028.com", 204)[0] == 250
        got = s.wait_delivered("user", 2)
        data = [open(p, "rb").read() for p in got]
        data = [x for x in data if b"Subject: dmarc 204\n" in x][0]
        assert ours(data)[0]["dmarc"].result == "none", data
        # postern dmarc takes the Unicode name too
        out = s.postern("dmarc", "B\u00e4nk.com", check=True).stdout.decode()
        assert "domain: xn--bnk-qla.com\n" in out and "policy: reject" in out, out
        assert s.postern("dmarc", "b\u00e4nk\u2028.com").returncode == 2
