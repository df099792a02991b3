"""Interoperation with a real Postfix (the Debian package, run as a private
instance: its own config_directory, queue_directory and maillog under a
temporary folder, SMTP on 127.0.0.5 and a free port; /etc/postfix and port
25 are never touched, and the instance is stopped at the end).

Postern relays to Postfix (delivery.relayhost, delivery.tls = encrypt) over
STARTTLS with a certificate the test makes; Postfix delivers into a Maildir
of its own, and its Received header and log show the TLS session. Postfix
relays to Postern (relayhost = [127.0.0.1]:PORT, smtp_tls_security_level =
encrypt: no TLS, no mail); Postern delivers to a local Maildir, its
Received header says ESMTPS with the TLS version, and Postfix's log shows
the TLS connection it made. Postfix's smtpd does not announce 8BITMIME
here: an 8-bit message from Postern reaches its Maildir quoted-printable,
and decodes to the text sent. Skipped when the postfix binaries are missing."""
import email
import email.policy
import glob
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

from suite import Suite, free_port, make_message, wait_for
from tlsutil import make_cert, tls_conf

POSTFIX = "/usr/sbin/postfix"
DAEMONS = "/usr/lib/postfix/sbin"
PF_HOST = "127.0.0.5"

MASTER_CF = """\
{host}:{port} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {R}/etc
queue_directory = {R}/spool
data_directory = {R}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = {daemons}
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {R}/maillog
maillog_file_prefixes = /var, /dev/stdout, {R}
myhostname = pf.peer.test
mydomain = peer.test
myorigin = peer.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
virtual_mailbox_domains = pf.test
virtual_mailbox_maps = static:Maildir/
virtual_mailbox_base = {R}/mail
virtual_minimum_uid = 1
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_security_level = may
smtpd_tls_cert_file = {R}/pf.pem
smtpd_tls_key_file = {R}/pf.key
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
# Postfix accepts 8-bit mail without announcing 8BITMIME: Postern must
# send its 7-bit form, which Postfix stores as it came
smtpd_discard_ehlo_keywords = 8bitmime
relayhost = [127.0.0.1]:{postern_port}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
"""


def have_postfix():
    return all(os.access(p, os.X_OK) for p in
               (POSTFIX, os.path.join(DAEMONS, "master"), os.path.join(DAEMONS, "smtpd")))


class Postfix:
    def __init__(self, postern_port):
        self.port = free_port()
        self.R = tempfile.mkdtemp(prefix="postern-pf-")
        R = self.R
        os.chmod(R, 0o755)
        for d in ("etc", "spool", "data", "mail"):
            os.mkdir(os.path.join(R, d))
        pf = pwd.getpwnam("postfix")
        os.chown(os.path.join(R, "data"), pf.pw_uid, pf.pw_gid)
        os.chmod(os.path.join(R, "data"), 0o700)
        pw = pwd.getpwnam("postern")        # owner of the delivery Maildir
        os.chown(os.path.join(R, "mail"), pw.pw_uid, pw.pw_gid)
        make_cert(R, "pf", "pf.peer.test")
        with open(os.path.join(R, "etc", "main.cf"), "w") as f:
            f.write(MAIN_CF.format(R=R, daemons=DAEMONS, uid=pw.pw_uid,
                                   gid=pw.pw_gid, postern_port=postern_port))
        with open(os.path.join(R, "etc", "master.cf"), "w") as f:
            f.write(MASTER_CF.format(host=PF_HOST, port=self.port))
        self.run("check")
        self.run("start")
        wait_for(self.banner_ok, 30, "Postfix's smtpd to answer")

    def run(self, *args):
        # postfix writes its errors only to a terminal (or syslog): script(1)
        cmd = " ".join([POSTFIX, "-c", os.path.join(self.R, "etc"), *args])
        r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"postfix {' '.join(args)} failed: {r.stdout!r} {r.stderr!r}\n"
                                 f"{self.log()[-3000:]}")
        return r

    def banner_ok(self):
        try:
            with smtplib.SMTP(PF_HOST, self.port, timeout=5) as c:
                c.noop()
            return True
        except OSError:
            return False

    def log(self):
        try:
            with open(os.path.join(self.R, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def delivered(self):
        return sorted(glob.glob(os.path.join(self.R, "mail", "Maildir", "new", "*")))

    def master_pid(self):
        try:
            with open(os.path.join(self.R, "spool", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        pid = self.master_pid()
        subprocess.run([POSTFIX, "-c", os.path.join(self.R, "etc"), "stop"],
                       capture_output=True, timeout=60)
        end = time.time() + 20
        while pid and time.time() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            if pid:
                subprocess.run([POSTFIX, "-c", os.path.join(self.R, "etc"), "abort"],
                               capture_output=True, timeout=60)
        if not os.environ.get("POSTERN_KEEP"):
            shutil.rmtree(self.R, ignore_errors=True)


def received_fields(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    head = text.split("\n\n", 1)[0]
    return [" ".join(m.split()) for m in re.findall(r"^Received: .*?(?=^\S)", head + "\nX",
                                                      re.S | re.M)]


def test_postfix_both_ways_over_starttls():
    if not have_postfix():
        print("SKIP: postfix binaries missing")
        return
    s = Suite(start=False)
    pf = None
    try:
        pf = Postfix(s.port)
        s.start_with_conf(s.conf_text + tls_conf(s.dir) +
                          f'delivery {{ relayhost = "[{PF_HOST}]:{pf.port}"; '
                          f'tls = "encrypt"; }}\n')
        with s:
            # Postern -> Postfix
            s.send("alice@example.test", ["bob@pf.test"], make_message(1, subject="to postfix"))
            wait_for(pf.delivered, 40, "the message in Postfix's Maildir")
            (got,) = pf.delivered()
            data = open(got, "rb").read()
            assert b"Subject: to postfix" in data
            rcv = received_fields(got)[0]
            assert re.search(r"from mx\.example\.test \(.*\[127\.0\.0\.1\]\).*\(using TLSv1\.[23] "
                             r"with cipher \S+", rcv), rcv
            assert re.search(r"TLS with pf\.peer\.test\[127\.0\.0\.5\]:\d+|TLS with "
                             r"127\.0\.0\.5\[127\.0\.0\.5\]:\d+: TLSv1\.[23] ", s.log()), s.log()
            assert re.search(r"to=<bob@pf\.test>, relay=\S+\[127\.0\.0\.5\]:\d+, .*status=sent "
                             r"\(250 2\.0\.0 Ok: queued as", s.log())
            assert re.search(r"Anonymous TLS connection established from \S+\[127\.0\.0\.1\]",
                             pf.log()), pf.log()[-3000:]

            # 8-bit mail: Postfix does not offer 8BITMIME
            text8 = "Grüße aus Köln, 100 € \r\n"
            msg8 = ("From: alice@example.test\r\nTo: bob@pf.test\r\nSubject: 8bit\r\n"
                    "Message-ID: <pf8@example.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
                    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n" + text8).encode()
            with s.smtp() as c:
                c.ehlo("client.example.test")
                c.sendmail("alice@example.test", ["bob@pf.test"], msg8,
                           mail_options=["BODY=8BITMIME"])
            wait_for(lambda: len(pf.delivered()) == 2, 40, "the 8-bit message at Postfix")
            got8 = [p for p in pf.delivered() if p != got][0]
            raw = open(got8, "rb").read()
            assert all(b < 0x80 for b in raw), raw
            m8 = email.message_from_bytes(raw, policy=email.policy.default)
            assert m8["Content-Transfer-Encoding"] == "quoted-printable", raw
            assert m8.get_content() == text8.replace("\r\n", "\n"), m8.get_content()
            assert "does not offer 8BITMIME: content converted to 7bit" in s.log()

            # Postfix -> Postern
            with smtplib.SMTP(PF_HOST, pf.port, timeout=30) as c:
                c.ehlo("client.peer.test")
                c.sendmail("bob@pf.test", ["carol@example.test"],
                           make_message(2, subject="from postfix"))
            (path,) = s.wait_delivered("carol", 1, timeout=60)
            text = open(path, "rb").read()
            assert b"Subject: from postfix" in text
            rcv = received_fields(path)[0]
            assert "from pf.peer.test" in rcv and "with ESMTPS " in rcv, rcv
            assert re.search(r"\(using TLSv1\.[23] with cipher \S+\)", rcv), rcv
            assert re.search(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                             rf"{s.port}: TLSv1\.[23]", pf.log()), pf.log()[-3000:]
            assert re.search(r"to=<carol@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                             rf"{s.port}, .*status=sent", pf.log()), pf.log()[-3000:]
    finally:
        if pf:
            if os.environ.get("POSTERN_KEEP") or s.proc is None:
                print(pf.log()[-3000:])
            pf.stop()
        if s.proc and s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGKILL)
        if s.proc is None:             # never started: its folder is ours to remove
            shutil.rmtree(s.dir, ignore_errors=True)
