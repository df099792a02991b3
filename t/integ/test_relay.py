"""Outbound mail through the smtp agent (libexec/smtp): Postern relays to a
relayhost that is an aiosmtpd server on loopback. The message arrives
byte-exact (dot-stuffing undone, CRLF), a 550 bounces the recipient, a 451
defers it, STARTTLS with policy `verify` against a test-made CA passes and
a certificate for the wrong name defers, AUTH is seen by the peer, and a
message with a local and a remote recipient is split between the agents."""
import json
import os
import re
import socket
import subprocess
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from suite import Suite, free_port, make_message, wait_for


class Peer:
    """The relayhost: records every transaction; RCPT to reject@ gets 550,
    later@ gets 451."""

    def __init__(self):
        self.got = []            # (mail_from, rcpts, content, mail_options)
        self.auth = []           # (mechanism, login)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject@"):
            return "550 5.1.1 <%s>: no such user here" % address
        if address.startswith("later@"):
            return "451 4.3.2 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos),
                             envelope.original_content, list(envelope.mail_options)))
        return "250 2.0.0 queued as PEER1"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        with self.lock:
            self.auth.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.password != b"wrong"
        return AuthResult(success=ok, handled=False)


def start_peer(tls_context=None, port=None, host="127.0.0.1", **kw):
    peer = Peer()
    port = port or free_port()
    if tls_context is not None:
        kw.update(tls_context=tls_context, authenticator=peer.authenticate,
                  auth_require_tls=True)
    ctl = Controller(peer, hostname=host, port=port, **kw)
    ctl.start()
    return peer, port, ctl


def relay_conf(port, extra=""):
    return f'delivery {{ relayhost = "[127.0.0.1]:{port}"; {extra} }}\n'


def make_ca(d):
    ca, cakey = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=Postern Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", cakey, "-out", ca], check=True, capture_output=True)
    os.chmod(ca, 0o644)
    return ca, cakey


def make_server_cert(d, ca, cakey, san, name="peer"):
    key, csr, cert = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
                    "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
                   check=True, capture_output=True)
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def queue(s):
    r = s.postern("queue", "list", "--json", check=True)
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def logged(s, pattern, timeout=20):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def wire(msg):
    return msg if msg.endswith(b"\r\n") else msg + b"\r\n"


def test_relay_byte_exact_and_split_local_remote():
    peer, port, ctl = start_peer()
    try:
        with Suite(extra_conf=relay_conf(port)) as s:
            msg = make_message(7, body="Hi.\r\n.dot first\r\n..two\r\n.\r\nend\r\n")
            s.send("sender@example.test", ["far@remote.test", "bob@example.test"], msg)
            s.wait_delivered("bob", 1)
            wait_for(lambda: peer.got, 20, "the relayed message")
            mail_from, rcpts, content, _ = peer.got[0]
            assert mail_from == "sender@example.test" and rcpts == ["far@remote.test"]
            # cleanup prepends Received: the rest is the submitted message, byte-exact
            assert content.startswith(b"Received: "), content[:80]
            assert content.endswith(wire(msg)), content[-200:]
            logged(s, rf"to=<far@remote.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, "
                      r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 queued as PEER1\)")
            s.wait_queue_empty()
            # a line over 998 octets is folded on the wire, never sent longer
            long_body = ("y" * 2500 + "\r\n").encode()
            msg2 = make_message(8, body=long_body.decode())
            s.send("sender@example.test", ["far@remote.test"], msg2)
            wait_for(lambda: len(peer.got) == 2, 20, "the second message")
            c2 = peer.got[1][2]
            assert max(len(l) for l in c2.split(b"\r\n")) <= 998
            assert b"y" * 2500 in c2.replace(b"\r\n", b"")
    finally:
        ctl.stop()


def bucket_mate_port():
    """A free loopback port whose relayhost name "[127.0.0.1]:PORT" falls in
    qmgr's destination hash bucket of the local destination (qmgr_dest.c:
    (str_hash(name) + pool * 7919) % 1024, pool smtp 1, local 0 with name
    ""). Such a port once lost a message with a local and a remote
    recipient: building its second job freed the first one's destination."""
    def str_hash(s):
        h = 5381
        for c in s.encode():
            h = (h * 33 + c) & 0xffffffff
        return h
    want = str_hash("") % 1024
    for port in range(20000, 60000):
        if (str_hash(f"[127.0.0.1]:{port}") + 7919) % 1024 != want:
            continue
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    raise AssertionError("no free port in the local destination's bucket")


def test_relay_split_in_one_hash_bucket():
    peer, port, ctl = start_peer(port=bucket_mate_port())
    try:
        with Suite(extra_conf=relay_conf(port)) as s:
            for n in range(3):
                s.send("sender@example.test", ["far@remote.test", "bob@example.test"],
                       make_message(n))
                s.wait_delivered("bob", n + 1)
                wait_for(lambda: len(peer.got) == n + 1, 20, "the relayed message")
            s.wait_queue_empty()
    finally:
        ctl.stop()


def test_relay_550_bounces_451_defers():
    peer, port, ctl = start_peer()
    try:
        with Suite(extra_conf=relay_conf(port)) as s:
            s.send("sender@example.test", ["reject@remote.test", "later@remote.test",
                                           "ok@remote.test"], make_message(1))
            wait_for(lambda: peer.got, 20, "the accepted recipient relayed")
            assert peer.got[0][1] == ["ok@remote.test"]
            logged(s, r"to=<reject@remote.test>, relay=.*dsn=5\.1\.1, status=bounced .*550 5\.1\.1")
            logged(s, r"to=<later@remote.test>, relay=.*dsn=4\.3\.2, status=deferred .*451 4\.3\.2")

            def later_deferred():
                for m in queue(s):
                    for r in m.get("recipients", []):
                        if r["address"] == "later@remote.test" and r["status"] == "deferred":
                            return r
                return None
            r = wait_for(later_deferred, 20, "later@ deferred in the queue")
            assert "451 4.3.2 try again later" in r["reason"] and r["dsn"] == "4.3.2", r
    finally:
        ctl.stop()


def test_relay_size_and_smtputf8_refused_before_sending():
    """The peer announces SIZE 3000 and no SMTPUTF8: a bigger message
    bounces 5.3.4, an SMTPUTF8 one 5.6.7, and the peer gets neither."""
    peer, port, ctl = start_peer(data_size_limit=3000, enable_SMTPUTF8=False)
    try:
        with Suite(extra_conf=relay_conf(port)) as s:
            s.send("sender@example.test", ["big@remote.test"],
                   make_message(5, body="z" * 5000 + "\r\n"))
            logged(s, r"to=<big@remote.test>, .*dsn=5\.3\.4, status=bounced \(message size "
                      r"\d+ exceeds size limit 3000 of host")
            with s.smtp() as c:
                c.ehlo("client.example.test")
                c.sendmail("sender@example.test", ["utf@remote.test"], make_message(6),
                           mail_options=["SMTPUTF8"])
            logged(s, r"to=<utf@remote.test>, .*dsn=5\.6\.7, status=bounced \(SMTPUTF8 is "
                      r"required, but was not offered")
            assert not peer.got
    finally:
        ctl.stop()


def test_relay_starttls_verify_and_auth():
    with Suite(start=False) as s:
        ca, cakey = make_ca(s.dir)
        ctx = make_server_cert(s.dir, ca, cakey, "IP:127.0.0.1")
        peer, port, ctl = start_peer(tls_context=ctx)
        try:
            creds = os.path.join(s.dir, "relay-credentials")
            with open(creds, "w") as f:
                f.write(f"# host user password\n[127.0.0.1]:{port} relayuser s3cret\n")
            os.chown(creds, s.uid, s.gid)
            os.chmod(creds, 0o600)
            s.start_with_conf(s.conf_text + relay_conf(
                port, f'tls = "verify"; tls_ca_file = "{ca}"; relay_auth = "{creds}";'))
            s.send("sender@example.test", ["far@remote.test"], make_message(2))
            wait_for(lambda: peer.got, 20, "the relayed message")
            assert peer.auth and peer.auth[0][1] == b"relayuser" and peer.auth[0][2] == b"s3cret", peer.auth
            logged(s, r"TLS with 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: TLSv1\.[23] \S+, level verify "
                      r"\(delivery\.tls\), certificate trusted: verified")
            logged(s, r"to=<far@remote.test>, .*status=sent .*, tls=TLSv1\.[23]/\S+ verified=trusted")
        finally:
            ctl.stop()


def test_relay_verify_wrong_name_defers():
    with Suite(start=False) as s:
        ca, cakey = make_ca(s.dir)
        ctx = make_server_cert(s.dir, ca, cakey, "DNS:wrong.example")
        peer, port, ctl = start_peer(tls_context=ctx)
        try:
            s.start_with_conf(s.conf_text + relay_conf(
                port, f'tls = "verify"; tls_ca_file = "{ca}";'))
            s.send("sender@example.test", ["far@remote.test"], make_message(3))
            logged(s, r"to=<far@remote.test>, .*dsn=4\.7\.5, status=deferred .*not verified.*"
                      r"tls=TLSv1\.[23]/\S+ verified=untrusted")
            assert not peer.got
        finally:
            ctl.stop()


# Without a relayhost the next hop comes from MX: see test_relay_mx.py.


def test_relay_refused_and_silent_peer_defer():
    """A closed port defers 4.4.1; a peer that accepts but never greets is
    given up after delivery.command_timeout (4.4.2), nothing hangs."""
    import socket
    closed = free_port()
    with Suite(extra_conf=relay_conf(closed)) as s:
        s.send("sender@example.test", ["far@remote.test"], make_message(9))
        logged(s, r"to=<far@remote.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*dsn=4\.4\.1, "
                  r"status=deferred \(connect to .*Connection refused")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)            # the kernel completes the handshake; nobody speaks
    try:
        port = silent.getsockname()[1]
        with Suite(extra_conf=relay_conf(port, "command_timeout = 1s;")) as s:
            s.send("sender@example.test", ["far@remote.test"], make_message(10))
            logged(s, r"to=<far@remote.test>, .*dsn=4\.4\.2, status=deferred \(conversation "
                      r"with .* timed out \(waiting for the reply to initial greeting\)")
    finally:
        silent.close()


def test_relay_to_a_second_postern():
    """Postern relays to another Postern for which remote.test is local."""
    with Suite(extra_conf='domain "remote.test" { }\n') as far:
        with Suite(extra_conf=relay_conf(far.port)) as near:
            msg = make_message(11)
            near.send("sender@example.test", ["carol@remote.test"], msg)
            got = far.wait_delivered("carol", 1)
            data = open(got[0], "rb").read()
            assert data.endswith(msg.replace(b"\r\n", b"\n")), data[-300:]
            # two Received lines: the far side's and the near side's
            assert data.count(b"\nReceived: ") + data.startswith(b"Received: ") >= 2, data[:600]
            logged(near, rf"to=<carol@remote.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{far.port}, "
                         r".*status=sent \(250 ")


def test_relay_auth_failure_and_plaintext_defer():
    """A refused AUTH defers (never bounces); credentials are never sent
    without TLS: with policy may and no STARTTLS the mail is deferred."""
    with Suite(start=False) as s:
        ca, cakey = make_ca(s.dir)
        ctx = make_server_cert(s.dir, ca, cakey, "IP:127.0.0.1")
        peer, port, ctl = start_peer(tls_context=ctx)
        plain, pport, pctl = start_peer()
        try:
            creds = os.path.join(s.dir, "relay-credentials")
            with open(creds, "w") as f:
                f.write(f"[127.0.0.1]:{port} relayuser wrong\n127.0.0.1 u p\n")
            os.chown(creds, s.uid, s.gid)
            os.chmod(creds, 0o600)
            s.start_with_conf(s.conf_text + relay_conf(
                port, f'tls = "encrypt"; relay_auth = "{creds}";'))
            s.send("sender@example.test", ["far@remote.test"], make_message(12))
            logged(s, r"to=<far@remote.test>, .*dsn=4\.7\.8, status=deferred .*535 5\.7\.8.*"
                      r"in reply to AUTH")
            assert not peer.got and peer.auth
            s.stop()
            text = re.sub(r"^delivery \{ relayhost.*$", "", s.conf_text, flags=re.M)
            s.start_with_conf(text + relay_conf(pport, f'relay_auth = "{creds}";'))
            s.send("sender@example.test", ["far2@remote.test"], make_message(13))
            logged(s, r"to=<far2@remote.test>, .*dsn=4\.7\.0, status=deferred \(credentials "
                      r"for .* not sent over a session without TLS")
            assert not plain.got and not plain.auth
        finally:
            ctl.stop()
            pctl.stop()


class ScriptedPeer(threading.Thread):
    """A raw SMTP peer offering PIPELINING and DSN that answers MAIL and
    RCPT only once DATA arrived: a client that waits for each reply (no
    pipelining) would stall. Records every command line."""

    def __init__(self):
        super().__init__(daemon=True)
        import socket
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.lines = []
        self.data = b""

    def run(self):
        conn, _ = self.srv.accept()
        f = conn.makefile("rb")
        conn.sendall(b"220 peer.test ESMTP\r\n")
        held = []
        for raw in f:
            line = raw.rstrip(b"\r\n").decode()
            self.lines.append(line)
            verb = line[:4].upper()
            if verb == "EHLO":
                conn.sendall(b"250-peer.test\r\n250-PIPELINING\r\n250-DSN\r\n250 8BITMIME\r\n")
            elif verb in ("MAIL", "RCPT"):
                held.append(b"250 2.1.0 ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"".join(held) + b"354 go\r\n")
                while True:
                    l = f.readline()
                    if l in (b".\r\n", b""):
                        break
                    self.data += l
                conn.sendall(b"250 2.0.0 scripted ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"502 no\r\n")
        conn.close()
        self.srv.close()


def test_relay_pipelining_and_dsn_pass_through():
    peer = ScriptedPeer()
    peer.start()
    with Suite(extra_conf=relay_conf(peer.port, "command_timeout = 5s;")) as s:
        with s.smtp() as c:
            c.ehlo("client.example.test")
            c.sendmail("sender@example.test", ["far@remote.test"], make_message(14),
                       mail_options=["RET=HDRS", "ENVID=abc+2B1"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@remote.test"])
        logged(s, r"to=<far@remote.test>, .*status=sent \(250 2\.0\.0 scripted ok\)")
        assert "MAIL FROM:<sender@example.test> RET=HDRS ENVID=abc+2B1" in peer.lines, peer.lines
        assert ("RCPT TO:<far@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@remote.test"
                in peer.lines), peer.lines


def test_silent_relayhost_is_given_up_at_the_request_budget():
    """A relayhost that accepts the connection and never says a word: each
    wait of the smtp agent is cut to what is left of its request budget
    (600 s; 2 s here through the test knob), well before qmgr's 900 s, so
    the recipient is deferred and tried again later instead of qmgr giving
    up on a request the agent is still working on."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    os.environ["POSTERN_TEST_REQUEST_BUDGET_MS"] = "2000"
    try:
        with Suite(extra_conf=relay_conf(port, 'tls = "none";')) as s:
            s.send("sender@example.test", ["mute@remote.test"], make_message(1))
            conn, _ = lst.accept()
            m = logged(s, r"to=<mute@remote.test>, relay=.*status=deferred", 15)
            line = s.log()[m.start():].splitlines()[0]
            assert "timed out" in line and re.search(r" delay=[23]\.\d\d,", line), line
            conn.close()
    finally:
        del os.environ["POSTERN_TEST_REQUEST_BUDGET_MS"]
        lst.close()
