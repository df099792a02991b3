"""domain "X" { limits { messages_per_hour = N; } }: a tenant's submissions
(SMTP AUTH, mynetworks, sendmail) beyond N in the last hour get 450 4.7.0 at
the end of DATA and stay with the client; other domains' mail and mail from
the Internet "from" the tenant do not count and are not refused.
"""
import smtplib

from suite import Suite, make_message


def attempt(s, sender, n, source=None):
    """(code, text) of the end-of-DATA reply for message n."""
    with s.smtp(source=source) as c:
        c.ehlo("client.example.test")
        try:
            c.sendmail(sender, ["kim@example.test"], make_message(n))
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()
        return 250, ""


def test_tenant_messages_per_hour():
    conf = 'domain "tenant.test" { limits { messages_per_hour = 2; } }\n'
    # 127.0.0.1 may relay (a submission); 127.0.0.2 is the Internet
    with Suite(extra_conf=conf, mynetworks='["127.0.0.1/32"]', host="0.0.0.0") as s:
        s.host = "127.0.0.1"
        assert attempt(s, "a@tenant.test", 1) == (250, "")
        assert attempt(s, "b@tenant.test", 2) == (250, "")
        code, text = attempt(s, "c@tenant.test", 3)
        assert code == 450 and text.startswith("4.7.0"), (code, text)
        # another domain is not limited; the tenant's inbound is not counted
        assert attempt(s, "x@other.test", 4) == (250, "")
        assert attempt(s, "d@tenant.test", 5, source="127.0.0.2") == (250, "")
        s.wait_delivered("kim", 4)
        log = s.log()
        assert "domain tenant.test is at its limit of 2 messages per hour" in log, log
        # `postern check` no longer calls the key unsupported
        r = s.postern("check")
        out = (r.stdout + r.stderr).decode()
        assert "messages_per_hour" not in out, out
