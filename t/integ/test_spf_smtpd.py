"""SPF in smtpd (authentication.spf = true): checked at MAIL FROM through
lib/dns (the test unbound.conf's local-data; nothing leaves the host),
spf.result / spf.domain seen by the rules from `mail` on (and at `data`,
through cleanup), a Received-SPF field above our Received, the HELO identity
for <>, and nothing of it when SPF is off."""
import os
import smtplib

from dnszone import dns_conf
from spfzone import unbound_conf
from test_rules import rules_dir, rules_suite

ZONE = {
    "pass.test": [{"TXT": "v=spf1 ip4:127.0.0.0/8 -all"}],
    "fail.test": [{"TXT": "v=spf1 ip4:192.0.2.1 -all exp=why.fail.test"}],
    "why.fail.test": [{"TXT": "%{i} is not %{d}'s"}],
    "soft.test": [{"TXT": "v=spf1 ~all"}],
    "helo.test": [{"TXT": "v=spf1 -all"}],
    "slow.test": ["TIMEOUT"],
    "xn--bnk-qla.test": [{"TXT": "v=spf1 ip4:192.0.2.1 -all"}],      # bänk.test
}

RULES = '''
stage mail {
  rule "spf" {
    if spf.result == "fail" { return deny(550, "5.7.23", `SPF ${spf.result} for ${spf.domain}`); }
    if spf.result == "temperror" { return defer(451, "4.7.24", `SPF temperror for ${spf.domain}`); }
  }
}
stage data {
  rule "soft" { if spf.result == "softfail" { return deny(550, "5.7.1", `data saw softfail for ${spf.domain}`); } }
}
'''


def spf_suite(spf=True):
    d = rules_dir()
    ub = unbound_conf(ZONE, os.path.join(d, "unbound.conf"))
    # mynetworks leaves 127.0.0.1 out: mail from it is inbound, not a
    # submission (which gets no Authentication-Results)
    return rules_suite(RULES, d=d, mynetworks='["192.0.2.0/24"]', extra_conf=dns_conf(ub) +
                       f' authentication {{ spf = {"true" if spf else "false"}; }}')


def mail(s, sender, helo="client.example.test"):
    c = s.smtp()
    c.ehlo(helo)
    r = c.mail(sender)
    c.quit()
    return r


def test_spf_smtpd():
    with spf_suite() as s:
        assert mail(s, "a@fail.test") == (550, b"5.7.23 SPF fail for fail.test")
        assert mail(s, "a@slow.test") == (451, b"4.7.24 SPF temperror for slow.test")
        # <>: the HELO identity
        assert mail(s, "", helo="helo.test") == (550, b"5.7.23 SPF fail for helo.test")
        # the value reaches the data stage (cleanup's request)
        c = s.smtp()
        c.ehlo("client.example.test")
        try:
            c.sendmail("a@soft.test", ["user@example.test"], b"Subject: x\r\n\r\nhi\r\n")
            raise AssertionError("softfail mail accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and b"data saw softfail for soft.test" in e.smtp_error
        c.quit()
        s.send("a@pass.test", ["user@example.test"], b"Subject: spf\r\n\r\nhello\r\n")
        got = s.wait_delivered("user", 1)
        data = open(got[0], "rb").read()
        head = data.split(b"\n\n", 1)[0].replace(b"\n ", b" ").replace(b"\n\t", b" ")  # unfolded
        assert b"Received-SPF: pass (mx.example.test: domain of a@pass.test designates " \
            b"127.0.0.1 as permitted sender)" in head, head
        assert head.index(b"Received-SPF:") < head.index(b"Received: from"), head
        assert b"client-ip=127.0.0.1;" in head and b"envelope-from=\"a@pass.test\";" in head, head
        assert b"identity=mailfrom" in head, head
        # SPF alone: our Authentication-Results is written with the header
        # section (no DKIM/DMARC pass), on top, once
        ar = [f for f in head.split(b"\n") if f.startswith(b"Authentication-Results:")]
        assert len(ar) == 1 and b"spf=pass" in ar[0] and b"smtp.mailfrom=" in ar[0], head
        assert b"dkim=" not in ar[0] and b"dmarc=" not in ar[0], ar
        assert head.index(b"Authentication-Results:") < head.index(b"Received-SPF:"), head
        log = s.log()
        assert "spf: [127.0.0.1]" in log and "fail for a@fail.test (mailfrom)" in log, log


def test_spf_off():
    with spf_suite(spf=False) as s:
        assert mail(s, "a@fail.test")[0] == 250        # spf.result reads "none"
        s.send("a@pass.test", ["user@example.test"], b"Subject: spf\r\n\r\nhello\r\n")
        got = s.wait_delivered("user", 1)
        data = open(got[0], "rb").read()
        assert b"Received-SPF" not in data and b"Authentication-Results" not in data, data


# RFC 8616 4: an SMTPUTF8 MAIL FROM in U-labels is checked as its A-labels
# (before, the UTF-8 name was looked up as it stood, found nothing and got
# "none": a -all domain's mail passed when written in its Unicode name).
def test_spf_idn_sender():
    with spf_suite() as s:
        for sender in ("a@b\u00e4nk.test", "a@B\u00c4NK.test", "a@xn--bnk-qla.test"):
            c = s.smtp()
            c.ehlo("client.example.test")
            r = c.mail(sender, ["SMTPUTF8"])
            c.quit()
            assert r == (550, b"5.7.23 SPF fail for xn--bnk-qla.test"), (sender, r)
        # a name that is no IDN is no domain: "none", as before
        c = s.smtp()
        c.ehlo("client.example.test")
        assert c.mail("a@b\u00e4nk\u2028.test", ["SMTPUTF8"])[0] == 250
        c.quit()
