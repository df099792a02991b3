"""Outbound TLS policy per destination (smtp/smtp_tls.c): delivery.tls is
the default, delivery.tls_policy overrides it for a recipient domain or a
"[host]:port" relayhost. Receiving MTAs are aiosmtpd servers on 127.0.0.x
(one port), found by MX from unbound local-data.

- verify with a certificate from the test CA for the MX host name:
  delivered, verified=trusted, the MX host name sent as SNI;
- verify with a certificate for another name: deferred 4.7.5, nothing sent;
- encrypt towards a server without STARTTLS: deferred 4.7.4, nothing sent;
- the default (may) towards the same server: delivered in plaintext,
  tls=none verified=none;
- may towards a server whose handshake fails (TLSv1 only): that host is
  tried again in plaintext and the mail delivered;
- a "[host]:port" entry applies to the relayhost;
- `postern check` refuses the old scalar delivery.tls_policy, naming
  delivery.tls."""
import os
import re
import shutil
import ssl
import tempfile
import warnings

from aiosmtpd.controller import Controller

from suite import Suite, free_port, make_message, wait_for
from test_dane import Peer
from test_relay import make_ca, make_server_cert
from dnszone import dns_conf
from test_relay_mx import unbound_conf


def start(ip, port, ctx=None):
    peer = Peer()
    if ctx is not None:
        def sni(sslobj, name, c):
            with peer.lock:
                peer.sni.append(name)
        ctx.sni_callback = sni
        ctl = Controller(peer, hostname=ip, port=port, tls_context=ctx)
    else:
        ctl = Controller(peer, hostname=ip, port=port)
    ctl.start()
    return peer, ctl


def tls1_only(d, ca, cakey):
    """A server context our client (TLSv1.2+) cannot agree with."""
    ctx = make_server_cert(d, ca, cakey, "DNS:mx.broken.test", name="broken")
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    return ctx


ZONE = [
    "vgood.test. 300 IN MX 10 mx.vgood.test.", "mx.vgood.test. 300 IN A 127.0.0.2",
    "vbad.test. 300 IN MX 10 mx.vbad.test.", "mx.vbad.test. 300 IN A 127.0.0.3",
    "plain.test. 300 IN MX 10 mx.plain.test.", "mx.plain.test. 300 IN A 127.0.0.4",
    "also.test. 300 IN MX 10 mx.plain.test.",
    "broken.test. 300 IN MX 10 mx.broken.test.", "mx.broken.test. 300 IN A 127.0.0.5",
]


def logged(s, pattern, timeout=30):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def test_policy_per_destination_verify_encrypt_and_may_fallback():
    port = free_port()
    d = tempfile.mkdtemp(prefix="postern-tlsp-")
    os.chmod(d, 0o755)
    ca, cakey = make_ca(d)
    ctls = []
    try:
        good, c = start("127.0.0.2", port, make_server_cert(d, ca, cakey, "DNS:mx.vgood.test",
                                                            name="vgood"))
        ctls.append(c)
        bad, c = start("127.0.0.3", port, make_server_cert(d, ca, cakey, "DNS:wrong.example",
                                                           name="vbad"))
        ctls.append(c)
        plain, c = start("127.0.0.4", port)
        ctls.append(c)
        broken, c = start("127.0.0.5", port, tls1_only(d, ca, cakey))
        ctls.append(c)
        dns = dns_conf(unbound_conf(ZONE), dnssec=False)
        policy = (f'smtp_port = {port}; tls = "may"; tls_ca_file = "{ca}"; '
                  'tls_policy { "vgood.test" = "verify"; "vbad.test" = "verify"; '
                  '"plain.test" = "encrypt"; }')
        with Suite(delivery=policy, extra_conf=dns) as s:
            for i, r in enumerate(["u@vgood.test", "u@vbad.test", "u@plain.test",
                                   "u@also.test", "u@broken.test"]):
                s.send("sender@example.test", [r], make_message(i, subject=r))
            logged(s, rf"to=<u@vgood\.test>, relay=mx\.vgood\.test\[127\.0\.0\.2\]:{port}, .*"
                      r"status=sent .*, tls=TLSv1\.[23]/\S+ verified=trusted")
            assert "mx.vgood.test" in good.sni, good.sni
            logged(s, r"to=<u@vbad\.test>, .*dsn=4\.7\.5, status=deferred \(server certificate "
                      r"of mx\.vbad\.test\[127\.0\.0\.3\]:\d+ not verified \(name mx\.vbad\.test, "
                      r"delivery\.tls_policy for vbad\.test\).*verified=untrusted")
            logged(s, r"to=<u@plain\.test>, .*dsn=4\.7\.4, status=deferred \(TLS is required "
                      r"\(delivery\.tls_policy for plain\.test = encrypt\), but was not offered")
            logged(s, r"to=<u@also\.test>, relay=mx\.plain\.test\[127\.0\.0\.4\].*status=sent .*"
                      r"tls=none verified=none")
            logged(s, r"TLS handshake with mx\.broken\.test\[127\.0\.0\.5\]:\d+ failed: .*; "
                      r"trying again without TLS")
            logged(s, r"to=<u@broken\.test>, relay=mx\.broken\.test\[127\.0\.0\.5\].*"
                      r"status=sent .*tls=none verified=none")
            assert good.rcpts() == ["u@vgood.test"]
            assert bad.rcpts() == []
            assert plain.rcpts() == ["u@also.test"]
            assert broken.rcpts() == ["u@broken.test"]
    finally:
        for c in ctls:
            c.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_relayhost_entry_and_old_form_refused():
    plain, ctl = start("127.0.0.1", free_port())
    try:
        port = ctl.port
        with Suite(start=False) as s:
            s.start_with_conf(s.conf_text + f'delivery {{ relayhost = "[127.0.0.1]:{port}"; '
                              f'tls_policy {{ "[127.0.0.1]:{port}" = "encrypt"; }} }}\n')
            s.send("sender@example.test", ["far@remote.test"], make_message(1))
            logged(s, rf"to=<far@remote\.test>, .*dsn=4\.7\.4, status=deferred \(TLS is required "
                      rf"\(delivery\.tls_policy for \[127\.0\.0\.1\]:{port} = encrypt\)")
            assert plain.rcpts() == []
            # the old form: delivery.tls_policy was the default level
            s.write_conf(s.conf_text + 'delivery.tls_policy = "may";\n')
            r = s.postern("check")
            err = r.stderr.decode() + r.stdout.decode()
            assert r.returncode == 1, err
            assert re.search(r"delivery\.tls_policy: delivery\.tls_policy is a map of "
                             r"per-destination policies now; set the default policy with "
                             r'delivery\.tls = "may"', err), err
    finally:
        ctl.stop()
