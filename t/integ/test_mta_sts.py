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
- the policy is cached in the spool's sts/ and not fetched again while its
  TXT id is unchanged; when the id changed but the fetch fails (404), the
  cached enforce policy still applies until it expires (RFC 8461 5.1);
- no TXT record: delivered as before, no mta_sts in the log line."""
import http.server
import os
import re
import ssl
import tempfile
import threading
import time

from aiosmtpd.controller import Controller

from dnszone import dns_conf, write_unbound_conf
from suite import Suite, free_port, make_message, wait_for
from test_relay import Peer, make_ca, make_server_cert

HTTPS_IP = "127.0.0.43"

POLICY = {
    "good.test": "version: STSv1\r\nmode: enforce\r\nmx: *.good.test\r\nmax_age: 86400\r\n",
    "enf.test": "version: STSv1\nmode: enforce\nmx: mx.bad.test\nmax_age: 86400\n",
    "tst.test": "version: STSv1\nmode: testing\nmx: mx.bad.test\nmax_age: 86400\n",
    "filt.test": "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n",
    "none.test": "version: STSv1\nmode: none\nmax_age: 86400\n",
}
ENFORCE_BAD = "version: STSv1\nmode: enforce\nmx: mx.bad.test\nmax_age: 86400\n"
# replies a policy fetch must refuse: (status, Content-Type, body, Location)
REFUSED = {
    "big.test": (200, "text/plain", ENFORCE_BAD + "x-pad: " + "x" * 70000 + "\n", None),
    "redir.test": (302, "text/plain", "", "https://mta-sts.enf.test/.well-known/mta-sts.txt"),
    "html.test": (200, "text/html", ENFORCE_BAD, None),
}

# with TXT; gone.test and old.test get 404
DOMAINS = list(POLICY) + list(REFUSED) + ["gone.test", "old.test"]
ZONE = [
    "mx.good.test. 300 IN A 127.0.0.2",
    "mx.bad.test. 300 IN A 127.0.0.3",
    "good.test. 300 IN MX 10 mx.good.test.",
    "enf.test. 300 IN MX 10 mx.bad.test.",
    "tst.test. 300 IN MX 10 mx.bad.test.",
    "filt.test. 300 IN MX 10 mx.bad.test.",
    "filt.test. 300 IN MX 20 mx.good.test.",
    "plain.test. 300 IN MX 10 mx.bad.test.",
    "gone.test. 300 IN MX 10 mx.bad.test.",
    "old.test. 300 IN MX 10 mx.bad.test.",
    "none.test. 300 IN MX 10 mx.bad.test.",
] + [f"{d}. 300 IN MX 10 mx.bad.test." for d in REFUSED] + [f"mta-sts.{d}. 300 IN A {HTTPS_IP}" for d in DOMAINS]
TXT = [f'_mta-sts.{d}. 300 IN TXT "v=STSv1; id=1{i};"' for i, d in enumerate(DOMAINS)]


class PolicyServer:
    """https://mta-sts.DOMAIN/.well-known/mta-sts.txt for the domains in
    POLICY and REFUSED (by Host header), 404 for any other. HTTP/1.0: the
    body ends at close, without Content-Length (so the size bound is the
    client's own)."""

    def __init__(self, ctx):
        self.hits = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
                owner.hits.append((host, self.path))
                status, ctype, body, location = REFUSED.get(dom) or (
                    200, "text/plain; charset=utf-8", POLICY.get(dom), None)
                if body is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(body.encode())

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
        names = ",".join(f"DNS:mta-sts.{d}" for d in DOMAINS)
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
            ub = write_unbound_conf(os.path.join(self.dir, "unbound.conf"), ZONE + TXT)
            dns = dns_conf(ub, dnssec=False)
            self.s = Suite(delivery=f'smtp_port = {port}; tls_ca_file = "{ca}"; '
                                    f'mta_sts = true;', extra_conf=dns)
            self.stop.append(lambda: self.s.__exit__(*self.exc))   # log shown on failure
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self.exc = exc
        for f in reversed(self.stop):
            f()


def rcpts(peer):
    return [r for _, rr, _, _ in peer.got for r in rr]


def delivered(r, rcpt, peer, mx, mode, n):
    """Send message n to rcpt; it must reach peer through MX host mx, and
    the log line must name the MTA-STS mode (None: no mta_sts at all)."""
    r.s.send("alice@example.test", [rcpt], make_message(n))
    wait_for(lambda: rcpt in rcpts(peer), 30, f"delivery of {rcpt} to {mx}")
    line = logged(r.s, rf"to=<{re.escape(rcpt)}>, relay={re.escape(mx)}\[[0-9.]+\]:\d+, "
                       r"[^\n]*status=sent").group(0)
    assert (f"mta_sts={mode}," in line) if mode else ("mta_sts" not in line), line


def deferred(r, rcpt, n, detail):
    """Send message n to rcpt: deferred 4.7.5 under the enforce policy."""
    r.s.send("alice@example.test", [rcpt], make_message(n))
    logged(r.s, rf"to=<{re.escape(rcpt)}>, [^\n]*mta_sts=enforce, [^\n]*dsn=4\.7\.5, "
                rf"status=deferred \({detail}")
    assert rcpt not in rcpts(r.bad) + rcpts(r.good)


def seed_cache(s, domain, txt_id, age, mode="enforce", mx="mx.bad.test"):
    """A cache file as an earlier fetch would have left it, age seconds old."""
    path = os.path.join(s.spool, "sts", domain)
    with open(path, "w") as f:
        f.write(f"postern-sts 1\nid {txt_id}\nfetched {int(time.time()) - age}\n\n"
                f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 3600\n")
    os.chown(path, s.uid, s.gid)
    os.chmod(path, 0o600)


def test_enforce_verified_delivers_and_wrong_name_defers():
    with Rig() as r:
        delivered(r, "bob@good.test", r.good, "mx.good.test", "enforce", 1)
        logged(r.s, r"TLS with mx\.good\.test\[127\.0\.0\.2\]:\d+: TLSv1\.[23] \S+, "
                    r"level verify \(MTA-STS policy of good\.test, mode enforce\), certificate trusted")
        # the policy is cached in the spool, owned by the postern user
        path = os.path.join(r.s.spool, "sts", "good.test")
        st = os.stat(path)
        assert st.st_uid == r.s.uid and (st.st_mode & 0o077) == 0, oct(st.st_mode)
        with open(path) as f:
            assert "id 10\n" in f.read()
        deferred(r, "carol@enf.test", 2, r"server certificate of mx\.bad\.test\[127\.0\.0\.3\]"
                 r":\d+ not verified \(name mx\.bad\.test, MTA-STS policy of enf\.test, "
                 r"mode enforce\)")
        # same TXT id, cache not expired: no second fetch
        hits = len(r.web.hits)
        deferred(r, "dave@enf.test", 3, "server certificate")
        assert len(r.web.hits) == hits, r.web.hits


def test_cached_policy_when_the_fetch_fails_until_it_expires():
    """RFC 8461 5.1: the TXT id changed (cache holds id OLD) but the policy
    server answers 404: the cached enforce policy still applies; an expired
    cached policy does not."""
    with Rig() as r:
        seed_cache(r.s, "gone.test", "OLD", 60)
        deferred(r, "hal@gone.test", 7, "server certificate")
        logged(r.s, r"MTA-STS: policy fetch for gone\.test failed: .*HTTP status 404")
        logged(r.s, r"MTA-STS: using the cached policy of gone\.test \(id OLD, mode enforce\)")
        # retries (every 2 s here) do not fetch again: at most once per agent process
        wait_for(lambda: len(re.findall(r"to=<hal@gone\.test>, relay=mx", r.s.log())) >= 3, 30,
                 "two retries")
        assert 1 <= sum(h == "mta-sts.gone.test" for h, _ in r.web.hits) <= 2, r.web.hits
        seed_cache(r.s, "old.test", "OLD", 7200)
        delivered(r, "ivy@old.test", r.bad, "mx.bad.test", None, 8)


def test_testing_mode_delivers_and_logs():
    with Rig() as r:
        delivered(r, "erin@tst.test", r.bad, "mx.bad.test", "testing", 4)
        logged(r.s, r"MTA-STS policy of tst\.test \(testing\): mx\.bad\.test\[127\.0\.0\.3\]:"
                    r"\d+: [^;]*; going on")


def test_mx_not_in_policy_is_not_used_and_no_policy_is_unchanged():
    with Rig() as r:
        delivered(r, "frank@filt.test", r.good, "mx.good.test", "enforce", 5)
        logged(r.s, r"MTA-STS policy of filt\.test \(enforce\): MX host mx\.bad\.test not in "
                    r"the policy; skipped")
        assert not re.search(r"connect to mx\.bad\.test|relay=mx\.bad\.test", r.s.log())
        assert not r.bad.got
        # no _mta-sts record: opportunistic as before, no mode in the log line
        delivered(r, "gina@plain.test", r.bad, "mx.bad.test", None, 6)
        # mode none: unchanged, the mode is logged
        delivered(r, "jo@none.test", r.bad, "mx.bad.test", "none", 9)


def test_refused_fetches_mean_no_policy():
    """A body over 64 KB, a redirect (never followed) and a Content-Type
    other than text/plain are refused: no policy, the enforce policy they
    carry is not applied."""
    with Rig() as r:
        why = {"big.test": r"policy larger than 65536 bytes",
               "redir.test": r"HTTP status 302", "html.test": r"Content-Type is not text/plain"}
        for n, (dom, pattern) in enumerate(why.items()):
            delivered(r, f"kim{n}@{dom}", r.bad, "mx.bad.test", None, 10 + n)
            logged(r.s, rf"MTA-STS: policy fetch for {re.escape(dom)} failed: \S+: {pattern}")
        assert not [h for h in r.web.hits if h[0] == "mta-sts.enf.test"], "redirect followed"
        assert not os.listdir(os.path.join(r.s.spool, "sts"))
