"""DKIM (lib/dkim on libopendkim, keys through lib/dns) and
Authentication-Results, against independent implementations, DNS from the
test unbound.conf's local-data (nothing leaves the host):
- inbound mail signed by dkimpy (rsa-sha256, ed25519-sha256) and by
  opendkim-tools (opendkim-genkey keys, opendkim-testmsg's rsa-sha1
  signature) verifies in Postern: the Authentication-Results field parsed by
  python3-authres says dkim=pass with header.d/header.s/header.b, and
  `postern dkim verify` says pass;
- a changed header or body fails; a missing key is permerror; l= leaving
  text unsigned is policy; an Authentication-Results claiming our
  authserv-id (any case, with a version) is dropped, another one kept;
- dkim.result / dkim.domains reach the rules at data;
- mail submitted through Postern (SMTP AUTH, and sendmail through pickup) and
  `postern dkim sign` output is signed by every configured key (rsa and
  ed25519) and verifies in dkimpy and in opendkim-testmsg (run in a private
  network namespace with a private unbound on 127.0.0.1:53);
- `postern dkim keygen` writes 0600 keys and prints the record; `postern
  check` compares each key with its DNS record."""
import base64
import os
import shutil
import smtplib
import subprocess
import tempfile

import authres
import authres.dkim_b
import dkim

from suite import Suite, wait_for
from spfzone import unbound_conf
from test_rules import rules_dir, write

AUTHSERV = "mx.example.test"
AR = authres.FeatureContext(authres.dkim_b)     # header.b too


def sh(*args, **kw):
    return subprocess.run(list(args), capture_output=True, check=True, **kw)


def rsa_key(path):
    sh("openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048",
       "-out", path)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(
        sh("openssl", "pkey", "-in", path, "-pubout", "-outform", "DER").stdout).decode()


def ed_key(path):
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", path)
    der = sh("openssl", "pkey", "-in", path, "-pubout", "-outform", "DER").stdout
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()


class World:
    """Keys, zone and the Postern instance shared by the tests."""

    def __init__(self):
        self.d = rules_dir()
        d = self.d
        self.zone = {}
        self.txt = {}
        self.txt["s1._domainkey.sender.test"] = rsa_key(f"{d}/rsa.pem")
        self.txt["s2._domainkey.sender.test"] = ed_key(f"{d}/ed.pem")
        self.txt["t1._domainkey.testing.test"] = rsa_key(f"{d}/testing.pem") + "; t=y"
        # the same key, but no subdomain may use it (t=s)
        self.txt["s3._domainkey.sender.test"] = self.txt["s1._domainkey.sender.test"] + "; t=s"
        # opendkim-genkey: its key and record
        sh("opendkim-genkey", "-b", "2048", "-d", "od.test", "-s", "sel", "-D", d)
        rec = open(f"{d}/sel.txt").read()
        parts = "".join(p for p in rec.split('"')[1::2])
        self.txt["sel._domainkey.od.test"] = parts
        # its h=sha256 would refuse opendkim-testmsg's rsa-sha1: the same key without h=
        self.txt["sha1._domainkey.od.test"] = parts.replace("h=sha256; ", "")
        # Postern's own signing keys for example.test (rsa s1, ed25519 s2)
        self.keys = f"{d}/keys"
        self.ub = f"{d}/unbound.conf"
        self.rules = f"{d}/main.rules"
        write(self.rules, 'stage data { rule "dkim" { if dkim.result == "fail" '
              '{ return deny(550, "5.7.20", `dkim ${dkim.result}`); } '
              'if "sender.test" in dkim.domains { add_header("X-Dkim-Domains", "sender.test"); } } }\n')

    def write_zone(self):
        unbound_conf({k: [{"TXT": v}] for k, v in self.txt.items()}, self.ub)
        os.chmod(self.ub, 0o644)

    def conf(self):
        return (f'dns {{ unbound_config = "{self.ub}"; timeout = 5s; }} '
                f'rules = "{self.rules}"; '
                f'authentication {{ dkim = true; spf = true; dkim_keys = "{self.keys}"; }} '
                f'auth {{ users = "{self.d}/users"; plaintext_without_tls = true; }} '
                f'domain "example.test" {{ dkim {{ selector = "s1"; key = "{self.keys}/example.test.s1.key"; }} '
                f'dkim {{ selector = "s2"; key = "{self.keys}/example.test.s2.key"; }} }}')

    def dnsfunc(self, name, timeout=5):
        n = name.decode().rstrip(".")
        return self.txt.get(n, "").encode() or None


def keygen(s, w, sel, typ):
    r = s.postern("dkim", "keygen", "example.test", sel, "--type", typ, check=True)
    out = r.stdout.decode()
    assert out.startswith(f"{sel}._domainkey.example.test. IN TXT ("), out
    w.txt[f"{sel}._domainkey.example.test"] = "".join(out.split('"')[1::2])
    st = os.stat(f"{w.keys}/example.test.{sel}.key")
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0, oct(st.st_mode)


MSG = (b"From: Alice <alice@sender.test>\r\nTo: user@example.test\r\n"
       b"Subject: dkim test\r\nDate: Sat, 05 Dec 2026 20:00:00 +0000\r\n"
       b"Message-ID: <t1@sender.test>\r\n\r\nhello\r\nworld\r\n")


def dkimpy_key(path, alg):
    if alg != b"ed25519-sha256":
        return open(path, "rb").read()
    der = sh("openssl", "pkey", "-in", path, "-outform", "DER").stdout
    return base64.b64encode(der[-32:])      # dkimpy: the seed, base64


def dkimpy_sign(msg, sel, dom, key, alg=b"rsa-sha256", **kw):
    return dkim.sign(msg, sel, dom, dkimpy_key(key, alg), signature_algorithm=alg,
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                     **kw) + msg


def ar_of(path):
    data = open(path, "rb").read().decode()
    head = data.split("\n\n", 1)[0]
    fields = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    ars = [f for f in fields if f.lower().startswith("authentication-results:")]
    return ars, head, data


def crlf(msg):
    return msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def deliver(s, msg, n):
    msg = crlf(msg)
    s.send("alice@sender.test", ["user@example.test"], msg)
    got = sorted(s.wait_delivered("user", n), key=os.path.getmtime)
    return got[-1]


def check_inbound(s, w, n0):
    n = n0
    cases = [
        (dkimpy_sign(MSG, b"s1", b"sender.test", f"{w.d}/rsa.pem"), "pass", "sender.test", "s1"),
        (dkimpy_sign(MSG, b"s2", b"sender.test", f"{w.d}/ed.pem", alg=b"ed25519-sha256"),
         "pass", "sender.test", "s2"),
        (dkimpy_sign(MSG.replace(b"alice@sender.test", b"bob@od.test"), b"sel", b"od.test",
                     f"{w.d}/sel.private"), "pass", "od.test", "sel"),
        (dkimpy_sign(MSG, b"t1", b"testing.test", f"{w.d}/testing.pem"), "pass", "testing.test",
         "t1"),
        (dkimpy_sign(MSG, b"nokey", b"sender.test", f"{w.d}/rsa.pem"), "permerror", "sender.test",
         "nokey"),
        (dkimpy_sign(MSG, b"s1", b"sender.test", f"{w.d}/rsa.pem", length=True) +
         b"appended text\r\n", "policy", "sender.test", "s1"),
    ]
    # opendkim-testmsg signs (rsa-sha1) with the opendkim-genkey key
    od = MSG.replace(b"alice@sender.test", b"bob@od.test").replace(b"\r\n", b"\n")
    r = subprocess.run(["opendkim-testmsg", "-d", "od.test", "-s", "sha1", "-k",
                        f"{w.d}/sel.private"], input=od, capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"DKIM-Signature:"), r.stderr
    cases.append((r.stdout, "pass", "od.test", "sha1"))
    r = subprocess.run(["opendkim-testmsg", "-d", "od.test", "-s", "sel", "-k",
                        f"{w.d}/sel.private"], input=od, capture_output=True)
    cases.append((r.stdout, "permerror", "od.test", "sel"))     # h=sha256 key, sha1 sig
    for msg, want, dom, sel in cases:
        n += 1
        path = deliver(s, msg, n)
        ars, head, _ = ar_of(path)
        assert len(ars) == 1, head
        res = AR.parse(ars[0])
        assert res.authserv_id == AUTHSERV, ars[0]
        dk = [x for x in res.results if x.method == "dkim"]
        assert len(dk) == 1 and dk[0].result == want, (want, ars[0])
        props = {p.type + "." + p.name: p.value for p in dk[0].properties}
        assert props["header.d"] == dom and props["header.s"] == sel, props
        assert len(props["header.b"]) == 12, props
        spf = [x for x in res.results if x.method == "spf"]
        assert spf and spf[0].result == "none", ars[0]
        if want == "pass" and dom == "sender.test":
            assert "X-Dkim-Domains: sender.test" in head, head
        v = s.postern("dkim", "verify", path, check=True).stdout.decode().split("\n")[0]
        assert v.split("\t")[:3] == [dom, sel, want], v
    return n


def check_failures(s, w, n):
    signed = dkimpy_sign(MSG, b"s1", b"sender.test", f"{w.d}/rsa.pem")
    sub = dkimpy_sign(MSG, b"s3", b"sender.test", f"{w.d}/rsa.pem",
                      identity=b"x@sub.sender.test")
    assert s.postern("dkim", "verify", input=dkimpy_sign(     # stdin
        MSG, b"s3", b"sender.test", f"{w.d}/rsa.pem")).stdout.split(b"\t")[2] == b"pass"
    for bad in (signed.replace(b"Subject: dkim test", b"Subject: dkim Test"),
                signed.replace(b"hello", b"hellO"), sub):
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{s.port}", "--from", "a@sender.test",
                            "--to", "user@example.test", "--data", "-"], input=bad,
                           capture_output=True)
        assert b"550 5.7.20 dkim fail" in r.stdout, r.stdout
        tmp = os.path.join(w.d, "bad.eml")
        open(tmp, "wb").write(bad)
        v = s.postern("dkim", "verify", tmp, check=True).stdout.decode()
        assert v.split("\t")[2] == "fail", v
    # spoofed Authentication-Results: ours go, others stay
    spoof = (b"Authentication-Results: MX.Example.Test 1; dkim=pass header.d=bank.test\r\n"
             b"Authentication-Results: (comment) mx.example.test;\r\n spf=pass\r\n"
             b"Authentication-Results: other.test; dkim=pass header.d=x.test\r\n" + MSG)
    n += 1
    ars, head, _ = ar_of(deliver(s, spoof, n))
    ids = [AR.parse(a).authserv_id for a in ars]
    assert ids == [AUTHSERV, "other.test"], ars
    assert "bank.test" not in head
    return n


def opendkim_verify(w, msg):
    """opendkim-testmsg in a private network namespace whose resolver is an
    unbound on 127.0.0.1:53 serving the test zone."""
    d = tempfile.mkdtemp(prefix="odk-")
    os.chmod(d, 0o755)
    conf = open(w.ub).read().replace("server:", "server:\n  interface: 127.0.0.1\n"
                                     "  port: 53\n  username: \"\"\n  chroot: \"\"\n"
                                     f"  pidfile: \"{d}/unbound.pid\"\n"
                                     "  do-not-query-localhost: no\n", 1)
    conf += "remote-control:\n  control-enable: no\n"
    write(f"{d}/unbound.conf", conf)
    write(f"{d}/resolv.conf", "nameserver 127.0.0.1\n")
    open(f"{d}/msg.eml", "wb").write(msg.replace(b"\r\n", b"\n"))
    script = (f"ip link set lo up && mount --bind {d}/resolv.conf /etc/resolv.conf && "
              f"(unbound -d -c {d}/unbound.conf & echo $! > {d}/pid) && "
              f"for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/53) 2>/dev/null && break; "
              f"sleep 0.1; done; opendkim-testmsg < {d}/msg.eml; rc=$?; kill $(cat {d}/pid); "
              f"exit $rc")
    r = subprocess.run(["unshare", "-n", "-m", "bash", "-c", script], capture_output=True,
                       timeout=60)
    shutil.rmtree(d, ignore_errors=True)
    return r.returncode, r.stderr.decode()


def check_signing(s, w):
    sub = (b"From: Jane <jane@example.test>\r\nTo: bob@remote.test\r\n"
           b"Subject: signed by postern\r\nDate: Sat, 05 Dec 2026 20:00:00 +0000\r\n"
           b"Message-ID: <s1@example.test>\r\n\r\nsigned body\r\n")
    # `postern dkim sign`
    src = os.path.join(w.d, "sub.eml")
    open(src, "wb").write(sub)
    out = s.postern("dkim", "sign", "example.test", src, check=True).stdout
    assert out.count(b"DKIM-Signature:") == 2 and out.endswith(sub), out
    # an authenticated submission (the suite relays to nobody: held in the queue)
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{s.port}", "--auth", "PLAIN",
                        "--auth-user", "jane", "--auth-password", "secret",
                        "--from", "jane@example.test", "--to", "user@example.test",
                        "--data", "-"], input=sub, capture_output=True)
    assert r.returncode == 0, r.stdout
    for signed in (out,):
        d = dkim.DKIM(signed)
        algs = []
        for i in range(2):
            assert d.verify(idx=i, dnsfunc=w.dnsfunc), i
            algs.append(d.signature_fields.get(b"a"))
        assert set(algs) == {b"rsa-sha256", b"ed25519-sha256"}, algs
        parts = signed.split(b"DKIM-Signature:")
        for one in (b"DKIM-Signature:" + parts[1] + sub, b"DKIM-Signature:" + parts[2]):
            rc, err = opendkim_verify(w, one)      # each signature alone
            assert rc == 0, err
        rc, _ = opendkim_verify(w, out.replace(b"signed body", b"changed body"))
        assert rc != 0
    return sub


def test_dkim():
    w = World()
    with open(f"{w.d}/users", "w") as f:
        f.write("jane:" + sh("mkpasswd", "-m", "sha-512", "secret").stdout.decode().strip() + "\n")
    os.chmod(f"{w.d}/users", 0o644)
    w.write_zone()
    s = Suite(mynetworks='["192.0.2.0/24"]', extra_conf=w.conf(), start=False)
    try:
        keygen(s, w, "s1", "rsa")
        keygen(s, w, "s2", "ed25519")
        w.write_zone()
        r = s.postern("check")
        assert r.returncode == 0, r.stderr
        s.start()
        n = check_inbound(s, w, 0)
        n = check_failures(s, w, n)
        # content over 4 MiB: rewritten through a second file, not in memory
        big = MSG.replace(b"hello\r\n", b"0123456789abcdef" * 64 + b"\r\n")
        big = big.replace(b"world", b"\r\n".join([b"x" * 1000] * 4500))
        n += 1
        ars, _, data = ar_of(deliver(s, dkimpy_sign(big, b"s2", b"sender.test", f"{w.d}/ed.pem",
                                                    alg=b"ed25519-sha256"), n))
        assert len(data) > 4500000 and "dkim=pass" in ars[0], ars
        # over the queue writer's 64 KiB buffer, under 4 MiB: read back and
        # rewritten in place (small messages are written once, from memory)
        mid = MSG.replace(b"world", b"\r\n".join([b"y" * 1000] * 300))
        n += 1
        ars, _, data = ar_of(deliver(s, dkimpy_sign(mid, b"s1", b"sender.test",
                                                    f"{w.d}/rsa.pem"), n))
        assert 300000 < len(data) < 400000 and "dkim=pass" in ars[0], ars
        changed = dkimpy_sign(mid, b"s1", b"sender.test", f"{w.d}/rsa.pem")
        try:                            # the rules refuse dkim.result == "fail"
            s.send("alice@sender.test", ["user@example.test"],
                   crlf(changed.replace(b"y" * 1000, b"z" * 1000, 1)))
            raise AssertionError("a changed body passed DKIM")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and b"dkim fail" in e.smtp_error, e
        sub = check_signing(s, w)
        # the submitted message was signed on its way in
        got = sorted(s.wait_delivered("user", n + 1), key=os.path.getmtime)[-1]
        data = open(got, "rb").read()
        body = data.split(b"Delivered-To: user@example.test\n", 1)[1]
        assert body.count(b"DKIM-Signature:") == 2 and b"Authentication-Results" not in body
        d = dkim.DKIM(body)
        assert d.verify(idx=0, dnsfunc=w.dnsfunc) and d.verify(idx=1, dnsfunc=w.dnsfunc)
        # sendmail (through pickup) is a submission too: signed, no A-R
        from suite import ROOT
        r = subprocess.run([os.path.join(ROOT, "bin", "sendmail"), "-i", "user@example.test"],
                           input=sub.replace(b"\r\n", b"\n"), capture_output=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "POSTERN_CONFIG": s.conf})
        assert r.returncode == 0, r.stderr
        got = sorted(s.wait_delivered("user", n + 2), key=os.path.getmtime)[-1]
        body = open(got, "rb").read().split(b"Delivered-To: user@example.test\n", 1)[1]
        assert body.count(b"DKIM-Signature:") == 2 and b"Authentication-Results" not in body
        d = dkim.DKIM(body)
        assert d.verify(idx=0, dnsfunc=w.dnsfunc) and d.verify(idx=1, dnsfunc=w.dnsfunc)
        # a key that no longer matches its record: postern check says so
        w.txt["s1._domainkey.example.test"] = w.txt["s1._domainkey.sender.test"]
        w.write_zone()
        r = s.postern("check")
        assert r.returncode == 1 and b"publishes another key" in r.stderr, r.stderr
    finally:
        s.__exit__(None, None, None)
