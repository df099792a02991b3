"""SMTP AUTH (PLAIN, LOGIN) against an auth.users file with yescrypt,
sha512-crypt and bcrypt hashes made by mkpasswd; real clients (swaks over
STARTTLS and implicit TLS, Python ssl for exact replies)."""
import base64
import json
import os
import re
import time

from suite import wait_for
from tlsutil import Raw, mkpasswd, swaks, tls_suite

USERS = {"yes": ("yescrypt", "pw-yes 1"), "sha": ("sha512crypt", "pw:sha"),
         "bf": ("bcrypt", "pw-bf")}


def write_users(dirname, users=USERS, mode=0o600, name="users"):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write("# user:hash\n\n")
        for u, (method, pw) in users.items():
            f.write(f"{u}:{mkpasswd(method, pw)}\n")
    os.chown(path, 0, 0)
    os.chmod(path, mode)         # root-only: read before smtpd drops root
    return path


def auth_suite(extra_listeners=(('submission', 'tls = "required"; auth = "required";'),),
               users_mode=0o600, plaintext=False, **kw):
    """A TLS suite with an auth { } block; the users file is s.users_path."""
    def conf(s):
        s.users_path = write_users(s.dir, mode=users_mode)
        return (f'auth {{ users = "{s.users_path}"; '
                f'plaintext_without_tls = {"true" if plaintext else "false"}; }}\n')
    return tls_suite(extra_listeners, extra_conf=conf, **kw)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def tls_session(port, source=None):
    r = Raw(port, source=source)
    assert r.reply()[0] == 220
    r.ehlo()
    r.starttls()
    ext = r.ehlo()
    return r, ext


def test_auth_each_hash_and_mechanism():
    with auth_suite() as s:
        port = s.ports["submission"]
        n = 0
        for user, (_, pw) in USERS.items():
            for mech in ("PLAIN", "LOGIN"):
                r = swaks(port, "--tls", "--auth", mech, "--auth-user", user,
                          "--auth-password", pw, "--to", "bob@example.test")
                assert r.returncode == 0, r.stdout + r.stderr
                assert "235 2.7.0 Authentication successful" in r.stdout, r.stdout
                n += 1
        got = s.wait_delivered("bob", n)
        text = open(got[0]).read()
        assert re.search(r"by mx\.example\.test \(Postern\) with ESMTPSA id", text), text
        assert "authenticated [127.0.0.1]" in s.log()
        # passwords never reach the log
        for _, pw in USERS.values():
            assert pw not in s.log()


def test_wrong_password_and_unknown_user():
    with auth_suite() as s:
        port = s.ports["submission"]
        for user, pw in (("yes", "wrong"), ("nobody", "pw-yes 1")):
            r = swaks(port, "--tls", "--auth", "PLAIN", "--auth-user", user,
                      "--auth-password", pw, "--to", "bob@example.test")
            assert r.returncode != 0
            assert "535 5.7.8 Authentication credentials invalid" in r.stdout, r.stdout


def test_not_offered_before_tls():
    with auth_suite() as s:
        r = Raw(s.port)                          # port-25 style listener, tls may
        assert r.reply()[0] == 220
        ext = r.ehlo()
        assert not any(e.startswith("AUTH") for e in ext), ext
        code, lines = r.cmd("AUTH PLAIN " + b64("\0yes\0pw-yes 1"))
        assert code == 530 and lines[0].startswith("530 5.7.0"), lines
        r.starttls()
        ext = r.ehlo()
        assert "AUTH PLAIN LOGIN" in ext, ext
        assert r.cmd("AUTH PLAIN " + b64("\0yes\0pw-yes 1"))[0] == 235
        r.close()
        # on the required listener, AUTH before STARTTLS is 530 as well
        r = Raw(s.ports["submission"])
        assert r.reply()[0] == 220
        r.ehlo()
        code, lines = r.cmd("AUTH LOGIN")
        assert code == 530 and lines[0].startswith("530 5.7.0"), lines
        r.close()


def test_plaintext_allowed_when_configured():
    with auth_suite(plaintext=True) as s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        assert "AUTH PLAIN LOGIN" in r.ehlo()
        assert r.cmd("AUTH PLAIN " + b64("\0sha\0pw:sha"))[0] == 235
        r.close()


def test_auth_required_listener():
    with auth_suite() as s:
        r, ext = tls_session(s.ports["submission"])
        assert "AUTH PLAIN LOGIN" in ext, ext
        code, lines = r.cmd("MAIL FROM:<a@example.test>")
        assert code == 530 and lines[0] == "530 5.7.0 Authentication required", lines
        assert r.cmd("AUTH PLAIN " + b64("yes\0yes\0pw-yes 1"))[0] == 235   # authzid == user
        code, lines = r.cmd("AUTH PLAIN " + b64("\0yes\0pw-yes 1"))
        assert code == 503, lines
        assert r.cmd("MAIL FROM:<a@example.test> AUTH=a+2Bb@example.test")[0] == 250
        r.close()


def test_exchange_forms():
    with auth_suite() as s:
        r, _ = tls_session(s.ports["submission"])
        # LOGIN without initial response
        assert r.cmd("AUTH LOGIN") == (334, ["334 VXNlcm5hbWU6"])
        assert r.cmd(b64("bf")) == (334, ["334 UGFzc3dvcmQ6"])
        assert r.cmd(b64("pw-bf"))[0] == 235
        r.close()
        r, _ = tls_session(s.ports["submission"])
        # LOGIN with the user name as initial response
        assert r.cmd("AUTH LOGIN " + b64("sha")) == (334, ["334 UGFzc3dvcmQ6"])
        assert r.cmd(b64("pw:sha"))[0] == 235
        r.close()
        r, _ = tls_session(s.ports["submission"])
        # PLAIN without initial response; "*" cancels
        assert r.cmd("AUTH PLAIN") == (334, ["334 "])
        code, lines = r.cmd("*")
        assert code == 501 and lines[0].startswith("501 5.7.0"), lines
        # "=" is an empty initial response: not valid PLAIN
        assert r.cmd("AUTH PLAIN =")[0] == 535
        # bad base64
        code, lines = r.cmd("AUTH PLAIN %%%%")
        assert code == 501 and lines[0].startswith("501 5.5.2"), lines
        # authzid other than the user: refused
        code, lines = r.cmd("AUTH PLAIN " + b64("root\0yes\0pw-yes 1"))
        assert code == 535 and lines[0].startswith("535 5.7.8"), lines
        assert r.cmd("AUTH CRAM-MD5")[0] == 504
        assert r.cmd("AUTH PLAIN")[0] == 334
        assert r.cmd(b64("\0yes\0pw-yes 1"))[0] == 235
        r.close()
        # CR/LF/NUL in a user name reach the log only escaped
        r, _ = tls_session(s.ports["submission"])
        r.cmd("AUTH PLAIN " + b64("\0evil\r\nFAKE: line\0x"))
        r.close()
        wait_for(lambda: "evil\\x0d\\x0aFAKE" in s.log(), 15, "escaped user in the log")
        assert "\nFAKE: line" not in s.log()


def test_relay_after_auth_only():
    # relayed mail goes to a relayhost where nothing listens: it stays queued
    # (deferred) for `queue show`, instead of racing a DNS bounce
    with auth_suite(mynetworks='["127.0.0.1/32"]', delivery='relayhost = "[127.0.0.1]:1";') as s:
        port = s.ports["submission"]
        r, _ = tls_session(s.port, source="127.0.0.2")
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        code, lines = r.cmd("RCPT TO:<x@remote.test>")
        assert code == 554 and "Relay access denied" in lines[0], lines
        r.close()
        r, _ = tls_session(port, source="127.0.0.2")
        assert r.cmd("AUTH PLAIN " + b64("\0yes\0pw-yes 1"))[0] == 235
        assert r.cmd("MAIL FROM:<yes@example.test>")[0] == 250
        assert r.cmd("RCPT TO:<x@remote.test>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send("Subject: relayed\r\n\r\nhello\r\n.\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        qid = lines[0].split()[-1]
        r.close()
        out = s.postern("queue", "show", qid, "--json", check=True).stdout.decode()
        j = json.loads(out)
        assert json.dumps(j).count('"yes"') >= 1, out
        assert "ESMTPSA" in out, out


def test_rate_limit_closes():
    with auth_suite() as s:
        r, _ = tls_session(s.ports["submission"])
        codes, t0 = [], time.time()
        try:
            for _ in range(6):
                codes.append(r.cmd("AUTH PLAIN " + b64("\0yes\0bad"))[0])
        except EOFError:
            pass
        assert codes == [535, 535, 535, 535, 421], codes
        assert time.time() - t0 >= 2.5          # the 3rd and 4th replies were held back
        assert r.closed()
        # the address stays blocked: even good credentials get 421 now
        r, _ = tls_session(s.ports["submission"])
        code, lines = r.cmd("AUTH PLAIN " + b64("\0yes\0pw-yes 1"))
        assert code == 421 and lines[0].startswith("421 4.7.0 Too many authentication"), lines
        assert r.closed()


def test_users_file_reread_on_change():
    with auth_suite(users_mode=0o640) as s:
        os.chown(s.users_path, 0, s.gid)        # readable by postern: re-read after the drop
        r, _ = tls_session(s.ports["submission"])
        assert r.cmd("AUTH PLAIN " + b64("\0new\0new-pw"))[0] == 535
        r.close()
        with open(s.users_path, "a") as f:
            f.write(f"new:{mkpasswd('sha512crypt', 'new-pw')}\n")
        r, _ = tls_session(s.ports["submission"])
        assert r.cmd("AUTH PLAIN " + b64("\0new\0new-pw"))[0] == 235
        r.close()
        assert "re-read: 4 users" in s.log()
