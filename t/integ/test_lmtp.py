"""LMTP (RFC 2033) through the smtp agent (smtp/smtp_lmtp.c) to an aiosmtpd
LMTP server, over a Unix socket (a `transport "NAME" { type = "lmtp"; }`
block named by lmtp("NAME")) and over TCP (lmtp(r, "[127.0.0.1]:PORT") in
the rules): after the final dot one reply per accepted recipient, so a 250,
a 452 and a 550 give delivered, deferred and bounced (with a DSN to the
sender) for one message; a recipient refused at RCPT gets no data reply.
The route is made again at every activation: after a qmgr restart the
deferred recipient goes to the LMTP server again. forward(r, host) and a
discard transport work end to end as well."""
import email
import email.policy
import json
import os
import re
import signal
import tempfile
import threading

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP

from suite import Suite, rules_suite, free_port, make_message, wait_for


class Store:
    """An LMTP mailbox store: RCPT to refused@ gets 550; after DATA each
    recipient gets its own reply: full* 452 (until self.full_ok), gone* 550,
    others 250."""

    def __init__(self):
        self.got = []            # (mail_from, rcpts, content)
        self.full_ok = False
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused@"):
            return "550 5.1.1 <%s>: refused at RCPT" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        replies = []
        for r in envelope.rcpt_tos:
            if r.startswith("full") and not self.full_ok:
                replies.append("452 4.2.2 <%s>: mailbox full" % r)
            elif r.startswith("gone"):
                replies.append("550 5.1.1 <%s>: no such mailbox" % r)
            else:
                replies.append("250 2.0.0 <%s>: saved" % r)
        return "\r\n".join(replies)   # aiosmtpd pushes them as one write: one reply each


class LmtpTcp(Controller):
    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


class LmtpUnix(UnixSocketController):
    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


def _logged(s, pattern, timeout=20):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def _queue(s):
    r = s.postern("queue", "list", "--json", check=True)
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def _status(s, addr):
    for m in _queue(s):
        for r in m.get("recipients", []):
            if r["address"] == addr:
                return r["status"]
    return None


def _dsn(s, user):
    (path,) = s.wait_delivered(user, 1)
    with open(path, "rb") as f:
        m = email.message_from_bytes(f.read(), policy=email.policy.compat32)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    st = [p for p in m.get_payload() if p.get_content_type() == "message/delivery-status"]
    return st[0].get_payload()[1:]


ROUTE_NAMED = """
stage deliver {
  action "to the store" {
    for r in rcpt_list { if r.domain == "store.test" { lmtp(r, "store"); } }
  }
}
"""


def test_lmtp_unix_socket_per_recipient_replies_and_restart():
    store = Store()
    d = tempfile.mkdtemp(prefix="postern-lmtp-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "lmtp")
    ctl = LmtpUnix(store, unix_socket=sock)
    ctl.start()
    os.chmod(sock, 0o666)   # the agent runs as the postern user
    try:
        conf = f'transport "store" {{ type = "lmtp"; address = "unix:{sock}"; }}\n'
        with rules_suite(ROUTE_NAMED, conf) as s:
            rcpts = ["ok@store.test", "full@store.test", "gone@store.test"]
            s.send("alice@example.test", rcpts, make_message(1, subject="lmtp"))
            wait_for(lambda: store.got, 20, "the LMTP transaction")
            assert store.got[0][0] == "alice@example.test"
            assert store.got[0][1] == rcpts, store.got
            assert b"Subject: lmtp" in store.got[0][2]
            relay = re.escape(f"unix:{sock}")
            _logged(s, rf"to=<ok@store\.test>, relay={relay}, .*dsn=2\.0\.0, status=sent")
            _logged(s, rf"to=<full@store\.test>, relay={relay}, .*dsn=4\.2\.2, status=deferred "
                       r"\(host .* said: 452 4\.2\.2 <full@store\.test>: mailbox full \(in reply "
                       r"to end of DATA\)\)")
            _logged(s, rf"to=<gone@store\.test>, relay={relay}, .*dsn=5\.1\.1, status=bounced")
            (r,) = _dsn(s, "alice")
            assert r["Final-Recipient"] == "rfc822; gone@store.test"
            assert r["Action"] == "failed" and r["Status"] == "5.1.1"
            assert "550 5.1.1" in r["Diagnostic-Code"], r["Diagnostic-Code"]
            wait_for(lambda: _status(s, "full@store.test") == "deferred", 20, "full@ deferred")
            assert _status(s, "ok@store.test") == "delivered"
            # a new qmgr routes the deferred recipient the same way (the deliver
            # stage runs again at every activation)
            for pid in s.child_pids("qmgr"):
                os.kill(pid, signal.SIGKILL)
            store.full_ok = True
            wait_for(lambda: s.postern("queue", "flush").returncode == 0, 20, "flush")
            wait_for(lambda: len(store.got) == 2, 30, "the retry over LMTP")
            assert store.got[1][1] == ["full@store.test"], store.got
            s.wait_queue_empty()
    finally:
        ctl.stop()


ROUTE_TCP = """
stage deliver {
  action "to the store" {
    for r in rcpt_list { if r.domain == "store.test" { lmtp(r, "[127.0.0.1]:%d"); } }
  }
}
"""


def test_lmtp_tcp_mixed_replies_and_rcpt_refusal():
    store = Store()
    port = free_port()
    ctl = LmtpTcp(store, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        with rules_suite(ROUTE_TCP % port) as s:
            rcpts = ["gone1@store.test", "refused@store.test", "ok1@store.test",
                     "full1@store.test"]
            s.send("alice@example.test", rcpts, make_message(2))
            wait_for(lambda: store.got, 20, "the LMTP transaction")
            assert store.got[0][1] == ["gone1@store.test", "ok1@store.test", "full1@store.test"]
            relay = re.escape(f"127.0.0.1[127.0.0.1]:{port}")
            _logged(s, rf"to=<ok1@store\.test>, relay={relay}, .*status=sent")
            _logged(s, rf"to=<full1@store\.test>, relay={relay}, .*dsn=4\.2\.2, status=deferred")
            _logged(s, rf"to=<gone1@store\.test>, relay={relay}, .*dsn=5\.1\.1, status=bounced")
            _logged(s, rf"to=<refused@store\.test>, relay={relay}, .*dsn=5\.1\.1, status=bounced "
                       r".*\(in reply to RCPT TO\)")
            got = {r["Final-Recipient"]: r for r in _dsn(s, "alice")}
            assert set(got) == {"rfc822; gone1@store.test", "rfc822; refused@store.test"}, got
            assert all(r["Action"] == "failed" for r in got.values())
            wait_for(lambda: _status(s, "full1@store.test") == "deferred", 20, "full1@ deferred")
    finally:
        ctl.stop()


class Peer:
    def __init__(self):
        self.got = []

    async def handle_DATA(self, server, session, envelope):
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 forwarded ok"


def test_forward_and_discard_transport_and_bad_lmtp_address():
    peer = Peer()
    port = free_port()
    ctl = Controller(peer, hostname="127.0.0.1", port=port)
    ctl.start()
    rules = """
stage deliver {
  action "route" {
    for r in rcpt_list {
      if r.local_part == "fwd" { forward(r, "[127.0.0.1]:%d"); }
      else if r.local_part == "void" { transport(r, "null"); }
      else if r.local_part == "partner" { transport(r, "partner"); }
      else if r.local_part == "nowhere" { transport(r, "missing"); }
      else if r.local_part == "bad" { lmtp(r, `unix:/x/../${r.local_part}`); }
      else if r.local_part == "own" { lmtp(r, "unix:SPOOL/private/cleanup"); }
    }
  }
}
""" % port
    try:
        conf = ('transport "null" { type = "discard"; }\n'
                f'transport "partner" {{ type = "smtp"; nexthop = "[127.0.0.1]:{port}"; }}\n')
        with rules_suite(lambda s: rules.replace("SPOOL", s.spool), conf) as s:
            s.send("alice@example.test", ["fwd@far.test", "void@example.test",
                                          "nowhere@example.test", "bad@example.test",
                                          "own@example.test", "partner@example.test"],
                   make_message(3))
            wait_for(lambda: sum(len(rs) for _, rs in peer.got) == 2, 20, "the forwarded mail")
            # forward() and the smtp transport name the same next hop: one transaction
            assert len(peer.got) == 1, peer.got
            got = sorted(r for _, rs in peer.got for r in rs)
            assert got == ["fwd@far.test", "partner@example.test"], peer.got
            assert all(f == "alice@example.test" for f, _ in peer.got)
            _logged(s, rf"to=<fwd@far\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, "
                       r".*status=sent \(250 2\.0\.0 forwarded ok\)")
            _logged(s, r"to=<void@example\.test>, relay=local, .*status=discarded")
            _logged(s, r'to=<nowhere@example\.test>, relay=none, .*dsn=4\.3\.5, status=deferred '
                       r'\(no transport "missing" in the configuration \(chosen by rule "route"\)\)')
            _logged(s, r"to=<bad@example\.test>, relay=none, .*dsn=4\.3\.5, status=deferred "
                       r"\(lmtp: expected \"unix:/absolute/path\"")
            _logged(s, r"to=<own@example\.test>, relay=none, .*dsn=4\.3\.5, status=deferred "
                       r"\(lmtp: .*/private/cleanup is one of Postern's own sockets")
            assert not os.path.exists(os.path.join(s.mail, "void")), "discarded mail delivered"
    finally:
        ctl.stop()
