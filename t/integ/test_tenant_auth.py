"""Tenant logins: a domain block's users file lets its users log in with
SMTP AUTH as local@domain, and binds them to the domain: their MAIL FROM
must be <> or at the domain (553 5.7.1 otherwise, and the session goes
on), and their mail is DKIM-signed only when the From author domain is
theirs (a tenant's user cannot sign as another tenant). auth.users logins
are bound to nothing, as before. Signatures are checked by dkimpy with the
keys' records served from a local zone."""
import base64
import os
import subprocess

import dkim

from suite import Suite, wait_for
from spfzone import unbound_conf
from tlsutil import Raw, mkpasswd


def b64(s):
    return base64.b64encode(s.encode()).decode()


def rsa_key(path):
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", path], check=True, capture_output=True)
    os.chmod(path, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class Tenants:
    """Two tenants (a.test, b.test) with users and keys, and an admin in
    auth.users."""

    def __init__(self, d, with_auth_users=True):
        self.txt = {}
        for dom in ("a.test", "b.test"):
            self.txt[f"s1._domainkey.{dom}"] = rsa_key(f"{d}/{dom}.key")
        # a.test: alice may log in; "rcpt" and "blank" are recipients only
        write(f"{d}/a.users", f"# a.test users\nAlice:{mkpasswd('sha512crypt', 'pw-a')}\n"
              "rcpt\nblank:\nother@b.test:" + mkpasswd("sha512crypt", "pw-x") + "\n")
        write(f"{d}/b.users", f"bob@B.test:{mkpasswd('sha512crypt', 'pw-b')}\n")
        write(f"{d}/users", f"admin:{mkpasswd('sha512crypt', 'pw-admin')}\n"
              f"alice@a.test:{mkpasswd('sha512crypt', 'global-pw')}\n")
        ub = f"{d}/unbound.conf"
        unbound_conf({k: [{"TXT": v}] for k, v in self.txt.items()}, ub)
        os.chmod(ub, 0o644)
        auth_users = f'users = "{d}/users"; ' if with_auth_users else ""
        self.conf = (
            f'dns {{ unbound_config = "{ub}"; timeout = 5s; }}\n'
            f'auth {{ {auth_users}plaintext_without_tls = true; }}\n'
            f'domain "a.test" {{ users = "{d}/a.users"; '
            f'dkim {{ selector = "s1"; key = "{d}/a.test.key"; }} }}\n'
            f'domain "b.test" {{ users = "{d}/b.users"; '
            f'dkim {{ selector = "s1"; key = "{d}/b.test.key"; }} }}\n')

    def dnsfunc(self, name, timeout=5):
        return self.txt.get(name.decode().rstrip("."), "").encode() or None


def login(s, user, pw, source=None):
    """A session after AUTH PLAIN: (client, (code, lines)). Failures are
    counted per client address (3 delay the reply, 5 disconnect): tests
    that fail on purpose use sources of their own."""
    r = Raw(s.port, source=source)
    assert r.reply()[0] == 220
    assert "AUTH PLAIN LOGIN" in r.ehlo()
    return r, r.cmd("AUTH PLAIN " + b64(f"\0{user}\0{pw}"))


def send(r, sender, from_hdr, n):
    code, lines = r.cmd(f"MAIL FROM:<{sender}>")
    assert code == 250, lines
    assert r.cmd("RCPT TO:<kim@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    body = (f"From: {from_hdr}\r\nTo: kim@example.test\r\nSubject: tenant {n}\r\n"
            f"Message-ID: <t{n}@x.test>\r\n\r\nmessage {n}\r\n.")
    code, lines = r.cmd(body)
    assert code == 250, lines


def delivered(s, n):
    files = sorted(s.wait_delivered("kim", n), key=os.path.getmtime)
    return open(files[-1], "rb").read()


def signer(t, msg):
    """The d= of msg's one DKIM signature, verified by dkimpy; None if unsigned."""
    if b"DKIM-Signature:" not in msg:
        return None
    assert msg.count(b"DKIM-Signature:") == 1, msg[:600]
    d = dkim.DKIM(msg)
    assert d.verify(dnsfunc=t.dnsfunc), msg[:600]
    return d.signature_fields[b"d"].decode()


def test_tenant_login_binds_sender_and_signing():
    s = Suite(start=False, mynetworks='["10.255.255.1/32"]')
    t = Tenants(s.dir)
    with s.start_with_conf(s.conf_text + t.conf) as s:
        # a tenant's user: the name without regard to case, the domain's file
        r, (code, lines) = login(s, "alice@A.Test", "pw-a")
        assert code == 235, lines
        # another domain in MAIL FROM: 553, and the session goes on
        code, lines = r.cmd("MAIL FROM:<boss@b.test>")
        assert code == 553 and lines[0].startswith("553 5.7.1 <boss@b.test>: Sender address "
                                                   "rejected: not owned by"), lines
        code, lines = r.cmd("MAIL FROM:<alice@a.test.evil>")
        assert code == 553, lines
        # its own domain (any case): signed by a.test, checked by dkimpy
        send(r, "alice@A.TEST", "Alice <alice@a.test>", 1)
        assert signer(t, delivered(s, 1)) == "a.test"
        # From another tenant: delivered, but not signed with b.test's key
        send(r, "alice@a.test", "Boss <boss@b.test>", 2)
        assert signer(t, delivered(s, 2)) is None
        wait_for(lambda: "dkim: not signed: From domain b.test is not a.test, the domain "
                         "of user alice@A.Test" in s.log(), 10, "the not-signed line")
        # the null sender is allowed (a bounce, a read receipt)
        code, lines = r.cmd("MAIL FROM:<>")
        assert code == 250, lines
        r.cmd("RSET")
        r.close()

        # the domain's file decides for its users: the auth.users line for
        # alice@a.test (another password) does not log in
        r, (code, _) = login(s, "alice@a.test", "global-pw", source="127.0.0.20")
        assert code == 535
        r.close()
        # recipients without a hash, another domain's line, a user of another
        # tenant with the right password: no login
        for i, (user, pw) in enumerate((("rcpt@a.test", ""), ("blank@a.test", "x"),
                                        ("other@a.test", "pw-x"), ("other@b.test", "pw-x"),
                                        ("alice@b.test", "pw-a"))):
            r, (code, lines) = login(s, user, pw, source=f"127.0.0.{21 + i}")
            assert code == 535, (user, lines)
            r.close()
        # b.test's user (written bob@B.test in its file)
        r, (code, _) = login(s, "bob@b.test", "pw-b")
        assert code == 235
        assert r.cmd("MAIL FROM:<alice@a.test>")[0] == 553
        send(r, "bob@b.test", "Bob <bob@b.test>", 3)
        assert signer(t, delivered(s, 3)) == "b.test"
        r.close()

        # an auth.users login is bound to nothing: any sender, signed by From
        r, (code, _) = login(s, "admin", "pw-admin")
        assert code == 235
        send(r, "noreply@b.test", "Notices <noreply@b.test>", 4)
        assert signer(t, delivered(s, 4)) == "b.test"
        r.close()
        log = s.log()
        assert "reject: MAIL from" in log and "553 5.7.1" in log, log[-3000:]


def test_tenant_login_without_auth_users():
    """Only domains' users files: AUTH is offered, and auth = required
    listeners are accepted by the config check."""
    s = Suite(start=False, mynetworks='["10.255.255.1/32"]')
    t = Tenants(s.dir, with_auth_users=False)
    with s.start_with_conf(s.conf_text + t.conf) as s:
        r, (code, _) = login(s, "bob@b.test", "pw-b")
        assert code == 235
        send(r, "bob@b.test", "bob@b.test", 1)
        assert signer(t, delivered(s, 1)) == "b.test"
        r.close()
        r, (code, _) = login(s, "admin", "pw-admin", source="127.0.0.20")
        assert code == 535
        r.close()


def test_tenant_of_an_internationalized_domain():
    """A tenant named by A-labels owns its domain in U-labels too (an
    SMTPUTF8 MAIL FROM, RFC 6531): before, x@bücher.test got 553 for the
    user of xn--bcher-kva.test. Another domain in Unicode is still not its."""
    s = Suite(start=False, mynetworks='["10.255.255.1/32"]')
    write(f"{s.dir}/u.users", f"carl:{mkpasswd('sha512crypt', 'pw-u')}\n")
    conf = (f'auth {{ plaintext_without_tls = true; }}\n'
            f'domain "xn--bcher-kva.test" {{ users = "{s.dir}/u.users"; }}\n')
    with s.start_with_conf(s.conf_text + conf) as s:
        r, (code, lines) = login(s, "carl@xn--bcher-kva.test", "pw-u")
        assert code == 235, lines
        for sender in ("carl@B\u00fccher.test", "carl@xn--bcher-kva.test"):
            code, lines = r.cmd(f"MAIL FROM:<{sender}> SMTPUTF8")
            assert code == 250, (sender, lines)
            r.cmd("RSET")
        code, lines = r.cmd("MAIL FROM:<carl@b\u00e4cher.test> SMTPUTF8")
        assert code == 553, lines
        r.close()
