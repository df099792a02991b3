"""Privilege separation and truthful control: `postern start`/`reload` exit 1
with file:line:col when the rules do not compile (and a reload keeps the
running system), `start` returns only once every child serves, the pid file
lives in root's run_dir, smtpd is chrooted into an empty root-owned jail,
every child is non-dumpable, and a crashed child is replaced at once."""
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time

from suite import POSTERN, USER, Suite, SmtpClient, make_message, procs, wait_for

# ASan builds (make SAN=1) skip the chroots: LeakSanitizer needs /proc
SMTPD = os.path.join(os.path.dirname(POSTERN), "..", "libexec", "smtpd")
SAN = b"libasan" in subprocess.run(["ldd", SMTPD], capture_output=True).stdout

BROKEN = 'stage rcpt {\n  rule "typo" { if rcpt.domian == "x.test" { return deny; } }\n}\n'
GOOD = 'stage rcpt {\n  rule "ok" { if rcpt.domain == "blocked.test" { return deny; } }\n}\n'


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def rules_suite(text):
    s = Suite(start=False)
    s.rules = os.path.join(s.dir, "main.rules")
    write(s.rules, text)
    s.write_conf(s.conf_text + f'rules = "{s.rules}";\n')
    return s


def master_of(s):
    """pid of the daemon master started with `postern start`, or None."""
    try:
        with open(os.path.join(s.run_dir, "postern.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def children_of(pid):
    return [(p, comm) for p, pp, _, comm in procs() if pp == pid]


def stop_daemon(s):
    pid = master_of(s)
    r = s.postern("stop", timeout=90)
    if pid and os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)
    return r


def test_start_with_broken_rules_exits_1_with_file_line_col():
    s = rules_suite(BROKEN)
    try:
        r = s.postern("start", timeout=60)
        err = r.stderr.decode() + r.stdout.decode()
        assert r.returncode == 1, err
        assert f"{s.rules}:2:" in err and "domian" in err, err
        assert "started" not in r.stdout.decode(), err
        r = s.postern("status")
        assert r.returncode == 1 and b"not running" in r.stdout, r
    finally:
        stop_daemon(s)
        s.__exit__(None, None, None)


def test_start_returns_once_every_child_serves():
    s = rules_suite(GOOD)
    try:
        r = s.postern("start", timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert b"postern started" in r.stdout
        # no waiting: every child already runs and the port answers 220
        kids = {c for _, c in children_of(master_of(s))}
        assert {"smtpd", "cleanup", "filter", "qmgr", "delivery"} <= kids, kids
        c = SmtpClient(s.port, timeout=5)
        code, lines = c.reply()
        assert code == 220, lines
        c.close()
        r = s.postern("stop", timeout=90)
        assert r.returncode == 0, r.stderr.decode()
        # a child that fails at start-up (TLS required, certificate missing):
        # start says which and exits 1, and nothing is left running
        s.write_conf(s.conf_text + 'tls { level = "encrypt"; certificate = '
                     '"/nonexistent/c.pem"; key = "/nonexistent/k.pem"; }\n')
        r = s.postern("start", timeout=90)
        err = r.stderr.decode()
        assert r.returncode == 1, (r.stdout, err)
        assert "smtpd" in err and "start-up" in err, err
        assert s.postern("status").returncode == 1
    finally:
        stop_daemon(s)
        s.__exit__(None, None, None)


def test_reload_with_broken_rules_exits_1_and_keeps_serving():
    s = rules_suite(GOOD)
    with s.start_with_conf(s.conf_text):
        r = s.postern("reload", timeout=90)
        assert r.returncode == 0 and b"reloaded" in r.stdout, r
        write(s.rules, BROKEN)
        r = s.postern("reload", timeout=90)
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert f"{s.rules}:2:" in err and "domian" in err, err
        # the running system is untouched: the old rules still decide
        s.send("a@example.test", ["bob@example.test"], make_message(1))
        s.wait_delivered("bob", 1)
        with s.smtp() as c:
            c.ehlo("x.example")
            c.mail("a@example.test")
            assert c.rcpt("x@blocked.test")[0] >= 500
        # a reload master refuses (a listener that cannot be bound) is an
        # error too, and the running configuration stays
        write(s.rules, GOOD)
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        bport = busy.getsockname()[1]
        good = s.conf_text
        s.write_conf(good.replace(f'["127.0.0.1:{s.port}"]',
                                  f'["127.0.0.1:{s.port}", "127.0.0.1:{bport}"]'))
        r = s.postern("reload", timeout=90)
        busy.close()
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert f"127.0.0.1:{bport}" in err, err
        s.write_conf(good)
        s.send("a@example.test", ["bob@example.test"], make_message(2))
        s.wait_delivered("bob", 2)


def test_pid_file_in_root_owned_run_dir():
    with Suite() as s:
        pidfile = os.path.join(s.run_dir, "postern.pid")
        with open(pidfile) as f:
            assert int(f.read()) == s.master_pid()
        st = os.stat(s.run_dir)
        assert st.st_uid == 0 and st.st_mode & 0o022 == 0, oct(st.st_mode)
        assert not os.path.exists(os.path.join(s.spool, "postern.pid"))
        # the private sockets were created as the user (not chowned by root)
        for name in ("cleanup", "filter", "qmgr", "local"):
            st = os.lstat(os.path.join(s.spool, "private", name))
            assert st.st_uid == s.uid and st.st_mode & 0o777 == 0o600, (name, oct(st.st_mode))
        assert s.postern("status").returncode == 0


def ptrace_attach_as_user(pid, uid, gid):
    """errno of PTRACE_ATTACH to pid from a process running as uid."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                    ctypes.c_void_p]
            rc = libc.ptrace(16, pid, None, None)        # PTRACE_ATTACH
            e = ctypes.get_errno() if rc != 0 else 0
            if rc == 0:
                libc.ptrace(17, pid, None, None)         # PTRACE_DETACH
            os.write(w, str(e).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 32)
    os.close(r)
    os.waitpid(child, 0)
    return int(out or b"-1")


def test_smtpd_jailed_and_children_not_dumpable():
    with Suite() as s:
        (pid,) = s.child_pids("smtpd")
        root = os.readlink(f"/proc/{pid}/root")
        assert root != "/" or SAN, root
        assert SAN or root == os.path.join(s.run_dir, "smtpd"), root
        jail = os.path.join(s.run_dir, "smtpd")
        st = os.stat(jail)
        assert st.st_uid == 0 and st.st_mode & 0o022 == 0
        # nothing in there but the two sockets smtpd talks to: no spool, no
        # queue file can be named from inside
        assert os.listdir(jail) == ["private"]
        assert sorted(os.listdir(f"{jail}/private")) == ["cleanup", "filter"]
        assert SAN or not os.path.exists(f"/proc/{pid}/root{s.spool}")
        # cleanup and qmgr only name spool-relative paths: jailed in the spool
        for name in ("cleanup", "qmgr"):
            (p,) = s.child_pids(name)
            assert SAN or os.readlink(f"/proc/{p}/root") == s.spool, name
        # mail still flows through the jails, AUTH/TLS tests cover the rest
        s.send("a@example.test", ["bob@example.test"], make_message(1))
        s.wait_delivered("bob", 1)
        pw = pwd.getpwnam(USER)
        for cpid, user, comm in s.children():
            assert user == USER, (comm, user)
            # non-dumpable: /proc/PID files belong to root, not to the user
            assert os.stat(f"/proc/{cpid}/status").st_uid == 0, comm
            assert os.stat(f"/proc/{cpid}/mem").st_uid == 0, comm
        # and no process of the user can ptrace another
        (qmgr,) = s.child_pids("qmgr")
        e = ptrace_attach_as_user(qmgr, pw.pw_uid, pw.pw_gid)
        assert e == 1, f"PTRACE_ATTACH as {USER}: errno {e}"     # EPERM


def test_killed_child_is_replaced_at_once():
    with Suite() as s:
        for round in range(3):
            (old,) = s.child_pids("smtpd")
            os.kill(old, signal.SIGKILL)
            t0 = time.time()
            new = wait_for(lambda: [p for p in s.child_pids("smtpd") if p != old], 5,
                           "a new smtpd")
            took = time.time() - t0
            assert took < 1.0, f"kill #{round + 1}: smtpd replaced after {took:.2f}s"
            c = SmtpClient(s.port, timeout=5)
            code, lines = c.reply()
            assert code == 220, lines
            c.close()
            assert new
        s.send("a@example.test", ["bob@example.test"], make_message(1))
        s.wait_delivered("bob", 1)
