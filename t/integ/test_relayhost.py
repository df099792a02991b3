"""delivery.relayhost with Postfix's meaning of the brackets
(smtp/smtp_resolve.c): "host:port" is a domain looked up by MX (its MX
hosts in preference order, each address labelled with the MX host it
belongs to), "[host]:port" is that host's own A/AAAA (no MX lookup). DNS
comes from the local-data of a test unbound.conf; the next hop is an
aiosmtpd server on 127.0.0.2."""
from dnszone import dns_conf
from peerutil import logged, sink_on, unbound_conf
from suite import Suite, free_port, make_message, wait_for

ZONE = [
    # smart.test's best MX has no server; the second is the real one
    "smart.test. 300 IN MX 10 dead.smart.test.",
    "smart.test. 300 IN MX 20 mx.smart.test.",
    "dead.smart.test. 300 IN A 127.0.0.3",
    "mx.smart.test. 300 IN A 127.0.0.2",
    # the name itself has an address too: only "[smart.test]" uses it
    "smart.test. 300 IN A 127.0.0.4",
]


def run_with_relayhost(relayhost):
    s = Suite(start=False)
    ub = unbound_conf(s.dir, ZONE)
    s.start_with_conf(s.conf_text + dns_conf(ub, dnssec=False) +
                      f'\ndelivery {{ relayhost = "{relayhost}"; }}\n')
    return s


def test_relayhost_without_brackets_uses_mx():
    port = free_port()
    with sink_on("127.0.0.2", port) as sink, run_with_relayhost(f"smart.test:{port}") as s:
        s.send("sender@example.test", ["far@remote.test"], make_message(1))
        wait_for(lambda: sink.got, 30, "the message at the MX of smart.test")
        assert sink.got[0][:2] == ("sender@example.test", ["far@remote.test"]), sink.got
        # the dead best MX was tried under its own name, the second one
        # is logged under its name, not the first MX's
        logged(s, rf"connect to dead\.smart\.test\[127\.0\.0\.3\]:{port}: ")
        logged(s, rf"to=<far@remote\.test>, relay=mx\.smart\.test\[127\.0\.0\.2\]:{port}, "
                  r".*status=sent \(250 2\.0\.0 queued as SINK1\)")
        assert "127.0.0.4" not in s.log()


def test_relayhost_in_brackets_skips_mx():
    port = free_port()
    with sink_on("127.0.0.2", port) as sink:
        with run_with_relayhost(f"[smart.test]:{port}") as s:
            s.send("sender@example.test", ["far@remote.test"], make_message(2))
            # smart.test's own A record (nobody listens there), never its MX
            logged(s, rf"to=<far@remote\.test>, relay=smart\.test\[127\.0\.0\.4\]:{port}, "
                      r".*dsn=4\.4\.1, status=deferred \(connect to ")
            assert "127.0.0.2" not in s.log() and "127.0.0.3" not in s.log()
            assert not sink.got
        with run_with_relayhost(f"[nx.test]:{port}") as s:
            # a relayhost that does not resolve defers (the site's fault)
            s.send("sender@example.test", ["far@remote.test"], make_message(3))
            logged(s, r"to=<far@remote\.test>, relay=none, .*dsn=4\.4\.3, status=deferred "
                      r"\(relayhost nx\.test: no address\)")
