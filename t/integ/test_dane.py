"""DANE for SMTP (RFC 7672) with no network: the test signs its own zone
dane.test with ldns-signzone, serves it with nsd on a loopback port, and
gives Postern an unbound config with the zone's trust anchor and a stub
zone (TESTING.md "DNSSEC and DANE without the Internet"). The receiving
MTAs are aiosmtpd servers with STARTTLS on 127.0.0.x, one port for all
(the TLSA name carries it), each with a certificate made here.

With delivery.tls = "dane":
- good.dane.test: its MX has a matching TLSA 3 1 1: delivered, logged
  verified=dane;
- bad.dane.test: its MX has a TLSA that matches nothing: deferred 4.7.5,
  nothing reaches that server, and no plaintext retry;
- ta.dane.test: TLSA 2 0 1 of the CA that signed the MX certificate (for
  the MX host name, which is also sent as SNI): verified=dane;
- bogus.dane.test: the TLSA record was altered after signing (bogus):
  deferred 4.7.5, nothing delivered;
- two.dane.test: the best MX has the wrong TLSA, the second a matching one:
  the second MX gets the mail (as Postfix tries the next MX);
- notlsa.dane.test: secure, but no TLSA published: opportunistic TLS,
  delivered with verified=untrusted;
- insecure.test: an unsigned MX pointing at the host with the wrong TLSA:
  RFC 7672 asks TLSA only under a secure MX, so this is opportunistic and
  delivered."""
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from aiosmtpd.controller import Controller

from suite import Suite, free_port, make_message, wait_for


class Peer:
    """A receiving MTA: records (rcpts, content) and the SNI names it saw."""

    def __init__(self):
        self.got = []
        self.sni = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"

    def rcpts(self):
        with self.lock:
            return [r for rr, _ in self.got for r in rr]


def run(args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True).stdout.decode()


def self_signed(d, name, cn):
    key, cert = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
         "-keyout", key, "-out", cert])
    return cert, key


def ca_signed(d, name, cn):
    """A CA, and a certificate for cn from it; the chain file holds both
    (DANE-TA needs the trust anchor in the chain the server sends)."""
    ca, cakey = self_signed(d, f"{name}-ca", f"{name} test CA")
    key, csr, cert = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", f"/CN={cn}", "-keyout", key, "-out", csr])
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{cn}\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-CAcreateserial",
         "-days", "2", "-extfile", ext, "-out", cert])
    chain = os.path.join(d, f"{name}-chain.pem")
    with open(chain, "w") as f:
        f.write(open(cert).read() + open(ca).read())
    return chain, key, ca


def spki_sha256(cert):
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def cert_sha256(cert):
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def start_peer(ip, port, chain, key):
    peer = Peer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)

    def sni(sslobj, name, c):
        with peer.lock:
            peer.sni.append(name)
    ctx.sni_callback = sni
    ctl = Controller(peer, hostname=ip, port=port, tls_context=ctx)
    ctl.start()
    return peer, ctl


class Dane:
    """The signed zone, nsd serving it, and Postern's unbound config."""

    def __init__(self, smtp_port):
        self.dir = tempfile.mkdtemp(prefix="postern-dane-")
        os.chmod(self.dir, 0o755)
        self.smtp_port = smtp_port
        self.dns_port = free_port()
        self.nsd = None
        d = self.dir
        self.good = self_signed(d, "good", "mx-good.dane.test")
        self.bad = self_signed(d, "bad", "mx-bad.dane.test")
        chain, key, self.ca = ca_signed(d, "ta", "mx-ta.dane.test")
        self.ta = (chain, key)
        p = smtp_port
        zone = f"""$ORIGIN dane.test.
$TTL 300
@ IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300
@ IN NS ns.dane.test.
ns IN A 127.0.0.1
good IN MX 10 mx-good.dane.test.
mx-good IN A 127.0.0.2
_{p}._tcp.mx-good IN TLSA 3 1 1 {spki_sha256(self.good[0])}
bad IN MX 10 mx-bad.dane.test.
mx-bad IN A 127.0.0.3
_{p}._tcp.mx-bad IN TLSA 3 1 1 {"00" * 32}
ta IN MX 10 mx-ta.dane.test.
mx-ta IN A 127.0.0.4
_{p}._tcp.mx-ta IN TLSA 2 0 1 {cert_sha256(self.ca)}
bogus IN MX 10 mx-bogus.dane.test.
mx-bogus IN A 127.0.0.2
_{p}._tcp.mx-bogus IN TLSA 3 1 1 {spki_sha256(self.good[0])}
notlsa IN MX 10 mx-notlsa.dane.test.
two IN MX 10 mx-bad.dane.test.
two IN MX 20 mx-good.dane.test.
mx-notlsa IN A 127.0.0.2
"""
        with open(os.path.join(d, "dane.test.zone"), "w") as f:
            f.write(zone)
        zsk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "dane.test"], cwd=d).strip()
        ksk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "dane.test"], cwd=d).strip()
        run(["ldns-signzone", "-n", "dane.test.zone", zsk, ksk], cwd=d)
        self.tamper(os.path.join(d, "dane.test.zone.signed"))
        with open(os.path.join(d, f"{ksk}.key")) as f, \
                open(os.path.join(d, "anchor.key"), "w") as out:
            out.write("".join(l for l in f if "DNSKEY" in l))
        self.start_nsd()
        self.unbound = os.path.join(d, "unbound.conf")
        with open(self.unbound, "w") as f:
            f.write(f"""server:
  module-config: "validator iterator"
  local-zone: "test." nodefault
  domain-insecure: "test."
  do-not-query-localhost: no
  trust-anchor-file: "{d}/anchor.key"
  local-zone: "insecure.test." static
  local-data: "insecure.test. 300 IN MX 10 mx-bad.dane.test."
stub-zone:
  name: "dane.test"
  stub-addr: 127.0.0.1@{self.dns_port}
""")
        for n in os.listdir(d):
            os.chmod(os.path.join(d, n), 0o644)

    def tamper(self, path):
        """Alter mx-bogus's TLSA data after signing: its RRSIG no longer
        matches, so a validating resolver calls the answer bogus."""
        text = open(path).read()
        rx = re.compile(rf"^(_{self.smtp_port}\._tcp\.mx-bogus\.dane\.test\.\s.*TLSA\s+3\s+1\s+1\s+)"
                        r"([0-9a-fA-F]+)$", re.M)
        m = rx.search(text)
        assert m, "the signed zone holds mx-bogus's TLSA record"
        text = text[:m.start(2)] + "ff" * 32 + text[m.end(2):]
        with open(path, "w") as f:
            f.write(text)

    def start_nsd(self):
        d = self.dir
        conf = os.path.join(d, "nsd.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
  ip-address: 127.0.0.1@{self.dns_port}
  port: {self.dns_port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{d}"
  database: ""
  pidfile: "{d}/nsd.pid"
  xfrdfile: "{d}/xfrd.state"
  zonelistfile: "{d}/zone.list"
  logfile: "{d}/nsd.log"
remote-control:
  control-enable: no
zone:
  name: "dane.test"
  zonefile: "{d}/dane.test.zone.signed"
""")
        self.nsd = subprocess.Popen(["nsd", "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        # ready once it answers a raw SOA query for the zone
        wait_for(self.nsd_answers, 20, "nsd to serve dane.test")

    def nsd_answers(self):
        if self.nsd.poll() is not None:
            log = open(os.path.join(self.dir, "nsd.log")).read() if os.path.exists(
                os.path.join(self.dir, "nsd.log")) else ""
            raise AssertionError(f"nsd exited ({self.nsd.returncode}): {log}")
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x04dane\x04test\x00\x00\x06\x00\x01")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        try:
            s.sendto(q, ("127.0.0.1", self.dns_port))
            r = s.recv(512)
            return len(r) > 12 and r[:2] == b"\x12\x34" and (r[3] & 0x0f) == 0
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        if self.nsd and self.nsd.poll() is None:
            os.kill(self.nsd.pid, signal.SIGTERM)
            try:
                self.nsd.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nsd.pid, signal.SIGKILL)
                self.nsd.wait()
        if not os.environ.get("POSTERN_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def logged(s, pattern, timeout=30):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def test_dane_match_mismatch_bogus_and_insecure():
    port = free_port()
    dane = Dane(port)
    peers, ctls = {}, []
    try:
        for ip, (chain, key) in (("127.0.0.2", dane.good), ("127.0.0.3", dane.bad),
                                 ("127.0.0.4", dane.ta)):
            peers[ip], ctl = start_peer(ip, port, chain, key)
            ctls.append(ctl)
        dns = f'dns {{ unbound_config = "{dane.unbound}"; timeout = 10s; }}'
        with Suite(delivery=f'smtp_port = {port}; tls = "dane";', extra_conf=dns) as s:
            rcpts = ["u@good.dane.test", "u@bad.dane.test", "u@ta.dane.test",
                     "u@bogus.dane.test", "u@notlsa.dane.test", "u@insecure.test",
                     "u@two.dane.test"]
            for i, r in enumerate(rcpts):
                s.send("sender@example.test", [r], make_message(i, subject=r))
            # a matching DANE-EE record: delivered, authenticated by DANE
            logged(s, rf"to=<u@good\.dane\.test>, relay=mx-good\.dane\.test\[127\.0\.0\.2\]:{port}, "
                      r".*status=sent .*, tls=TLSv1\.[23]/\S+ verified=dane")
            # DANE-TA: the CA in the TLSA record, the MX host name checked and sent as SNI
            logged(s, r"to=<u@ta\.dane\.test>, .*status=sent .*verified=dane")
            assert "mx-ta.dane.test" in peers["127.0.0.4"].sni, peers["127.0.0.4"].sni
            # the best MX fails DANE: the next one, which passes, gets the mail
            logged(s, r"mx-bad\.dane\.test\[127\.0\.0\.3\]:\d+: server certificate .* does not "
                      r"match its TLSA records .*; trying the next address")
            logged(s, r"to=<u@two\.dane\.test>, relay=mx-good\.dane\.test\[127\.0\.0\.2\]:\d+, "
                      r".*status=sent .*verified=dane")
            # no TLSA published (secure denial): opportunistic TLS
            logged(s, r"to=<u@notlsa\.dane\.test>, .*status=sent .*tls=TLSv1\.[23]/\S+ "
                      r"verified=untrusted")
            # an insecure MX never leads to TLSA, even for a host in a signed zone
            logged(s, r"to=<u@insecure\.test>, relay=mx-bad\.dane\.test\[127\.0\.0\.3\].*"
                      r"status=sent .*verified=untrusted")
            # the mismatch: deferred, 4.7.5
            logged(s, r"to=<u@bad\.dane\.test>, relay=mx-bad\.dane\.test\[127\.0\.0\.3\]:\d+, "
                      r".*dsn=4\.7\.5, status=deferred \(server certificate of .* does not match "
                      r"its TLSA records")
            # bogus TLSA: deferred 4.7.5 without even connecting
            logged(s, r"to=<u@bogus\.dane\.test>, .*dsn=4\.7\.5, status=deferred \(TLSA lookup "
                      r"for mx-bogus\.dane\.test")
            # wait for a retry round of the deferred ones, then check nothing leaked
            time.sleep(3)
            log = s.log()
            assert "u@bad.dane.test" not in peers["127.0.0.3"].rcpts()
            assert "u@bogus.dane.test" not in peers["127.0.0.2"].rcpts()
            assert not re.search(r"mx-bad\.dane\.test.*trying again without TLS", log), log
            assert sorted(peers["127.0.0.2"].rcpts()) == ["u@good.dane.test",
                                                          "u@notlsa.dane.test",
                                                          "u@two.dane.test"]
            assert peers["127.0.0.3"].rcpts() == ["u@insecure.test"]
            assert peers["127.0.0.4"].rcpts() == ["u@ta.dane.test"]
            q = s.postern("queue", "list", check=True).stdout.decode()
            assert "u@bad.dane.test" in q and "u@bogus.dane.test" in q, q
    finally:
        for c in ctls:
            c.stop()
        dane.close()
