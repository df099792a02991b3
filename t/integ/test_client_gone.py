"""A client that hangs up after its final "." while cleanup is still
working on the message (here: a DKIM key lookup that the DNS never
answers) costs nothing but that message. smtpd used to send cleanup an
abort after END, and cleanup freed the transaction its auth worker was
still using: a use after free that any client on port 25 could trigger
(cleanup killed by signal 11, the other messages in flight lost). Now the
connection to cleanup is closed without an abort, cleanup lets the worker
finish, and cleanup keeps serving. (Such a message may still be queued,
when the worker goes straight on to the commit: its client heard no 250
and sends it again, a duplicate as RFC 5321 6.1 accepts; never a loss.)"""
import os
import socket
import time

from suite import Suite, make_message, wait_for


def blackhole_dns(d):
    """An unbound.conf whose slow.test queries go to a port that never answers."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    ub = os.path.join(d, "unbound.conf")
    with open(ub, "w") as f:
        f.write('server:\n  module-config: "iterator"\n  do-not-query-localhost: no\n'
                '  local-zone: "." static\n  local-zone: "slow.test." transparent\n'
                'forward-zone:\n  name: "slow.test."\n'
                f'  forward-addr: 127.0.0.1@{hole.getsockname()[1]}\n')
    os.chmod(ub, 0o644)
    return hole, ub


MSG = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=slow.test; s=sel;\r\n"
       b" h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
       b" b=dGVzdA==\r\n"
       b"From: a@slow.test\r\nTo: bob@example.test\r\nSubject: x\r\n\r\nhi\r\n")


def hang_up_after_dot(s):
    c = socket.create_connection((s.host, s.port))
    f = c.makefile("rb")
    f.readline()
    for cmd in (b"EHLO c.test", b"MAIL FROM:<a@slow.test>", b"RCPT TO:<bob@example.test>",
                b"DATA"):
        c.sendall(cmd + b"\r\n")
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                break
    c.sendall(MSG + b".\r\n")
    time.sleep(0.5)                 # cleanup's worker waits for the DNS
    c.shutdown(socket.SHUT_RDWR)
    f.close()
    c.close()


def test_client_gone_while_cleanup_checks_dkim():
    s = Suite(start=False, mynetworks='["192.0.2.0/24"]')
    hole, ub = blackhole_dns(s.dir)
    conf = (s.conf_text + f'dns {{ unbound_config = "{ub}"; timeout = 2s; }}\n'
            'authentication { dkim = true; }\n')
    try:
        with s.start_with_conf(conf) as s:
            for _ in range(3):
                hang_up_after_dot(s)
            time.sleep(3)           # the lookups time out; the workers finish
            # cleanup still serves: an ordinary message goes through
            s.send("carol@example.test", ["bob@example.test"], make_message(1))

            def carols():
                return [p for p in s.delivered("bob")
                        if b"carol@example.test" in open(p, "rb").read()]
            wait_for(carols, 30, "carol's message in bob's Maildir")
            log = s.log()
            assert "killed by signal" not in log and "restart" not in log, log[-4000:]
            assert "protocol error" not in log, log[-4000:]
    finally:
        hole.close()
