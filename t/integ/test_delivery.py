"""Whole-suite delivery tests: many concurrent messages arrive byte-identical,
children run unprivileged, crashes of any process lose and duplicate nothing."""
import collections
import json
import grp
import os
import random
import re
import signal
import smtplib
import threading
import time

from suite import SmtpClient, Suite, make_message, strip_delivery_headers, wait_for

USERS = ["alice", "bob", "carol", "dave"]


def _send_many(s, nconn, per_conn, results, errors, pick_rcpts, pause=0.0):
    def worker(k):
        try:
            c = s.smtp()
            c.ehlo("load.example.test")
            for j in range(per_conn):
                i = k * per_conn + j
                rcpts = pick_rcpts(i)
                msg = make_message(i)
                try:
                    c.sendmail("sender@example.test", [f"{u}@example.test" for u in rcpts], msg)
                    results[i] = (rcpts, msg, True)
                except (smtplib.SMTPException, OSError) as e:
                    results[i] = (rcpts, msg, False)
                    errors.append(repr(e))
                    try:
                        c.close()
                    except Exception:
                        pass
                    c = s.smtp()
                    c.ehlo("load.example.test")
                if pause:
                    time.sleep(pause)
            c.quit()
        except Exception as e:  # connection-level failure
            errors.append(f"worker {k}: {e!r}")
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(nconn)]
    for t in threads:
        t.start()
    return threads


def _mailbox_contents(s):
    got = collections.defaultdict(list)
    for u in USERS:
        for path in s.delivered(u):
            with open(path, "rb") as f:
                got[u].append(f.read())
    return got


def test_200_messages_10_connections_arrive_byte_identical():
    with Suite() as s:
        results, errors = {}, []
        rnd = random.Random(7)
        picks = {i: sorted(rnd.sample(USERS, rnd.choice([1, 1, 2, 3]))) for i in range(200)}
        threads = _send_many(s, 10, 20, results, errors, lambda i: picks[i])
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(results) == 200 and all(ok for _, _, ok in results.values())
        expected = collections.defaultdict(list)
        for i, (rcpts, msg, _) in results.items():
            for u in rcpts:
                expected[u].append(msg.replace(b"\r\n", b"\n"))
        for u in USERS:
            s.wait_delivered(u, len(expected[u]), timeout=60)
        got = _mailbox_contents(s)
        for u in USERS:
            bodies = sorted(strip_delivery_headers(m) for m in got[u])
            assert bodies == sorted(expected[u]), f"{u}: content differs"
            for m in got[u]:
                assert m.startswith(b"Return-Path: <sender@example.test>\n")
                assert f"Delivered-To: {u}@example.test\n".encode() in m
        s.wait_queue_empty()


def test_every_child_runs_as_the_unprivileged_user():
    with Suite() as s:
        # children are exec'd as root (to open keys) and drop in their first
        # moments: check the state once every one of them is past start-up
        def dropped():
            ks = s.children()
            for pid, user, comm in ks:
                with open(f"/proc/{pid}/status") as f:
                    if re.search(r"^Uid:\s+0\s", f.read(), re.M):
                        return None
            return ks if len(ks) >= 5 else None
        kids = wait_for(dropped, 20, "every child past its privilege drop")
        names = {c for _, _, c in kids}
        for need in ("smtpd", "cleanup", "qmgr", "delivery", "filter"):
            assert need in names, f"{need} not running: {kids}"
        uid = s.uid
        for pid, user, comm in kids:
            with open(f"/proc/{pid}/status") as f:
                st = f.read()
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", st, re.M).groups()
            gids = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", st, re.M).groups()
            assert all(int(x) == uid for x in uids), f"{comm} uids {uids}"
            assert all(int(x) == s.gid for x in gids), f"{comm} gids {gids}"
            groups = re.search(r"^Groups:(.*)$", st, re.M).group(1).split()
            # pickup alone keeps the postdrop group: it reads users' maildrop files
            allowed = {s.gid}
            if comm == "pickup":
                allowed |= {g.gr_gid for g in grp.getgrall() if g.gr_name == "postdrop"}
            assert all(int(g) in allowed for g in groups), f"{comm} groups {groups}"
        with open(f"/proc/{s.master_pid()}/status") as f:
            assert re.search(r"^Uid:\s+0\s", f.read(), re.M), "master should keep root"


def _crash_run(victim, kills=3):
    with Suite() as s:
        results, errors = {}, []
        threads = _send_many(s, 4, 40, results, errors, lambda i: [USERS[i % 4]], pause=0.01)
        killed = 0
        deadline = time.time() + 60
        while any(t.is_alive() for t in threads) and killed < kills and time.time() < deadline:
            time.sleep(0.4)
            pids = s.child_pids(victim)
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                killed += 1
        for t in threads:
            t.join()
        assert killed >= 1, "never managed to kill " + victim
        wait_for(lambda: s.child_pids(victim), 20, f"{victim} to be restarted")
        assert f"{victim}" in s.log() and "signal 9" in s.log(), "death not logged"
        # everything that got a 250 must arrive exactly once; nothing twice
        acked = [(rcpts, msg) for rcpts, msg, ok in results.values() if ok]
        assert len(acked) >= 40, f"too few messages acknowledged ({len(acked)}): {errors[:3]}"
        s.wait_queue_empty(timeout=90)
        got = _mailbox_contents(s)
        seen = collections.Counter()
        for u in USERS:
            for m in got[u]:
                mid = re.search(rb"^Message-ID: (<[^>]+>)", m, re.M).group(1)
                seen[(u, mid)] += 1
        dup = [k for k, n in seen.items() if n > 1]
        assert not dup, f"delivered twice: {dup[:5]}"
        for rcpts, msg in acked:
            mid = re.search(rb"^Message-ID: (<[^>]+>)", msg, re.M).group(1)
            for u in rcpts:
                assert seen[(u, mid)] == 1, f"acknowledged message {mid} lost for {u}"


def test_kill9_cleanup_loses_and_duplicates_nothing():
    _crash_run("cleanup")


def test_kill9_qmgr_loses_and_duplicates_nothing():
    _crash_run("qmgr")


def test_kill9_delivery_loses_and_duplicates_nothing():
    _crash_run("delivery")


def test_kill9_smtpd_and_filter_restart():
    with Suite() as s:
        for victim in ("smtpd", "filter"):
            old = s.child_pids(victim)
            for p in old:
                os.kill(p, signal.SIGKILL)
            wait_for(lambda: s.child_pids(victim) and s.child_pids(victim) != old, 20,
                     f"{victim} restart")
        wait_for(s.banner_ok, 20, "banner after restarts")
        # after the filter restarted, smtpd must reconnect and work again
        def try_send():
            try:
                s.send("a@example.test", ["alice@example.test"], make_message(1))
                return True
            except smtplib.SMTPException:
                return False
        wait_for(try_send, 20, "a message accepted after restarts", interval=0.5)
        s.wait_delivered("alice", 1)


def test_mbox_delivery():
    s = Suite(start=False)
    with s.start_with_conf(s.conf_text.replace(
            f'mailbox = "maildir"; maildir = "{s.mail}/%u/Maildir";',
            f'mailbox = "mbox"; mbox = "{s.mail}/%u.mbox";')):
        body = "From the start\r\n>From quoted\r\nplain\r\n"
        s.send("a@example.test", ["bob@example.test"], make_message(5, body=body))
        s.send("a@example.test", ["bob@example.test"], make_message(6, body=body))
        path = os.path.join(s.mail, "bob.mbox")
        wait_for(lambda: os.path.exists(path) and open(path, "rb").read().count(b"\nFrom ") >= 1,
                 30, "mbox delivery")
        s.wait_queue_empty()
        data = open(path, "rb").read()
        assert data.startswith(b"From a@example.test ")
        assert data.count(b"\n\nFrom a@example.test ") == 1, data[:400]
        assert b"\n>From the start\n" in data
        assert b"\n>>From quoted\n" in data
        assert b"Delivered-To: bob@example.test\n" in data


def test_json_logs_carry_the_queue_id():
    s = Suite(start=False)
    with s.start_with_conf(s.conf_text.replace('format = "text"', 'format = "json"')):
        with s.smtp() as c:
            c.ehlo("json.example")
            c.mail("sender@example.test")
            c.rcpt("alice@example.test")
            code, text = c.data(make_message(3))
        assert code == 250, text
        qid = text.decode().rsplit(" ", 1)[-1]
        s.wait_delivered("alice", 1)
        s.wait_queue_empty()
        s.stop()
        rows = []
        for line in s.log().splitlines():
            if not line.startswith("{"):
                continue
            rows.append(json.loads(line))          # every line is valid JSON
        assert rows and all({"ts", "process", "pid", "level", "event"} <= set(r) for r in rows)
        mine = [r for r in rows if qid in r.get("msg", "") or r.get("queue_id") == qid]
        progs = {r["process"] for r in mine}
        assert {"smtpd", "cleanup", "qmgr"} <= progs, progs
        for r in mine:                             # once known, on every line
            assert r.get("queue_id") == qid, r
        assert any(r["event"] == "delivered" and r["status"] == "sent" for r in mine), mine


def test_recycled_queue_files_shrink_and_grow():
    """cleanup reuses finished queue files' inodes and overwrites them in
    place (cleanup_recycle.c): a small message written over a large old one
    must end where it ends (the old tail cut), a large one over a small one
    grow; every message arrives intact and nothing is taken for corrupt."""
    with Suite() as s:
        sizes = [200_000, 300, 150_000, 200, 5_000, 100, 250_000, 50] * 3
        want = []
        c = s.smtp()
        for i, n in enumerate(sizes):
            body = (f"message {i} " + "x" * 66 + "\r\n") * (n // 80 + 1)
            msg = make_message(i, subject=f"r{i}", body=body)
            c.sendmail("sender@example.test", ["alice@example.test"], msg)
            want.append(msg.replace(b"\r\n", b"\n"))
            if i % 4 == 3:          # qmgr finishes these: their inodes get reused
                s.wait_delivered("alice", i + 1)
        c.quit()
        got = s.wait_delivered("alice", len(sizes))
        bodies = sorted(strip_delivery_headers(open(p, "rb").read()) for p in got)
        assert bodies == sorted(want), "a message differs after inode reuse"
        assert os.listdir(os.path.join(s.spool, "corrupt")) == [], "a recycled file was refused"


def test_recycled_file_held_by_a_slow_message_is_not_handed_out_twice():
    """A transaction writes straight into the recycled file tmp/.free-X it
    took (no rename first), so the name stays in tmp/ until its commit. A
    later scan of tmp/ lists it again: it must not give that inode to a
    second transaction while the first still writes it. Slow sessions take
    every free file and stop mid-DATA; fast messages then make cleanup scan
    tmp/; every message must arrive intact, none refused as corrupt."""
    with Suite() as s:
        for i in range(4):                     # four finished queue files: four free inodes
            s.send("sender@example.test", ["alice@example.test"], make_message(i, subject=f"w{i}"))
        s.wait_delivered("alice", 4)
        s.wait_queue_empty()
        tmp = os.path.join(s.spool, "tmp")
        wait_for(lambda: len([n for n in os.listdir(tmp) if n.startswith(".free-")]) >= 4, 10,
                 "four recycled files in tmp/")
        want = []
        slow = []
        for i in range(6):                     # more than the free files: all are held
            msg = make_message(100 + i, subject=f"slow{i}", body=f"slow body {i}\r\n" * 12000)
            c = SmtpClient(s.port)
            assert c.reply()[0] == 220
            c.ehlo()
            assert c.cmd("MAIL FROM:<sender@example.test>")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(msg[:len(msg) // 2])        # over a chunk: cleanup has the file open and written
            slow.append((c, msg))
            want.append(msg.replace(b"\r\n", b"\n"))
        cpid = s.child_pids("cleanup")[0]

        def held():                            # recycled files cleanup has open now
            names = []
            for f in os.listdir(f"/proc/{cpid}/fd"):
                try:
                    names.append(os.path.basename(os.readlink(f"/proc/{cpid}/fd/{f}")))
                except OSError:
                    pass                       # closed meanwhile
            return [n for n in names if n.startswith(".free-")]
        wait_for(lambda: len(held()) >= 4, 10, "cleanup writing the four recycled files")
        time.sleep(0.3)                        # past the rescan interval
        for i in range(8):                     # each new transaction scans tmp/ again
            msg = make_message(200 + i, subject=f"fast{i}", body=f"fast body {i}\r\n" * 300)
            s.send("sender@example.test", ["alice@example.test"], msg)
            want.append(msg.replace(b"\r\n", b"\n"))
            time.sleep(0.12)
        for c, msg in slow:
            c.send(msg[len(msg) // 2:] + b".\r\n")
            code, lines = c.reply()
            assert code == 250, lines
            c.cmd("QUIT")
        got = s.wait_delivered("alice", 4 + len(want))
        time.sleep(0.5)
        assert len(s.delivered("alice")) == 4 + len(want), "a message was delivered twice"
        bodies = [strip_delivery_headers(open(p, "rb").read()) for p in got]
        for w in want:
            assert bodies.count(w) == 1, f"lost or mixed: {w[60:100]!r} found {bodies.count(w)} times"
        assert os.listdir(os.path.join(s.spool, "corrupt")) == [], "a shared inode was refused"


def _held_by_readonly_new(s, user, n):
    """Send n messages to user while Maildir/new/ refuses links (mode 0500):
    they stay deferred. Returns their queue ids."""
    md = s.maildir(user)
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    for d in (os.path.join(s.mail, user), md, *(os.path.join(md, x) for x in ("tmp", "new", "cur"))):
        os.chown(d, s.uid, s.gid)
    os.chmod(os.path.join(md, "new"), 0o500)
    for i in range(n):
        s.send("sender@example.test", [f"{user}@example.test"], make_message(900 + i))
    wait_for(lambda: len(s.queue_files("deferred")) == n, 30, f"{n} deferred messages")
    return sorted(os.path.basename(p) for p in s.queue_files("deferred"))


def _expected_file(s, qid, user):
    """The name and bytes the Maildir delivery of queue id qid writes."""
    show = json.loads(s.postern("queue", "show", qid, "--json", check=True).stdout)
    arrival = int(time.mktime(time.strptime(show["metadata"]["arrival"], "%Y-%m-%dT%H:%M:%SZ"))
                  - time.timezone)
    raw = s.postern("queue", "show", qid, "--raw", check=True).stdout
    sender = show["envelope"]["sender"]
    data = (f"Return-Path: <{sender}>\nDelivered-To: {user}@example.test\n".encode() + raw)
    return f"{arrival}.P{qid}R0.mx.example.test", data


def _suite_on(base):
    """A Suite (not started) whose spool and Maildirs are under base (None:
    the usual place, /tmp)."""
    s = Suite(start=False)
    if base:
        spool, mail = os.path.join(base, "spool"), os.path.join(base, "mail")
        os.mkdir(mail)
        os.chown(mail, s.uid, s.gid)
        s.conf_text = (s.conf_text.replace(f'spool = "{s.spool}";', f'spool = "{spool}";')
                       .replace(f'maildir = "{s.mail}/%u/Maildir"', f'maildir = "{mail}/%u/Maildir"'))
        s.spool, s.mail = spool, mail
    return s


def _on_tmpfs(test):
    """Run test(base) with everything under /tmp (ext4 here), then under a
    tmpfs directory: the two ways Maildir delivery and the commit sync."""
    import shutil
    import tempfile
    test(None)
    shm = tempfile.mkdtemp(prefix="postern-t-", dir="/dev/shm")
    os.chmod(shm, 0o755)
    try:
        test(shm)
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_maildir_leftover_counted_only_when_whole():
    """A Maildir delivery names new/NAME before it syncs; a crash between the
    two can leave new/NAME torn. The retry must replace a torn file and take
    a whole one as delivered (no duplicate, same file). Both ways: rename
    and one fsync (ext4), rename + fsync + new/ fsync (tmpfs)."""
    _on_tmpfs(_leftover_run)


def _leftover_run(base):
    s = _suite_on(base)
    with s.start_with_conf(s.conf_text):
        torn_id, whole_id = _held_by_readonly_new(s, "erin", 2)
        new = os.path.join(s.maildir("erin"), "new")
        files = {}
        for qid, torn in ((torn_id, True), (whole_id, False)):
            name, data = _expected_file(s, qid, "erin")
            path = os.path.join(new, name)
            with open(path, "wb") as f:
                f.write(data[:len(data) // 2] if torn else data)
            os.chown(path, s.uid, s.gid)
            files[qid] = (path, data, os.stat(path).st_ino)
        os.chmod(new, 0o700)
        s.postern("queue", "flush", check=True)
        s.wait_queue_empty()
        got = s.wait_delivered("erin", 2)
        for qid, (path, data, ino) in files.items():
            assert path in got, f"{qid}: {path} not in {got}"
            assert open(path, "rb").read() == data, f"{qid}: not the whole message"
        assert os.stat(files[whole_id][0]).st_ino == files[whole_id][2], \
            "a whole leftover must be kept, not written again"
        assert os.stat(files[torn_id][0]).st_ino != files[torn_id][2], "torn file not replaced"
        log = s.log()
        assert f"{os.path.basename(files[torn_id][0])} in {s.maildir('erin')}/new is not the whole message" in log
        assert f"{os.path.basename(files[whole_id][0])} already in {s.maildir('erin')}/new" in log


def _fs_type(path):
    import subprocess
    return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", path],
                          capture_output=True, text=True).stdout.strip()


def test_commit_syncs_the_name_the_spool_fs_way():
    """cleanup leaves out the directory fsync only where the file's fsync
    makes its name durable (ext4, XFS); elsewhere (tmpfs here) incoming/ is
    fsynced in batches. Maildir delivery likewise (rename + one fsync, or
    rename + fsync + new/ fsync). Both paths commit and deliver every message."""
    os.environ["POSTERN_TRACE"] = "4"           # TRACE_QUEUE: how each was committed
    try:
        _on_tmpfs(_commit_run)
    finally:
        del os.environ["POSTERN_TRACE"]


def _commit_run(base):
    s = _suite_on(base)
    with s.start_with_conf(s.conf_text):
        for i in range(10):
            s.send("a@example.test", ["bob@example.test"], make_message(700 + i))
        got = s.wait_delivered("bob", 10)
        assert all(os.path.dirname(g) == os.path.join(s.maildir("bob"), "new") for g in got)
        fs = _fs_type(os.path.dirname(s.spool))
        with_file = fs in ("ext4", "xfs")
        log = s.log()
        committed = [l for l in log.splitlines() if "committed: incoming/" in l]
        assert len(committed) == 10, committed
        want = "name synced with the file" if with_file else "directory fsync batch of"
        assert all(want in l for l in committed), (fs, committed[:2])
        ready = "a file's fsync makes its name" if with_file else "incoming/ fsynced once per batch"
        assert ready in log, (fs, [l for l in log.splitlines() if "ready:" in l])
        assert not os.listdir(os.path.join(s.maildir("bob"), "tmp"))


# An LD_PRELOAD shim for the test below: the first fsync() of a Maildir file
# (any process, any uid) fails with EIO; the marker file says it has not
# happened yet and is removed by the one call that fails.
_FSYNC_FAIL_SHIM = r'''
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
int fsync(int fd)
{
    const char *marker = getenv("POSTERN_TEST_FSYNC_FAIL");
    char link[64], path[4096];
    struct stat st;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (marker && n > 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        path[n] = '\0';
        if (strstr(path, "/Maildir/") && unlink(marker) == 0) {
            errno = EIO;
            return -1;
        }
    }
    return (int)syscall(SYS_fsync, fd);
}
'''


def test_maildir_name_taken_back_when_fsync_fails():
    """When the fsync of a Maildir file fails after the file was named in
    new/, the name is taken back and the delivery deferred: the page cache may
    hold bytes the disk does not, so no attempt may find that file and count
    it as delivered. The retry writes it again. Both ways (ext4, tmpfs)."""
    import subprocess
    import tempfile
    work = tempfile.mkdtemp(prefix="postern-shim-")
    os.chmod(work, 0o777)
    shim = os.path.join(work, "failfsync.so")
    src = os.path.join(work, "failfsync.c")
    with open(src, "w") as f:
        f.write(_FSYNC_FAIL_SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, src], check=True)
    os.chmod(shim, 0o755)
    marker = os.path.join(work, "fail-next")
    # an ASan build wants its runtime first in the preload list
    from suite import ROOT
    ldd = subprocess.run(["ldd", os.path.join(ROOT, "libexec", "delivery")],
                         capture_output=True, text=True).stdout
    asan = [w for l in ldd.splitlines() if "libasan" in l for w in l.split() if w.startswith("/")]
    preload = " ".join(asan[:1] + [shim])

    def run(base):
        with open(marker, "w"):
            pass
        os.chmod(marker, 0o666)
        os.environ["LD_PRELOAD"] = preload
        os.environ["POSTERN_TEST_FSYNC_FAIL"] = marker
        try:
            s = _suite_on(base)
            s.start_with_conf(s.conf_text)
        finally:
            del os.environ["LD_PRELOAD"]
            del os.environ["POSTERN_TEST_FSYNC_FAIL"]
        with s:
            msg = make_message(800)
            s.send("a@example.test", ["dora@example.test"], msg)
            new = os.path.join(s.maildir("dora"), "new")
            log = wait_for(lambda: "Input/output error" in s.log() and s.log(), 30,
                           "the failed fsync to be logged")
            assert not os.path.exists(marker), "the shim never failed an fsync"
            # deferred, and the file is not left behind under its name
            assert not (os.path.isdir(new) and os.listdir(new)), os.listdir(new)
            assert "fsync" in log
            got = s.wait_delivered("dora", 1, timeout=40)
            data = open(got[0], "rb").read()
            assert strip_delivery_headers(data) == msg.replace(b"\r\n", b"\n")
            assert data.startswith(b"Return-Path: <a@example.test>\nDelivered-To: dora@example.test\n")
    try:
        _on_tmpfs(run)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
