"""8-bit mail to a next hop that does not offer 8BITMIME (smtp/smtp_mime.c,
lib/mail/mime8.c): a multipart message with an 8bit text part arrives as
quoted-printable (7-bit on the wire, the same text once decoded, other
parts untouched); a message with an 8-bit header has no 7-bit form and
bounces 5.6.3 to the sender, with nothing sent to the next hop."""
import email
import email.policy
import socket
import threading

from peerutil import logged
from suite import Suite, free_port, make_message, wait_for


class Sink7:
    """A minimal SMTP server that offers no 8BITMIME (aiosmtpd always does):
    records (mail_from_line, content) per message."""

    def __init__(self, port):
        self.got = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(8)
        self.stop_flag = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stop_flag:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        c.settimeout(30)
        f = c.makefile("rb")
        c.sendall(b"220 sink7 ESMTP\r\n")
        mail = None
        try:
            for line in f:
                cmd = line.upper()
                if cmd.startswith(b"EHLO"):
                    c.sendall(b"250-sink7\r\n250 PIPELINING\r\n")
                elif cmd.startswith(b"MAIL"):
                    mail = line.rstrip(b"\r\n")
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif cmd.startswith(b"RCPT"):
                    c.sendall(b"250 2.1.5 ok\r\n")
                elif cmd.startswith(b"DATA"):
                    c.sendall(b"354 go\r\n")
                    data = b""
                    for l in f:
                        if l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b".") else l
                    self.got.append((mail, data))
                    c.sendall(b"250 2.0.0 queued as SEVEN\r\n")
                elif cmd.startswith(b"QUIT"):
                    c.sendall(b"221 bye\r\n")
                    break
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            pass
        c.close()

    def close(self):
        self.stop_flag = True
        self.srv.close()


TEXT = "Grüße aus Köln = 100 € \r\n" + "lang " * 30 + "\r\n"


def multipart_message():
    return ("From: alice@example.test\r\nTo: far@remote.test\r\nSubject: 8bit test\r\n"
            "Message-ID: <m8@example.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XyZ\"\r\n\r\n"
            "--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT +
            "--XyZ\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XyZ--\r\n").encode()


def send(s, msg):
    with s.smtp() as c:
        c.ehlo("client.example.test")
        c.sendmail("alice@example.test", ["far@remote.test"], msg,
                   mail_options=["BODY=8BITMIME"])


def test_8bit_multipart_goes_as_quoted_printable():
    port = free_port()
    sink = Sink7(port)
    try:
        with Suite(extra_conf=f'delivery {{ relayhost = "[127.0.0.1]:{port}"; }}\n') as s:
            send(s, multipart_message())
            wait_for(lambda: sink.got, 20, "the message at the 7-bit sink")
            mail, data = sink.got[0]
            assert b"BODY=" not in mail.upper(), mail
            assert all(b < 0x80 for b in data), "8-bit byte on the wire"
            assert max(len(l) for l in data.split(b"\r\n")) <= 998
            m = email.message_from_bytes(data, policy=email.policy.default)
            text, blob = m.get_payload()
            assert text["Content-Transfer-Encoding"] == "quoted-printable"
            # the CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1)
            assert text.get_payload(decode=True) == TEXT[:-2].encode()
            assert b"=E2=82=AC=20\r\n" in data     # a blank before CRLF is encoded
            assert blob["Content-Transfer-Encoding"] == "base64"
            assert blob.get_payload(decode=True) == b"\x00\x01\x02\x03"
            logged(s, r"host 127\.0\.0\.1\[127\.0\.0\.1\]:\d+ does not offer 8BITMIME: "
                      r"content converted to 7bit")
            logged(s, r"to=<far@remote\.test>, .*status=sent \(250 2\.0\.0 queued as SEVEN\)")
    finally:
        sink.close()


def test_8bit_header_bounces_with_5_6_3():
    port = free_port()
    sink = Sink7(port)
    try:
        with Suite(extra_conf=f'delivery {{ relayhost = "[127.0.0.1]:{port}"; }}\n') as s:
            msg = make_message(1, subject="Grüße", body="plain body\r\n")
            send(s, msg)
            (path,) = s.wait_delivered("alice", 1)
            with open(path, "rb") as f:
                r = email.message_from_bytes(f.read(), policy=email.policy.compat32)
            st = [p for p in r.get_payload() if p.get_content_type() == "message/delivery-status"]
            rcpt = st[0].get_payload()[1]
            assert rcpt["Action"] == "failed" and rcpt["Status"] == "5.6.3", rcpt.items()
            assert "no 7-bit form" in rcpt["Diagnostic-Code"], rcpt["Diagnostic-Code"]
            assert "8-bit byte in a header" in rcpt["Diagnostic-Code"]
            assert not sink.got
    finally:
        sink.close()
