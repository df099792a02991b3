"""SMTP server behaviour through real sockets: the dialogue, pipelining,
relay control, limits, IPv6, and a real client (swaks)."""
import os
import socket
import subprocess
import time

from suite import SmtpClient, Suite, make_message, strip_delivery_headers, wait_for


Raw = SmtpClient      # test_esmtp imports it from here


def test_dialogue_and_extensions():
    with Suite() as s:
        r = Raw(s.port)
        code, lines = r.reply()
        assert code == 220 and "mx.example.test" in lines[0]
        code, lines = r.cmd("EHLO client.example.test")
        assert code == 250
        ext = {l[4:].split()[0].upper() for l in lines[1:]}
        for e in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"):
            assert e in ext, lines
        assert any(l[4:].upper().startswith("SIZE 52428800") for l in lines), lines
        assert r.cmd("NOOP")[0] == 250
        code, lines = r.cmd("VRFY alice")
        assert code == 252 and lines[0].startswith("252 2."), lines
        assert r.cmd("HELP")[0] == 214
        code, lines = r.cmd("FOO bar")
        assert code == 502 and lines[0].startswith("502 5.5."), lines
        code, lines = r.cmd("RCPT TO:<alice@example.test>")
        assert code == 503 and lines[0].startswith("503 5.5."), lines
        assert r.cmd("DATA")[0] == 503
        code, lines = r.cmd("MAIL FROM:<a@example.test> BOGUS=1")
        assert code == 555 and lines[0].startswith("555 5.5.4"), lines
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 503   # nested MAIL
        assert r.cmd("RSET")[0] == 250
        code, lines = r.cmd("MAIL FROM:<bad address>")
        assert code == 501 and "5.1.7" in lines[0], lines
        assert r.cmd("MAIL FROM:<>")[0] == 250                  # null sender
        code, lines = r.cmd("RCPT TO:<no-at-sign-but-@>")
        assert code == 501 and "5.1.3" in lines[0], lines
        assert r.cmd("RCPT TO:<@relay.example:alice@example.test>")[0] == 250   # source route
        # parsed (no 501), but no mailbox can be named after it: unknown here
        code, lines = r.cmd('RCPT TO:<"quoted local"@example.test>')
        assert code == 550 and "5.1.1" in lines[0], lines
        assert r.cmd("RCPT TO:<Postmaster>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250 and lines[0].startswith("250 2.0.0 Ok: queued as "), lines
        code, lines = r.cmd("X" * 600)
        assert code == 500 and "5.5.2" in lines[0], lines
        assert r.cmd("NOOP")[0] == 250           # session goes on after errors
        assert r.cmd("QUIT")[0] == 221
        assert r.closed()


def test_pipelined_transaction_gets_ordered_replies():
    with Suite() as s:
        r = Raw(s.port)
        r.reply()
        r.cmd("EHLO pipe.example.test")
        r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nobody@remote.invalid>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        codes = [r.reply()[0] for _ in range(5)]
        assert codes == [250, 250, 250, 250, 354], codes   # relay from loopback is allowed
        r.send("Subject: pipelined\r\n\r\n..dot\r\n.\r\nMAIL FROM:<b@example.test>\r\n"
               "RCPT TO:<carol@example.test>\r\nDATA\r\n")
        codes = [r.reply()[0] for _ in range(4)]
        assert codes == [250, 250, 250, 354], codes
        r.send("Subject: second\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        assert r.reply()[0] == 250 and r.reply()[0] == 221
        s.wait_delivered("alice", 1)
        s.wait_delivered("bob", 1)
        s.wait_delivered("carol", 1)
        data = open(s.delivered("alice")[0], "rb").read()
        assert data.endswith(b"\n\n.dot\n"), data


def test_relay_from_outside_mynetworks_is_denied():
    with Suite(mynetworks='["127.0.0.1/32"]') as s:
        r = Raw(s.port, source="127.0.0.2")
        r.reply()
        r.cmd("EHLO outside.example")
        assert r.cmd("MAIL FROM:<spammer@outside.example>")[0] == 250
        code, lines = r.cmd("RCPT TO:<victim@remote.example>")
        assert code == 554 and lines[0].startswith("554 5.7.1") and "Relay access denied" in lines[0], lines
        for trick in ("victim%remote.example@example.test", "victim@remote.example@example.test",
                      "remote.example!victim@example.test"):
            code, lines = r.cmd(f"RCPT TO:<{trick}>")
            # never relayed: either refused or treated as a local (undeliverable) name
            assert code in (250, 501, 550, 553, 554), (trick, lines)
        assert r.cmd("RCPT TO:<alice@example.test>")[0] == 250    # local still fine
        assert r.cmd("RCPT TO:<POSTMASTER@EXAMPLE.TEST>")[0] == 250
        r.cmd("QUIT")
        # inside mynetworks the same relay attempt is accepted
        r = Raw(s.port, source="127.0.0.1")
        r.reply()
        r.cmd("EHLO inside.example")
        r.cmd("MAIL FROM:<a@example.test>")
        assert r.cmd("RCPT TO:<someone@remote.example>")[0] == 250
        r.cmd("QUIT")


def test_size_limits_and_dot_only_crlf_ends_data():
    with Suite(limits="limits { message_size = 10k; recipients = 3; }") as s:
        r = Raw(s.port)
        r.reply()
        code, lines = r.cmd("EHLO x.example")
        assert any("SIZE 10240" in l for l in lines), lines
        code, lines = r.cmd("MAIL FROM:<a@example.test> SIZE=20000")
        assert code == 552 and "5.3.4" in lines[0], lines
        assert r.cmd("MAIL FROM:<a@example.test> SIZE=100")[0] == 250
        for u in ("alice", "bob", "carol"):
            assert r.cmd(f"RCPT TO:<{u}@example.test>")[0] == 250
        code, lines = r.cmd("RCPT TO:<dave@example.test>")
        assert code == 452 and "4.5.3" in lines[0], lines
        assert r.cmd("DATA")[0] == 354
        r.send("Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 200 + ".\r\n")
        code, lines = r.reply()
        assert code == 552 and "5.3.4" in lines[0], lines
        assert r.cmd("RSET")[0] == 250
        # a bare LF "dot line" does not end DATA: only CRLF.CRLF does
        r.cmd("MAIL FROM:<a@example.test>")
        r.cmd("RCPT TO:<alice@example.test>")
        assert r.cmd("DATA")[0] == 354
        r.send("Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
        code, lines = r.reply()
        assert code == 550 and "5.6.0" in lines[0], lines   # bare LF refused
        assert r.cmd("NOOP")[0] == 250
        r.cmd("QUIT")
        time.sleep(0.5)
        assert not s.queue_files("incoming", "active", "deferred", "tmp"), "partial file left"
        assert not s.delivered("alice")


def test_ipv6_listener_and_swaks_pipelining():
    s = Suite(start=False)
    with s.start_with_conf(s.conf_text.replace(
            f'address = ["127.0.0.1:{s.port}"]',
            f'address = ["127.0.0.1:{s.port}", "[::1]:{s.port}"]')):
        r = Raw(s.port, host="::1", family=socket.AF_INET6)
        assert r.reply()[0] == 220
        r.cmd("EHLO v6.example")
        r.cmd("MAIL FROM:<a@example.test>")
        assert r.cmd("RCPT TO:<alice@example.test>")[0] == 250
        r.cmd("QUIT")
        out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(s.port),
                              "--pipeline", "--from", "swaks@example.test",
                              "--to", "bob@example.test", "--header", "Subject: via swaks",
                              "--body", "swaks body"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "queued as" in out.stdout
        got = s.wait_delivered("bob", 1)
        data = open(got[0], "rb").read()
        assert b"Subject: via swaks" in data and b"swaks body" in data
        # Message-ID and Date are added by cleanup when missing
        body = strip_delivery_headers(data)
        assert b"\nMessage-ID: <" in b"\n" + body or b"Message-Id: <" in body


def test_many_messages_per_connection_and_unstuffing():
    with Suite() as s:
        with s.smtp() as c:
            c.ehlo("multi.example")
            for i in range(30):
                c.sendmail("a@example.test", ["carol@example.test"],
                           make_message(i, body=f".\r\n..\r\n...x\r\nmsg {i}\r\n"))
        got = s.wait_delivered("carol", 30)
        for p in got:
            body = strip_delivery_headers(open(p, "rb").read())
            assert b"\n\n.\n..\n...x\nmsg " in body, body[-80:]


def _switches(pid):
    """Context switches of every thread of pid so far."""
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/status") as f:
            for line in f:
                if "ctxt_switches:" in line:     # voluntary and nonvoluntary
                    n += int(line.split()[1])
    return n


def test_a_connection_wakes_one_smtpd_process():
    """The smtpd processes share the listening socket; a connection must
    wake one of them, not all (smtpd_io.c: EPOLLEXCLUSIVE on the loop's own
    epoll instance). A connection that arrives while both processes wait
    wakes the first of them, so spaced-out sessions are all served by one
    and the other sleeps through. Attached plainly, or through an epoll
    instance of its own, each connection woke both processes."""
    with Suite(processes='processes { smtpd = 2; delivery = 1; }') as s:
        pids = s.child_pids("smtpd")
        assert len(pids) == 2, pids
        time.sleep(0.5)                        # start-up done in both
        before = {p: _switches(p) for p in pids}
        for i in range(100):
            time.sleep(0.02)                   # both processes back to waiting
            c = SmtpClient(s.port)
            assert c.reply()[0] == 220
            assert c.cmd("QUIT")[0] == 221
            c.close()
        time.sleep(0.02)
        woke = sorted(_switches(p) - before[p] for p in pids)
        assert woke[1] >= 100, woke            # the one serving: woken per session at least
        assert woke[0] < 20, woke              # the other: not per connection
