"""A copy the local agent forwards (an alias or .forward member off-site)
goes through cleanup again from 127.0.0.1. It used to count as a
submission: a message from anyone on the Internet with From: our domain,
sent to an alias with a remote member, left signed with our DKIM key (a
forgery made genuine), and counted against a tenant's limit. Now a
forwarded copy is never a submission: not signed, not checked again, and
the Authentication-Results of its first pass stays."""
import os

from aiosmtpd.controller import Controller

from suite import Suite, free_port, wait_for


class Keep:
    def __init__(self):
        self.msgs = []

    async def handle_DATA(self, server, session, envelope):
        self.msgs.append(envelope.content)
        return "250 2.0.0 ok"


MSG = (b"From: CFO <cfo@example.test>\r\nTo: boss@remote.test\r\n"
       b"Subject: %s\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
       b"Message-ID: <%s@x.test>\r\n\r\nPay invoice 42 today.\r\n")


def test_forwarded_copy_is_not_signed():
    port = free_port()
    s = Suite(start=False, mynetworks='["127.0.0.1/32"]')
    keys = os.path.join(s.dir, "keys")
    os.mkdir(keys)
    with open(os.path.join(s.dir, "aliases"), "w") as f:
        f.write("info: boss@remote.test\n")
    os.chmod(os.path.join(s.dir, "aliases"), 0o644)
    conf = s.conf_text + (
        f'authentication {{ dkim = true; dkim_keys = "{keys}"; authserv_id = "mx.example.test"; }}\n'
        f'domain "example.test" {{ dkim {{ selector = "s1"; key = "{keys}/example.test.s1.key"; }} }}\n'
        f'delivery {{ relayhost = "[127.0.0.3]:{port}"; }}\n')
    s.write_conf(conf)
    r = s.postern("dkim", "keygen", "example.test", "s1", "--type", "rsa")
    assert r.returncode == 0, r.stderr
    keep = Keep()
    ctl = Controller(keep, hostname="127.0.0.3", port=port)
    ctl.start()
    try:
        s.start_with_conf(conf)
        # from the Internet (127.0.0.2 is not in mynetworks), no AUTH
        with s.smtp(source="127.0.0.2") as c:
            c.ehlo("evil.test")
            c.sendmail("attacker@evil.test", ["info@example.test"], MSG % (b"forged", b"f1"))
        wait_for(lambda: keep.msgs, 60, "the forwarded copy at the remote hop")
        got = keep.msgs[0]
        assert b"DKIM-Signature" not in got, got[:1500]
        # checked once, when it arrived: one Authentication-Results of ours
        assert got.count(b"Authentication-Results: mx.example.test") == 1, got[:1500]
        assert b"dkim=none" in got, got[:1500]
        # a submission (127.0.0.1) to the same alias: signed once, on arrival
        with s.smtp() as c:
            c.ehlo("client.example.test")
            c.sendmail("cfo@example.test", ["info@example.test"], MSG % (b"real", b"r1"))
        wait_for(lambda: len(keep.msgs) == 2, 60, "the second forwarded copy")
        got = keep.msgs[1]
        assert got.count(b"DKIM-Signature:") == 1 and b"d=example.test" in got, got[:1500]
        assert b"Authentication-Results: mx.example.test" not in got, got[:1500]
        s.wait_queue_empty()
    finally:
        ctl.stop()
        s.__exit__(None, None, None)
