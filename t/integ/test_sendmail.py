"""sendmail(1), postdrop and pickup: local submission by unprivileged users.

Every submission runs as a system user the test creates (and removes):
sendmail -t, argument recipients, -i, CRLF / bare LF / no final newline,
-bs, bsd-mailx's `mail -s`, the daemons down then up (delivered once),
a second user who can neither read nor change the first one's queued
file, pickup refusing garbage without dying, and the exit codes."""
import contextlib
import glob
import grp
import os
import pwd
import secrets
import subprocess
import tempfile
import time

from suite import ROOT, Suite, wait_for

SENDMAIL = os.path.join(ROOT, "bin", "sendmail")
POSTDROP = os.path.join(ROOT, "libexec", "postdrop")


@contextlib.contextmanager
def local_users(n=1):
    """n unprivileged system users (no home, no shell), removed afterwards;
    the postdrop group exists and libexec/postdrop is setgid to it."""
    created_group = False
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        subprocess.run(["groupadd", "--system", "postdrop"], check=True)
        created_group = True
    gid = grp.getgrnam("postdrop").gr_gid
    os.chown(POSTDROP, 0, gid)
    os.chmod(POSTDROP, 0o2755)      # as make install does; undone below
    names = []
    try:
        for _ in range(n):
            name = "ptsm" + secrets.token_hex(4)
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", "--home-dir", "/nonexistent", "--comment",
                            "Test User", name], check=True)
            names.append(name)
        yield [pwd.getpwnam(u) for u in names]
    finally:
        for u in names:
            subprocess.run(["userdel", u], capture_output=True)
        os.chmod(POSTDROP, 0o755)   # no setgid program left in the build tree
        os.chown(POSTDROP, 0, 0)
        if created_group:
            subprocess.run(["groupdel", "postdrop"], capture_output=True)


def as_user(pw, args, s, input=b"", env=None, timeout=60):
    """Run args as pw (its own uid/gid, no supplementary groups)."""
    e = {"PATH": "/usr/bin:/bin", "POSTERN_CONFIG": s.conf, "HOME": "/nonexistent"}
    e.update(env or {})
    return subprocess.run(args, input=input, capture_output=True, timeout=timeout,
                          user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=e)


def sendmail(pw, s, *args, input=b""):
    return as_user(pw, [SENDMAIL, *args], s, input=input)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def maildrop(s):
    return [p for p in glob.glob(os.path.join(s.spool, "maildrop", "*"))]


def test_sendmail_t_removes_bcc_and_records_the_user():
    with local_users() as (u,), Suite() as s:
        msg = (b"To: Bob <bob@example.test>, \"Doe, Carol\" <carol@example.test>\n"
               b"Cc: team: dave@example.test;\n"
               b"Bcc: (hidden) erin@example.test\n"
               b"Subject: -t test\n\nhello from cron\n")
        r = sendmail(u, s, "-t", "-oi", input=msg)
        assert r.returncode == 0, r.stderr
        for who in ("bob", "carol", "dave", "erin"):
            (path,) = s.wait_delivered(who, 1)
            data = read(path)
            assert b"Bcc" not in data and b"erin@" not in data.split(b"\n\n")[0].replace(
                b"Delivered-To: erin@example.test", b""), data
            assert b"hello from cron\n" in data
            assert f"Received: from local (uid {u.pw_uid}, user {u.pw_name})".encode() in data
            assert f"Return-Path: <{u.pw_name}@example.test>".encode() in data, data
            assert f"From: \"Test User\" <{u.pw_name}@example.test>".encode() in data
        assert f"user={u.pw_name}" in s.log()
        assert not maildrop(s)


def test_sendmail_line_ends_dots_and_args():
    with local_users() as (u,), Suite() as s:
        # CRLF, a lone dot with -i, and no final newline
        r = sendmail(u, s, "-i", "-f", "<robot@example.test>", "-F", "Robot", "alice",
                     input=b"Subject: crlf\r\n\r\nline1\r\n.\r\n..two\r\nlast")
        assert r.returncode == 0, r.stderr
        (path,) = s.wait_delivered("alice", 1)
        data = read(path)
        assert data.endswith(b"\n\nline1\n.\n..two\nlast\n"), data
        assert b"Return-Path: <robot@example.test>" in data
        assert b"From: \"Robot\" <robot@example.test>" in data
        assert b"\r" not in data
        # without -i a lone dot ends the message; bare LF; an existing From stays
        r = sendmail(u, s, "bob@example.test",
                     input=b"From: me@example.test\nSubject: dot\n\nbefore\n.\nafter\n")
        assert r.returncode == 0, r.stderr
        (path,) = s.wait_delivered("bob", 1)
        data = read(path)
        assert b"before\n" in data and b"after" not in data, data
        assert data.count(b"From: ") == 1
        # a line far longer than SMTP allows passes unchanged
        long_line = b"x" * 200000
        r = sendmail(u, s, "carl@example.test", input=b"Subject: long\n\n" + long_line + b"\n")
        assert r.returncode == 0, r.stderr
        (path,) = s.wait_delivered("carl", 1)
        assert read(path).endswith(b"\n\n" + long_line + b"\n")


def test_sendmail_bs_dialogue():
    with local_users() as (u,), Suite() as s:
        script = (b"EHLO client\r\nMAIL FROM:<bs@example.test>\r\n"
                  b"RCPT TO:<frank@example.test> NOTIFY=NEVER\r\nRCPT TO:<bad address>\r\n"
                  b"DATA\r\nSubject: bs\r\nBcc: hidden@example.test\r\n\r\n..dotted\r\nbody\r\n.\r\n"
                  b"RSET\r\nQUIT\r\n")
        r = sendmail(u, s, "-bs", input=script)
        assert r.returncode == 0, r.stderr
        codes = [l[:3] for l in r.stdout.decode().split("\r\n") if l[3:4] == " "]
        assert codes == ["220", "250", "250", "250", "501", "354", "250", "250", "221"], r.stdout
        (path,) = s.wait_delivered("frank", 1)
        data = read(path)
        assert b"\n.dotted\nbody\n" in data and b"Return-Path: <bs@example.test>" in data
        assert b"Bcc" not in data and b"From: bs@example.test\n" in data, data
        assert f"uid {u.pw_uid}".encode() in data


def test_mail_s_from_bsd_mailx():
    """mail(1) runs /usr/sbin/sendmail: in a private mount namespace that path
    is our sendmail (a script that runs it, bind-mounted over whatever MTA the
    machine has; the script keeps our build tree's libexec findable)."""
    with local_users() as (u,), Suite() as s:
        wrapper = os.path.join(s.dir, "sendmail.sh")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {SENDMAIL} "$@"\n')
        os.chmod(wrapper, 0o755)
        sh = (f'mount --bind {wrapper} /usr/sbin/sendmail && exec setpriv --reuid={u.pw_uid} '
              f'--regid={u.pw_gid} --clear-groups mail -s "hello from mailx" grace@example.test')
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", sh],
                           input=b"sent with mail(1)\n", capture_output=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "POSTERN_CONFIG": s.conf,
                                "HOME": "/nonexistent"})
        assert r.returncode == 0, (r.stdout, r.stderr)
        (path,) = s.wait_delivered("grace", 1)
        data = read(path)
        assert b"Subject: hello from mailx" in data and b"sent with mail(1)" in data
        assert f"user {u.pw_name}".encode() in data


def test_daemons_down_then_up_delivers_once():
    with local_users() as (u,), Suite() as s:
        s.stop()
        r = sendmail(u, s, "heidi@example.test", input=b"Subject: while down\n\nqueued\n")
        assert r.returncode == 0, r.stderr
        assert len(maildrop(s)) == 1
        s.start()
        s.wait_delivered("heidi", 1)
        time.sleep(2 * 5 + 1)           # two more pickup sweeps: still once
        assert len(s.delivered("heidi")) == 1
        assert not maildrop(s)


def test_other_users_cannot_read_or_change_queued_mail():
    with local_users(2) as (a, b), Suite() as s:
        s.stop()
        r = sendmail(a, s, "ivan@example.test", input=b"Subject: secret\n\nfor ivan only\n")
        assert r.returncode == 0, r.stderr
        (path,) = maildrop(s)
        st = os.stat(path)
        assert st.st_uid == a.pw_uid and st.st_gid == grp.getgrnam("postdrop").gr_gid
        assert st.st_mode & 0o777 == 0o640, oct(st.st_mode)
        drop = os.path.dirname(path)
        assert os.stat(drop).st_mode & 0o7777 == 0o1730, oct(os.stat(drop).st_mode)
        probe = ("import os, sys\n"
                 "p, d = sys.argv[1], sys.argv[2]\n"
                 "ok = []\n"
                 "for name, fn in [('read', lambda: open(p, 'rb').read()),\n"
                 "                 ('write', lambda: open(p, 'ab').write(b'x')),\n"
                 "                 ('unlink', lambda: os.unlink(p)),\n"
                 "                 ('rename', lambda: os.rename(p, p + 'x')),\n"
                 "                 ('list', lambda: os.listdir(d)),\n"
                 "                 ('spool', lambda: os.listdir(os.path.dirname(d))),\n"
                 "                 ('incoming', lambda: os.listdir(os.path.join(os.path.dirname(d), 'incoming')))]:\n"
                 "    try:\n"
                 "        fn(); ok.append(name)\n"
                 "    except OSError:\n"
                 "        pass\n"
                 "print(','.join(ok))\n")
        r = as_user(b, ["/usr/bin/python3", "-c", probe, path, drop], s)
        assert r.returncode == 0 and r.stdout.strip() == b"", (r.stdout, r.stderr)
        s.start()
        (got,) = s.wait_delivered("ivan", 1)
        assert b"for ivan only" in read(got)


def test_pickup_refuses_garbage_and_keeps_going():
    with local_users() as (u,), Suite() as s:
        pid = s.child_pids("pickup")
        assert len(pid) == 1
        drop = os.path.join(s.spool, "maildrop")
        bad = [secrets.token_hex(16) for _ in range(3)]
        with open(os.path.join(drop, bad[0]), "wb") as f:
            f.write(b"this is no maildrop file\n" * 100)
        with open(os.path.join(drop, bad[1]), "wb") as f:      # truncated: no END
            f.write(b"V\0\0\0\x12POSTERN-MAILDROP 1U\0\0\0\x060 root")
        # a user record that does not match the file's owner (root here)
        body = (b"V\0\0\0\x12POSTERN-MAILDROP 1" + b"U\0\0\0\x0a1234 alice"
                + b"S\0\0\0\x00" + b"R\0\0\0\x11judy@example.test" + b"M\0\0\0\x02x\n"
                + b"Z\0\0\0\x012")
        with open(os.path.join(drop, bad[2]), "wb") as f:
            f.write(body)
        with open(os.path.join(drop, "junkname"), "wb") as f:
            f.write(b"x")
        corrupt = os.path.join(s.spool, "corrupt")
        wait_for(lambda: len(os.listdir(corrupt)) >= 4, 20, "garbage moved to corrupt/")
        assert sorted(os.listdir(drop)) == []
        r = sendmail(u, s, "judy@example.test", input=b"Subject: after garbage\n\nstill fine\n")
        assert r.returncode == 0, r.stderr
        s.wait_delivered("judy", 1)
        assert s.child_pids("pickup") == pid
        log = s.log()
        assert "refused" in log and "not a name postdrop makes" in log


def test_exit_codes():
    with local_users() as (u,), Suite() as s:
        assert sendmail(u, s, "-Z", "x@example.test").returncode == 64      # EX_USAGE
        assert sendmail(u, s, "-N", "sometimes", "x@example.test").returncode == 64
        assert sendmail(u, s, input=b"Subject: none\n\n").returncode == 64  # no recipients
        r = sendmail(u, s, "-t", input=b"Subject: no rcpt\n\nx\n")
        assert r.returncode == 65, r.stderr                                 # EX_DATAERR
        assert sendmail(u, s, "bad address@", input=b"x\n").returncode == 65
        r = sendmail(u, s, "-q")
        assert r.returncode == 77, r.stderr                                 # EX_NOPERM
        # newaliases is sendmail -bi: a broken aliases file is EX_DATAERR with
        # file:line:col, a good one is compiled into aliases.cdb
        newaliases = os.path.join(ROOT, "bin", "newaliases")
        aliases = os.path.join(s.dir, "aliases")
        with open(aliases, "w") as f:
            f.write("postmaster: root\nno colon here\n")
        root_env = {"PATH": "/usr/bin:/bin", "POSTERN_CONFIG": s.conf}
        r = subprocess.run([newaliases], capture_output=True, timeout=60, env=root_env)
        assert r.returncode == 65 and f"{aliases}:2:".encode() in r.stderr, r.stderr
        with open(aliases, "w") as f:
            f.write("postmaster: root\nteam: kim, leo\n")
        r = subprocess.run([newaliases], capture_output=True, timeout=60, env=root_env)
        assert r.returncode == 0 and b"2 aliases" in r.stdout, r.stderr
        assert os.path.exists(aliases + ".cdb")
        r = sendmail(u, s, "-bv", "Team@example.test", "postmaster@example.test")
        out = r.stdout.decode()
        assert r.returncode == 0, (r.returncode, out, r.stderr)
        assert "Team@example.test: deliverable: alias team: kim, leo" in out, out
        assert "postmaster@example.test: deliverable: alias postmaster: root" in out, out
        r = sendmail(u, s, "-bv", "kim@example.test", "x@remote.example")
        assert r.returncode == 0, r.stdout
        out = r.stdout.decode()
        assert "kim@example.test: deliverable: local mailbox" in out
        assert "x@remote.example: deliverable: remote" in out
        r = sendmail(u, s, "-C", "/nonexistent/postern.conf", "x@example.test", input=b"x\n")
        assert r.returncode == 78, r.stderr                                 # EX_CONFIG
        # harmless sendmail options are accepted and ignored
        r = sendmail(u, s, "-oem", "-odi", "-m", "-n", "-U", "-em", "-h", "5", "-L", "x",
                     "-v", "-N", "success,delay", "-R", "hdrs", "-B", "8BITMIME", "--",
                     "leo@example.test", input=b"Subject: opts\n\nok\n")
        assert r.returncode == 0, r.stderr
        s.wait_delivered("leo", 1)
        assert not maildrop(s)


def test_bv_with_system_users():
    """With maildir = "~/Maildir" only system users are local mailboxes:
    -bv names the user and its uid, and an unknown one is EX_NOUSER."""
    with local_users() as (u,):
        s = Suite(start=False, local_conf='local { mailbox = "maildir"; maildir = "~/Maildir"; }')
        try:
            r = sendmail(u, s, "-bv", u.pw_name, "nosuchuser@example.test")
            out = r.stdout.decode()
            assert r.returncode == 67, (r.returncode, out, r.stderr)            # EX_NOUSER
            assert (f"{u.pw_name}: deliverable: local user {u.pw_name} (uid {u.pw_uid}), "
                    f"Maildir /nonexistent/Maildir") in out, out
            assert "nosuchuser@example.test: undeliverable: no local user" in out, out
        finally:
            s.__exit__(None, None, None)


def test_root_submits_without_the_setgid_bit():
    """root (cron's mail, say) needs no setgid helper: postdrop gives the
    file the directory's group, so pickup can read it."""
    with Suite() as s:
        os.chmod(POSTDROP, 0o755)
        r = subprocess.run([SENDMAIL, "-C", s.conf, "-oi", "root"], capture_output=True,
                           input=b"Subject: from root\n\nhello\n", timeout=60)
        assert r.returncode == 0, r.stderr
        (path,) = s.wait_delivered("root", 1)
        data = read(path)
        assert b"Received: from local (uid 0, user root)" in data, data
        assert b"Return-Path: <root@example.test>" in data
        assert "open: Permission denied" not in s.log()


def md_rec(kind, payload):
    return kind + len(payload).to_bytes(4, "big") + payload


def md_message(content, rcpts=(b"kim@example.test",), empty_records=0):
    """What sendmail writes to postdrop (lib/mail/maildrop.h), built by hand:
    a caller running libexec/postdrop directly is bound by nothing else."""
    out = md_rec(b"S", b"me@example.test") + b"".join(md_rec(b"R", r) for r in rcpts)
    out += md_rec(b"M", b"") * empty_records
    for i in range(0, len(content), 65536):
        out += md_rec(b"M", content[i:i + 65536])
    return out + md_rec(b"Z", str(len(content)).encode())


def test_refused_submissions_are_not_kept():
    """postdrop reads no configuration, so it takes up to 1 GiB whatever
    limits.message_size says. pickup used to move every refused file to
    corrupt/, where nothing ever removes it: any local user could fill the
    spool's file system 1 GiB at a time, past every limit, by running
    postdrop directly (or 50 MiB at a time with sendmail and a message
    cleanup refuses). A well-formed submission refused for its size, its
    recipients or by cleanup is now removed and logged, not kept."""
    limits = "limits { message_size = 1M; recipients = 5; }"
    with local_users() as (u,), Suite(limits=limits) as s:
        corrupt = os.path.join(s.spool, "corrupt")
        big = b"Subject: big\n\n" + b"x" * (2 << 20)
        many = [f"r{i}@example.test".encode() for i in range(6)]
        looping = b"Received: from somewhere\n" * 120 + b"\nbody\n"       # cleanup: 5.4.6
        framing = b"Subject: framing\n\n" + b"z" * 1000
        cases = [md_message(big), md_message(b"Subject: many\n\nhi\n", rcpts=many),
                 md_message(looping),
                 md_message(framing, empty_records=(18 << 20) // 5)]      # past 1 MiB + 16 MiB
        for data in cases:
            r = as_user(u, [POSTDROP, s.spool], s, input=data, timeout=120)
            assert r.returncode == 0, r.stderr
        wait_for(lambda: not maildrop(s) and s.log().count("refused submission removed") >= 4,
                 60, "pickup took every file")
        log = s.log()
        assert "over limits.message_size" in log and "limits.recipients is 5" in log, log
        assert "cleanup refused it" in log and "file larger than" in log, log
        # the reason is cleanup's (its local-failure row), and pickup sends
        # no second END after the reply (cleanup called that a protocol error)
        assert "554 5.4.6 Too many hops" in log.split("cleanup refused it")[1], log
        assert "unexpected cleanup_end" not in log, log
        assert log.count("refused submission removed") == 4, log
        assert os.listdir(corrupt) == [], os.listdir(corrupt)
        r = sendmail(u, s, "kim@example.test", input=b"Subject: still fine\n\nok\n")
        assert r.returncode == 0, r.stderr
        s.wait_delivered("kim", 1)


def daemon_cpu(s, name):
    """CPU seconds (user + system) the named daemon's processes used."""
    total = 0.0
    for pid in s.child_pids(name):
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def test_tiny_content_records_cost_pickup_little():
    """A caller of postdrop chooses how the content is cut into records:
    one byte each is valid. pickup consumed every record with a memmove of
    the rest of its 64 KiB buffer and sent every one to cleanup as its own
    CLEANUP_DATA: 2 MiB in 1-byte records cost ~4 s of pickup's CPU and ~3 s
    of cleanup's (at the default 50 MiB limit, minutes per file, while the
    singleton pickup takes no other user's mail). Now the buffer is
    consumed once per read and content goes to cleanup in 64 KiB pieces."""
    with local_users() as (u,), Suite(limits="limits { message_size = 4M; }") as s:
        content = b"Subject: tiny records\n\n" + b"x" * (2 << 20) + b"\nend\n"
        data = md_rec(b"S", b"me@example.test") + md_rec(b"R", b"kim@example.test")
        data += b"".join(md_rec(b"M", content[i:i + 1]) for i in range(len(content)))
        data += md_rec(b"Z", str(len(content)).encode())
        s.stop()
        r = as_user(u, [POSTDROP, s.spool], s, input=data, timeout=300)
        assert r.returncode == 0, r.stderr
        s.start()
        (path,) = s.wait_delivered("kim", 1, timeout=120)
        assert read(path).endswith(b"\n\n" + b"x" * (2 << 20) + b"\nend\n")
        used = daemon_cpu(s, "pickup"), daemon_cpu(s, "cleanup")
        assert used[0] < 1.0 and used[1] < 1.5, f"pickup {used[0]} s, cleanup {used[1]} s of CPU"


def test_refused_local_mail_is_bounced_to_its_sender():
    """sendmail has exited 0 long before cleanup sees a message, and there
    is no SMTP client to answer: a message cleanup refuses for good (here
    too many Received lines, 554 5.4.6) gets a failure report to its
    sender, from <>, quoting its header, as Postfix's local submission
    does. A <> sender gets none. The file is removed either way."""
    with local_users() as (u,), Suite() as s:
        looping = (b"Received: from somewhere\n" * 120 +
                   b"Subject: round and round\n\nbody\n")
        r = as_user(u, [POSTDROP, s.spool], s, input=md_message(looping))
        assert r.returncode == 0, r.stderr
        (path,) = s.wait_delivered("me", 1)
        data = read(path)
        assert data.startswith(b"Return-Path: <>"), data[:300]
        assert b"Content-Type: multipart/report; report-type=delivery-status" in data, data
        assert b"Final-Recipient: rfc822; kim@example.test" in data, data
        assert b"Status: 5.4.6" in data and b"554 5.4.6 Too many hops" in data, data
        assert b"Subject: round and round" in data, data       # the quoted header
        assert b"\nbody\n" not in data.split(b"text/rfc822-headers")[-1], data
        # the null sender: no report (no loop of reports)
        nul = md_rec(b"S", b"") + md_message(looping)[len(md_rec(b"S", b"me@example.test")):]
        r = as_user(u, [POSTDROP, s.spool], s, input=nul)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not maildrop(s) and s.log().count("refused submission removed") >= 2,
                 30, "pickup took the second file")
        s.wait_queue_empty()
        assert len(s.delivered("me")) == 1 and not s.delivered("kim")
        assert s.log().count("failure report to <me@example.test> queued") == 1, s.log()
        assert os.listdir(os.path.join(s.spool, "corrupt")) == []
