"""Outbound mail found by MX (smtp/smtp_resolve.c through lib/dns): two
Postern instances on 127.0.0.1 and 127.0.0.2 (same port), with DNS answered
from the local-data of a test unbound.conf (no network). Mail for b.test
submitted to A reaches B's Maildir and back; a null MX bounces at once
(5.1.10) to the local sender; a dead first MX falls back to the second; an
MX host without address defers (4.4.3); A sends from
delivery.source_address; a domain that does not exist
bounces (5.1.2); being the best MX of a domain that is not ours
defers 4.4.6 (mail loops back to myself)."""
import os
import smtplib
import tempfile

import peerutil
from dnszone import dns_conf
from peerutil import logged
from suite import Suite, free_port, make_message, wait_for

ZONE = [
    "a.test. 300 IN MX 10 mx.a.test.",
    "mx.a.test. 300 IN A 127.0.0.1",
    "b.test. 300 IN MX 10 mx.b.test.",
    "mx.b.test. 300 IN A 127.0.0.2",
    "null.test. 300 IN MX 0 .",
    "two.test. 300 IN MX 10 dead.two.test.",
    "two.test. 300 IN MX 20 mx.b.test.",
    "dead.two.test. 300 IN A 127.0.0.3",
    "noaddr.test. 300 IN MX 10 gone.noaddr.test.",
    "loop.test. 300 IN MX 10 mx.a.test.",
    "loop.test. 300 IN MX 20 mx.b.test.",
] + [f"many.test. 300 IN MX {i} h{i}.many.test." for i in range(1, 12)] + [
    "many.test. 300 IN MX 12 mx.b.test.",   # the 12th host: past SMTP_MAX_MX_HOSTS
    "xn--bcher-kva.test. 300 IN MX 10 mx.u.test.",     # bücher.test
    "mx.u.test. 300 IN A 127.0.0.4",
]


def unbound_conf(zone=ZONE):
    """An unbound.conf answering zone (local-data lines) and nothing else."""
    d = tempfile.mkdtemp(prefix="postern-ub-")
    os.chmod(d, 0o755)
    return peerutil.unbound_conf(d, zone)


def pair():
    """(A, B): A on 127.0.0.1 is a.test, B on 127.0.0.2 is b.test and two.test."""
    ub = unbound_conf()
    port = free_port()
    dns = dns_conf(ub, dnssec=False)
    a = Suite(host="127.0.0.1", port=port, local_domains='["localhost", "a.test"]',
              delivery=f'smtp_port = {port}; source_address = "127.0.0.5";', extra_conf=dns)
    try:
        b = Suite(host="127.0.0.2", port=port,
                  local_domains='["localhost", "b.test", "two.test"]',
                  delivery=f"smtp_port = {port};", extra_conf=dns)
    except Exception:
        a.__exit__(None, None, None)
        raise
    return a, b


def test_mx_relay_between_two_posterns():
    a, b = pair()
    with a, b:
        a.send("alice@a.test", ["bob@b.test"], make_message(1, subject="to b"))
        (path,) = b.wait_delivered("bob", 1)
        with open(path, "rb") as f:
            assert b"Subject: to b" in f.read()
        logged(a, r"to=<bob@b\.test>, relay=mx\.b\.test\[127\.0\.0\.2\]:\d+, .*status=sent")
        logged(b, r"connect from \[127\.0\.0\.5\]")     # delivery.source_address
        b.send("bob@b.test", ["alice@a.test"], make_message(2, subject="back to a"))
        (path,) = a.wait_delivered("alice", 1)
        with open(path, "rb") as f:
            assert b"Subject: back to a" in f.read()


def test_null_mx_bounces_at_once_and_dead_first_mx_falls_back():
    a, b = pair()
    with a, b:
        a.send("alice@a.test", ["nobody@null.test"], make_message(3))
        logged(a, r"to=<nobody@null\.test>, .*dsn=5\.1\.10, status=bounced")
        (path,) = a.wait_delivered("alice", 1)
        with open(path, "rb") as f:
            assert b"5.1.10" in f.read()
        a.send("alice@a.test", ["carol@two.test"], make_message(4, subject="via mx 20"))
        (path,) = b.wait_delivered("carol", 1)
        logged(a, r"connect to dead\.two\.test\[127\.0\.0\.3\]:\d+|connect to .*127\.0\.0\.3")
        logged(a, r"to=<carol@two\.test>, .*127\.0\.0\.2\]:\d+, .*status=sent")


def test_mx_without_address_defers_and_unknown_domain_bounces():
    a, b = pair()
    with a, b:
        a.send("alice@a.test", ["x@noaddr.test"], make_message(5))
        logged(a, r"to=<x@noaddr\.test>, relay=none, .*dsn=4\.4\.3, status=deferred")
        # at most 10 MX hosts are looked up (each costs two lookups of up to
        # dns.timeout): eleven without address before the one that has one
        a.send("alice@a.test", ["x@many.test"], make_message(6))
        logged(a, r"to=<x@many\.test>, relay=none, .*dsn=4\.4\.3, status=deferred")
        a.send("alice@a.test", ["x@nx.test"], make_message(6))
        logged(a, r"to=<x@nx\.test>, .*dsn=5\.1\.2, status=bounced")
        # A is the best MX of loop.test but not its final destination
        a.send("alice@a.test", ["x@loop.test"], make_message(7))
        logged(a, r"to=<x@loop\.test>, .*dsn=4\.4\.6, status=deferred \(mail for loop\.test "
                  r"loops back to myself")


def test_mx_of_a_unicode_domain_is_its_a_label():
    """RFC 6531 / 8616: an SMTPUTF8 recipient in U-labels is routed by the
    MX of its A-labels (before, the UTF-8 name was looked up as it stood:
    "domain not found", a bounce); a name that is no IDN bounces 5.1.2."""
    from test_relay import start_peer
    port = free_port()
    peer, _, ctl = start_peer(port=port, host="127.0.0.4", enable_SMTPUTF8=True)
    try:
        with Suite(host="127.0.0.1", port=port, local_domains='["localhost", "a.test"]',
                   delivery=f"smtp_port = {port};",
                   extra_conf=dns_conf(unbound_conf(), dnssec=False)) as a:
            c = smtplib.SMTP("127.0.0.1", a.port, timeout=30)
            c.ehlo("client.example.test")
            c.sendmail("alice@a.test", ["carol@B\u00fccher.test", "dan@b\u00fccher\u2028.test"],
                       make_message(8, subject="unicode"), mail_options=["SMTPUTF8"])
            c.quit()
            # (the log shows bytes outside ASCII as \xHH)
            logged(a, r"to=<carol@B\\xc3\\xbccher\.test>, relay=mx\.u\.test\[127\.0\.0\.4\]:\d+, "
                      r".*status=sent")
            logged(a, r"to=<dan@.*dsn=5\.1\.2, status=bounced .*no valid internationalized name")
            wait_for(lambda: len(peer.got) == 1, 10, "the peer's copy")
            assert peer.got[0][1] == ["carol@B\u00fccher.test"], peer.got
            assert "SMTPUTF8" in peer.got[0][3], peer.got
    finally:
        ctl.stop()
