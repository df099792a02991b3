"""TLS in smtpd with real clients (swaks, openssl s_client, Python ssl) and
real certificates made by `openssl req -x509`: STARTTLS, implicit TLS,
protocol range, SNI, STARTTLS injection (CVE-2011-0411), state reset
after STARTTLS (RFC 3207 4.2), required TLS, handshake timeout."""
import re
import socket
import time

from suite import wait_for
from tlsutil import Raw, s_client, swaks, tls_suite


def received(path):
    """The Received field (unfolded) of a delivered message."""
    text = open(path, encoding="utf-8", errors="replace").read()
    m = re.search(r"^Received: .*?(?=^\S)", text, re.S | re.M)
    return " ".join(m.group(0).split())


def test_starttls_swaks_delivers():
    with tls_suite() as s:
        r = swaks(s.port, "--tls", "--to", "bob@example.test")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "250-STARTTLS" in r.stdout and "TLS started" in r.stdout, r.stdout
        got = s.wait_delivered("bob", 1)
        rcv = received(got[0])
        assert "with ESMTPS " in rcv, rcv
        assert re.search(r"\(using TLSv1\.3 with cipher TLS_\w+\)", rcv), rcv
        assert re.search(r"TLS connection established from \[127\.0\.0\.1\]:\d+: TLSv1\.3 "
                         r"with cipher \S+ \(\d+/\d+ bits\)", s.log()), s.log()


def test_implicit_tls_swaks():
    with tls_suite([("submissions", 'tls = "implicit";')]) as s:
        r = swaks(s.ports["submissions"], "--tlsc", "--to", "bob@example.test")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "STARTTLS" not in r.stdout, r.stdout          # no STARTTLS inside TLS
        rcv = received(s.wait_delivered("bob", 1)[0])
        assert "with ESMTPS " in rcv and "(using TLSv1.3" in rcv, rcv
        # a plaintext client on the implicit port never sees a greeting
        c = socket.create_connection(("127.0.0.1", s.ports["submissions"]), timeout=10)
        c.sendall(b"EHLO plain.example.test\r\n")
        data = b""
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"220" not in data and b"250" not in data, data
        c.close()


def test_protocol_versions():
    with tls_suite() as s:
        for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            r = s_client(s.port, "-starttls", "smtp", flag, "-brief")
            out = r.stdout + r.stderr
            assert r.returncode == 0, out
            assert f"Protocol version: {name}" in out, out
        # the client offers TLSv1.1 (security level 0 lets it): refused
        r = s_client(s.port, "-starttls", "smtp", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                     "-brief")
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "Protocol version" not in out, out
        wait_for(lambda: "TLS handshake failed" in s.log(), 10, "handshake failure logged")


def test_protocols_key_limits_versions():
    with tls_suite(tls_kw={"protocols": '["TLSv1.3"]'}) as s:
        r = s_client(s.port, "-starttls", "smtp", "-tls1_2", "-brief")
        assert r.returncode != 0, r.stdout + r.stderr
        r = s_client(s.port, "-starttls", "smtp", "-tls1_3", "-brief")
        assert r.returncode == 0, r.stdout + r.stderr


def subject_cn(port, *args):
    r = s_client(port, *args)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"^subject=.*?CN\s*=\s*([\w.-]+)", out, re.M)
    assert m, out
    return m.group(1)


def test_sni_picks_domain_certificate():
    with tls_suite([("submissions", 'tls = "implicit";')],
                   tls_kw={"domains": ("a.test", "b.test")}) as s:
        for port, st in ((s.port, ("-starttls", "smtp")), (s.ports["submissions"], ())):
            assert subject_cn(port, *st, "-servername", "a.test") == "a.test"
            assert subject_cn(port, *st, "-servername", "B.Test") == "b.test"
            assert subject_cn(port, *st, "-servername", "mx.a.test") == "a.test"
            assert subject_cn(port, *st, "-servername", "other.test") == "mx.example.test"
            assert subject_cn(port, *st, "-noservername") == "mx.example.test"


def test_starttls_injection_refused():
    """CVE-2011-0411: commands pipelined after STARTTLS must never run."""
    with tls_suite() as s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        r.ehlo()
        r.send("STARTTLS\r\nRSET\r\n")          # one write
        code, lines = r.reply()
        assert code == 554 and lines[0].startswith("554 5.5.0"), lines
        assert r.closed()
        # The same in two writes, the second before the 220 is read: the
        # RSET either gets refused the same way or reaches the TLS layer as
        # garbage; it is never answered as a command.
        r = Raw(s.port)
        assert r.reply()[0] == 220
        r.ehlo()
        r.send("STARTTLS\r\n")
        r.send("RSET\r\n")
        time.sleep(0.5)
        data = b""
        try:
            while True:
                chunk = r.s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"250" not in data, data
        assert data.startswith(b"220 2.0.0") or data.startswith(b"554 5.5.0"), data
        wait_for(lambda: "TLS handshake failed" in s.log() or
                 s.log().count("Improper pipelining after STARTTLS") >= 2, 10,
                 "the second session to end")


def test_state_discarded_after_starttls():
    with tls_suite() as s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        assert "STARTTLS" in r.ehlo()
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        r.starttls()
        code, lines = r.cmd("MAIL FROM:<a@example.test>")
        assert code == 503 and lines[0].startswith("503 5.5.1"), lines     # EHLO forgotten
        ext = r.ehlo()
        assert "STARTTLS" not in ext, ext
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250     # no "nested MAIL"
        assert r.cmd("RCPT TO:<bob@example.test>")[0] == 250
        code, lines = r.cmd("STARTTLS")
        assert code == 554 and "already" in lines[0], lines
        assert r.cmd("QUIT")[0] == 221
        r.close()


def test_tls_required_listener():
    with tls_suite([("submission", 'tls = "required";')]) as s:
        r = Raw(s.ports["submission"])
        assert r.reply()[0] == 220
        assert "STARTTLS" in r.ehlo()
        code, lines = r.cmd("MAIL FROM:<a@example.test>")
        assert code == 530 and lines[0].startswith("530 5.7.0 Must issue a STARTTLS"), lines
        r.starttls()
        r.ehlo()
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        r.close()
        # the may-listener (tls.level = may) still takes plaintext mail
        r = Raw(s.port)
        assert r.reply()[0] == 220
        r.ehlo()
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        r.close()


def test_tls_level_encrypt_and_none():
    with tls_suite(tls_kw={"level": "encrypt"}) as s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        assert "STARTTLS" in r.ehlo()
        code, lines = r.cmd("MAIL FROM:<a@example.test>")
        assert code == 530 and lines[0].startswith("530 5.7.0"), lines
        r.close()
        r = swaks(s.port, "--tls", "--to", "bob@example.test")
        assert r.returncode == 0, r.stdout
    with tls_suite(tls_kw={"level": "none"}) as s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        assert "STARTTLS" not in r.ehlo()
        code, lines = r.cmd("STARTTLS")
        assert code == 502, lines
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        r.close()


def test_handshake_timeout():
    with tls_suite([("submissions", 'tls = "implicit";')], tls_kw={"timeout": "2s"}) as s:
        c = socket.create_connection(("127.0.0.1", s.ports["submissions"]), timeout=15)
        t0 = time.time()
        assert c.recv(1) == b""                  # closed by the server, nothing sent
        took = time.time() - t0
        assert 1.5 <= took < 8, took
        c.close()
        wait_for(lambda: "TLS handshake timeout from [127.0.0.1]" in s.log(), 5,
                 "timeout logged")
        # the STARTTLS handshake is bounded the same way
        r = Raw(s.port)
        assert r.reply()[0] == 220
        r.ehlo()
        assert r.cmd("STARTTLS")[0] == 220
        t0 = time.time()
        assert r.closed()
        assert time.time() - t0 < 8
