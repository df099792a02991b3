"""Test harness: starts the real Postern suite (master as root, children as
the `postern` user) on a temporary spool and a free loopback port, and
offers helpers to talk SMTP and inspect spool, mailboxes and processes.

    with Suite() as s:
        s.send("a@example.test", ["bob@example.test"], msg)
        s.wait_delivered("bob", 1)
"""
import glob
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

ROOT = os.environ.get("POSTERN_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
POSTERN = os.path.join(ROOT, "bin", "postern")
USER = "postern"


_ports_given = set()


def free_port():
    """A loopback port nobody listens on, never the same one twice in this
    run: a test that takes one (metrics, a peer) before its Suite takes its
    own must not get the same number twice from the kernel (test_metrics
    once scraped smtpd)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def procs():
    """[(pid, ppid, effective user, comm)] of every process, read from /proc
    (no ps: a test may have LD_PRELOAD set in this environment)."""
    rows = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read().decode(errors="replace")
            with open(f"/proc/{d}/status") as f:
                uid = next(int(l.split()[2]) for l in f if l.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue                    # gone meanwhile
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append((int(d), ppid, user, comm))
    return rows


def wait_for(pred, timeout=20.0, what="condition", interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_message(i=0, subject=None, body=None, extra_headers=""):
    """An RFC 5322 message with CRLF line ends, Message-ID and Date present
    (so cleanup adds nothing but Received)."""
    subject = subject or f"test message {i}"
    body = body if body is not None else (
        f"Hello {i}.\r\n.leading dot line\r\n..two dots\r\n\r\nline after blank\r\n"
        + "x" * (i % 97) + "\r\n")
    return (f"From: sender@example.test\r\nTo: rcpt@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <m{i}.{time.time()}@example.test>\r\n"
            f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n{extra_headers}\r\n{body}").encode()


def strip_delivery_headers(data):
    """Remove what delivery and cleanup prepend (Return-Path, Delivered-To,
    Received with continuation lines) and return the rest."""
    lines = data.split(b"\n")
    i = 0
    assert lines[i].startswith(b"Return-Path: "), lines[:3]
    i += 1
    assert lines[i].startswith(b"Delivered-To: "), lines[:3]
    i += 1
    assert lines[i].startswith(b"Received: "), lines[:4]
    i += 1
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        i += 1
    return b"\n".join(lines[i:])


class SmtpClient:
    """A line-oriented raw SMTP client for exact reply checks: plain TCP
    (tlsutil.Raw adds TLS). The one such client of the tests."""

    def __init__(self, port, host="127.0.0.1", source=None, family=socket.AF_INET, timeout=20,
                 nodelay=False):
        self.s = socket.socket(family, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        if nodelay:
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.s.bind((source, 0))
        self.s.connect((host, port))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One whole (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError(f"connection closed; got {lines}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def ehlo(self, name="client.example.test"):
        """EHLO that must succeed: the extensions offered, upper-cased."""
        code, lines = self.cmd(f"EHLO {name}")
        assert code == 250, lines
        return {l[4:].upper() for l in lines[1:]}

    @classmethod
    def ready(cls, port, timeout=30, helo="client.example.test"):
        """Connected, greeted (220) and after a successful EHLO; the
        extensions offered are in .exts."""
        c = cls(port, timeout=timeout)
        code, lines = c.reply()
        assert code == 220, lines
        c.exts = c.ehlo(helo)
        return c

    def envelope(self, sender, rcpts=()):
        """MAIL FROM and RCPT TO that must all succeed."""
        code, lines = self.cmd(f"MAIL FROM:<{sender}>")
        assert code == 250, lines
        for r in rcpts:
            code, lines = self.cmd(f"RCPT TO:<{r}>")
            assert code == 250, (r, lines)

    def data(self, msg):
        """DATA (354), msg (dot-stuffed by the caller) and the end of data:
        the reply to it."""
        code, lines = self.cmd("DATA")
        assert code == 354, lines
        self.send(msg + b".\r\n")
        return self.reply()

    def bdat(self, msg, chunk=None):
        """msg in BDAT chunks of `chunk` octets (None: one chunk), the last
        one LAST: the replies of every chunk, in order."""
        chunk = chunk or len(msg)
        replies = []
        for off in range(0, len(msg), chunk):
            part = msg[off:off + chunk]
            last = off + chunk >= len(msg)
            self.send(f"BDAT {len(part)}{' LAST' if last else ''}\r\n".encode() + part)
            replies.append(self.reply())
        return replies

    def closed(self):
        """EOF, a reset, a timeout or a TLS error: the server is done with us."""
        try:
            return self.s.recv(1) == b""
        except OSError:          # ConnectionResetError, socket.timeout, ssl.SSLError
            return True

    def close(self):
        self.s.close()


class Suite:
    def __init__(self, extra_conf="", mynetworks='["127.0.0.0/8", "[::1]/128"]',
                 local_conf=None, processes='processes { smtpd = 1; delivery = 2; }',
                 listen=None, limits="", start=True, host="127.0.0.1", port=None,
                 local_domains='["localhost", "example.test"]', delivery="",
                 retry="[2s, 2s, 5s]"):
        # host/port: where this instance listens (two instances can share a
        # port on 127.0.0.1 and 127.0.0.2: MX relay tests)
        self.dir = tempfile.mkdtemp(prefix="postern-t-")
        os.chmod(self.dir, 0o755)
        self.host = host
        self.port = port or free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.run_dir = os.path.join(self.dir, "run")   # root's: pid file, smtpd's jail
        self.mail = os.path.join(self.dir, "mail")
        os.mkdir(self.mail)
        pw = pwd.getpwnam(USER)
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        if local_conf is None:
            # aliases: the suite's own (none unless a test writes it), not the host's
            local_conf = (f'local {{ mailbox = "maildir"; maildir = "{self.mail}/%u/Maildir"; '
                          f'aliases = "{self.dir}/aliases"; }}')
        if listen is None:
            listen = f'listen {{ smtp {{ address = ["{host}:{self.port}"]; }} }}'
        self.conf = os.path.join(self.dir, "postern.conf")
        self.write_conf(f"""# generated by t/integ/suite.py
hostname = "mx.example.test";
spool = "{self.spool}";
run_dir = "{self.run_dir}";
user = "{USER}";
log = {{ level = "info"; format = "text"; }}
{listen}
mynetworks = {mynetworks};
local_domains = {local_domains};
{local_conf}
{processes}
{limits}
delivery {{ retry = {retry}; lifetime = 1h;{" " + delivery if delivery else ""} }}
{extra_conf}
""")
        self.log_path = os.path.join(self.dir, "postern.log")
        self.proc = None
        if start:
            self.start()

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)
        self.conf_text = text

    def start_with_conf(self, text):
        """For a Suite(start=False): write text as its configuration and
        start it; a failed start is cleaned up before the error goes on."""
        self.write_conf(text)
        try:
            self.start()
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    # ---- process control -------------------------------------------------
    def postern(self, *args, check=False, input=None, timeout=60):
        r = subprocess.run([POSTERN, "-c", self.conf, *args], capture_output=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"postern {' '.join(args)} failed ({r.returncode}): "
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([POSTERN, "-c", self.conf, "run"], stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.port_open, 20, "SMTP port to open")
        # the banner needs filter up too: wait for a greeting
        wait_for(self.banner_ok, 20, "220 banner")
        # and every child (pickup, the agents) to have told master it is
        # ready: tests look at the process list right away, and a slow
        # (ASan) child may not be forked yet, or not have dropped root
        wait_for(self.all_ready, 60, "every process ready (daemons.status)")

    def all_ready(self):
        """master's <run_dir>/daemons.status names this master's children,
        every one "running" (ready), none "starting" or "waiting"."""
        if self.proc.poll() is not None:
            raise AssertionError(f"postern run exited ({self.proc.returncode}):\n{self.log()}")
        try:
            with open(os.path.join(self.run_dir, "daemons.status")) as f:
                rows = [l.split() for l in f if l.strip()]
            kids = {p for p, _, _ in self.children()}
        except (OSError, AssertionError):
            return False
        return bool(rows) and all(len(r) == 5 and r[2] == "running" and int(r[1]) in kids
                                  for r in rows)

    def port_open(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"postern run exited ({self.proc.returncode}):\n{self.log()}")
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def banner_ok(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=5) as c:
                return c.recv(512).startswith(b"220")
        except OSError:
            return False

    def stop(self, timeout=40):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("postern did not stop within %ss" % timeout)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
            if exc[0] is None:
                self.assert_clean_log()
        finally:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if exc[0] is not None:
                print(f"--- postern log ({self.log_path}) ---")
                print(self.log()[-6000:])
            elif not os.environ.get("POSTERN_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def assert_clean_log(self):
        """A sanitizer report or a panic in any daemon fails the test, even
        when master restarted the process and the test itself went on."""
        text = self.log()
        for bad in ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                    "LeakSanitizer", "panic:", "signal 6", "signal 11"):
            if bad in text:
                at = text.index(bad)
                raise AssertionError(f"daemon log contains {bad!r}:\n{text[max(0, at - 2000):at + 3000]}")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- processes ---------------------------------------------------------
    def children(self):
        """[(pid, user, comm)] of every process under master."""
        rows = procs()
        master = self.master_pid(rows)
        return [(p, user, comm) for p, pp, user, comm in rows if pp == master]

    def master_pid(self, rows=None):
        for p, pp, _, comm in rows or procs():
            if (pp == self.proc.pid or p == self.proc.pid) and comm == "master":
                return p
        raise AssertionError("master not found")

    def child_pids(self, name):
        return [p for p, u, c in self.children() if c == name]

    # ---- SMTP ------------------------------------------------------------
    def smtp(self, source=None, timeout=30):
        kw = {"source_address": (source, 0)} if source else {}
        return smtplib.SMTP(self.host, self.port, timeout=timeout, **kw)

    def send(self, sender, rcpts, msg):
        with self.smtp() as c:
            c.ehlo("client.example.test")
            c.sendmail(sender, rcpts, msg)

    # ---- spool and mailboxes ------------------------------------------------
    def maildir(self, user):
        return os.path.join(self.mail, user, "Maildir")

    def delivered(self, user):
        return sorted(glob.glob(os.path.join(self.maildir(user), "new", "*")))

    def wait_delivered(self, user, n, timeout=30):
        wait_for(lambda: len(self.delivered(user)) >= n, timeout,
                 f"{n} messages in {user}'s Maildir (have {len(self.delivered(user))})")
        time.sleep(0.2)
        got = self.delivered(user)
        assert len(got) == n, f"{user}: expected {n} messages, found {len(got)}"
        return got

    def queue_files(self, *dirs):
        dirs = dirs or ("incoming", "active", "deferred", "hold", "tmp")
        out = []
        for d in dirs:
            out += glob.glob(os.path.join(self.spool, d, "*"))
        return out

    def wait_queue_empty(self, timeout=30):
        wait_for(lambda: not self.queue_files(), timeout, "an empty queue")


def rules_suite(rules, extra_conf="", **kw):
    """A started Suite whose config names a rules file holding `rules`
    (written in the suite's directory, readable by filter); rules may be a
    function of the (not yet started) Suite that returns the text."""
    s = Suite(start=False, extra_conf=extra_conf, **kw)
    path = os.path.join(s.dir, "test.rules")
    with open(path, "w") as f:
        f.write(rules(s) if callable(rules) else rules)
    os.chmod(path, 0o644)
    return s.start_with_conf(s.conf_text + f'rules = "{path}";\n')
