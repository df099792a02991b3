"""MTA-STS (RFC 8461, lib/sts + smtp/smtp_sts.c) without the Internet:
policies are served by a Python https server on 127.0.0.43:443 with a
certificate from a CA the test makes (given to Postern as
delivery.tls_ca_file), `_mta-sts.DOMAIN` TXT and `mta-sts.DOMAIN` A come
from the local-data of a test unbound.conf, and the MX hosts are aiosmtpd
servers with STARTTLS: 127.0.0.2 (mx.good.test, certificate for that name)
and 127.0.0.3 (mx.bad.test, certificate for another name).

- enforce + matching certificate: delivered, logged with mta_sts=enforce;
- enforce + certificate for another name: deferred 4.7.5, never plaintext;
- testing + the same bad certificate: delivered, the failure logged;
- enforce whose mx list names only the second MX: the first MX is skipped
  (never connected), the mail goes to the second;
- the policy is cached in the spool's sts/; with the https server answering
  404 afterwards, the cached enforce policy still applies;
- no TXT record: delivered as before, no mta_sts in the log line."""
import http.server
import os
import re
import ssl
import tempfile
import threading

from aiosmtpd.controller import Controller

from suite import Suite, free_port, make_message, wait_for
from test_relay import Peer, make_ca, make_server_cert

HTTPS_IP = "127.0.0.43"

POLICY = {
    "good.test": "version: STSv1\r\nmode: enforce\r\nmx: *.good.test\r\nmax_age: 86400\r\n",
    "enf.test": "version: STSv1\nmode: enforce\nmx: mx.bad.test\nmax_age: 86400\n",
    "tst.test": "version: STSv1\nmode: testing\nmx: mx.bad.test\nmax_age: 86400\n",
    "filt.test": "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n",
}

ZONE = [
    "mx.good.test. 300 IN A 127.0.0.2",
    "mx.bad.test. 300 IN A 127.0.0.3",
    "good.test. 300 IN MX 10 mx.good.test.",
    "enf.test. 300 IN MX 10 mx.bad.test.",
    "tst.test. 300 IN MX 10 mx.bad.test.",
    "filt.test. 300 IN MX 10 mx.bad.test.",
    "filt.test. 300 IN MX 20 mx.good.test.",
    "plain.test. 300 IN MX 10 mx.bad.test.",
] + [f"mta-sts.{d}. 300 IN A {HTTPS_IP}" for d in POLICY]
TXT = [f'_mta-sts.{d}. 300 IN TXT "v=STSv1; id=1{i};"' for i, d in enumerate(POLICY)]


def unbound_conf(d):
    path = os.path.join(d, "unbound.conf")
    with open(path, "w") as f:
        f.write('server:\n  module-config: "iterator"\n  local-zone: "." static\n' +
                "".join(f'  local-data: "{x}"\n' for x in ZONE) +
                "".join(f"  local-data: '{x}'\n" for x in TXT))
    os.chmod(path, 0o644)
    return path


class PolicyServer:
    """https://mta-sts.DOMAIN/.well-known/mta-sts.txt for the domains in
    POLICY (by Host header); `down = True` makes it answer 404."""

    def __init__(self, ctx):
        self.down = False
        self.hits = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
                owner.hits.append((host, self.path))
                body = POLICY.get(dom)
                if owner.down or body is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HTTPS_IP, 443), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start_mx(ip, port, ctx):
    peer = Peer()
    ctl = Controller(peer, hostname=ip, port=port, tls_context=ctx)
    ctl.start()
    return peer, ctl


def logged(s, pattern, timeout=30):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


class Rig:
    """The CA, the https policy server, both MX servers and a started
    Postern (s) relaying by MX to them with delivery.tls_ca_file = the CA."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-sts-")
        os.chmod(self.dir, 0o755)
        ca, cakey = make_ca(self.dir)
        names = ",".join(f"DNS:mta-sts.{d}" for d in POLICY)
        self.web = PolicyServer(make_server_cert(self.dir, ca, cakey, names, "web"))
        self.stop = [self.web.stop]
        try:
            port = free_port()
            self.good, c1 = start_mx("127.0.0.2", port,
                                     make_server_cert(self.dir, ca, cakey, "DNS:mx.good.test",
                                                      "good"))
            self.stop.append(c1.stop)
            self.bad, c2 = start_mx("127.0.0.3", port,
                                    make_server_cert(self.dir, ca, cakey, "DNS:wrong.test",
                                                     "bad"))
            self.stop.append(c2.stop)
            dns = (f'dns {{ unbound_config = "{unbound_conf(self.dir)}"; dnssec = false; '
                   f'timeout = 5s; }}')
            self.s = Suite(delivery=f'smtp_port = {port}; tls_ca_file = "{ca}"; '
                                    f'mta_sts = true;', extra_conf=dns)
            self.stop.append(lambda: self.s.__exit__(None, None, None))
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for f in reversed(self.stop):
            f()


def rcpts(peer):
    return [r for _, rr, _, _ in peer.got for r in rr]


def test_enforce_verified_delivers_and_wrong_name_defers():
    with Rig() as r:
        s = r.s
        s.send("alice@example.test", ["bob@good.test"], make_message(1))
        wait_for(lambda: "bob@good.test" in rcpts(r.good), 30, "delivery to mx.good.test")
        logged(s, r"to=<bob@good\.test>, relay=mx\.good\.test\[127\.0\.0\.2\]:\d+, "
                  r"mta_sts=enforce, .*status=sent")
        logged(s, r"TLS with mx\.good\.test\[127\.0\.0\.2\]:\d+: TLSv1\.[23] \S+, "
                  r"certificate verified")
        # the policy is cached in the spool, owned by the postern user
        path = os.path.join(s.spool, "sts", "good.test")
        wait_for(lambda: os.path.exists(path), 10, "the cache file")
        st = os.stat(path)
        assert st.st_uid == s.uid and (st.st_mode & 0o077) == 0, oct(st.st_mode)
        with open(path) as f:
            assert "id 10\n" in f.read()

        s.send("alice@example.test", ["carol@enf.test"], make_message(2))
        logged(s, r"to=<carol@enf\.test>, relay=mx\.bad\.test\[127\.0\.0\.3\]:\d+, "
                  r"mta_sts=enforce, .*dsn=4\.7\.5, status=deferred \(server certificate of "
                  r"mx\.bad\.test\[127\.0\.0\.3\]:\d+ not verified \(name mx\.bad\.test, "
                  r"MTA-STS policy of enf\.test, mode enforce\)")
        assert "carol@enf.test" not in rcpts(r.bad)

        # the https server goes away: the cached enforce policy still holds
        r.web.down = True
        hits = len(r.web.hits)
        s.send("alice@example.test", ["dave@enf.test"], make_message(3))
        logged(s, r"to=<dave@enf\.test>, .*mta_sts=enforce, .*dsn=4\.7\.5, status=deferred")
        assert len(r.web.hits) == hits, "same TXT id, unexpired: no fetch"
        assert "dave@enf.test" not in rcpts(r.bad)


def test_testing_mode_delivers_and_logs():
    with Rig() as r:
        s = r.s
        s.send("alice@example.test", ["erin@tst.test"], make_message(4))
        wait_for(lambda: "erin@tst.test" in rcpts(r.bad), 30, "delivery to mx.bad.test")
        logged(s, r"MTA-STS policy of tst\.test \(testing\): mx\.bad\.test\[127\.0\.0\.3\]:\d+: "
                  r"[^;]*; going on")
        logged(s, r"to=<erin@tst\.test>, relay=mx\.bad\.test\[127\.0\.0\.3\]:\d+, "
                  r"mta_sts=testing, .*status=sent")


def test_mx_not_in_policy_is_not_used_and_no_policy_is_unchanged():
    with Rig() as r:
        s = r.s
        s.send("alice@example.test", ["frank@filt.test"], make_message(5))
        wait_for(lambda: "frank@filt.test" in rcpts(r.good), 30, "delivery to the second MX")
        logged(s, r"MTA-STS policy of filt\.test \(enforce\): MX host mx\.bad\.test not in "
                  r"the policy; skipped")
        logged(s, r"to=<frank@filt\.test>, relay=mx\.good\.test\[127\.0\.0\.2\]:\d+, "
                  r"mta_sts=enforce, .*status=sent")
        assert not re.search(r"connect to mx\.bad\.test|relay=mx\.bad\.test", s.log())
        assert not r.bad.got
        # no _mta-sts record: opportunistic as before, no mode in the log line
        s.send("alice@example.test", ["gina@plain.test"], make_message(6))
        wait_for(lambda: "gina@plain.test" in rcpts(r.bad), 30, "delivery without a policy")
        line = logged(s, r"to=<gina@plain\.test>, [^\n]*status=sent").group(0)
        assert "mta_sts" not in line, line
