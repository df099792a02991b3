"""Aliases (lib/local/aliases.c, delivery/delivery_expand.c): a list fans
out to two system users, a pipe alias runs as the aliases file's owner
(never root: local.default_user when root owns it), :include:, an alias
loop is refused (5.4.6 bounce), newaliases refuses a broken line with
file:line and keeps the old index, and postmaster / MAILER-DAEMON reach
root's mailbox when no alias names them."""
import os
import re
import stat
import subprocess
import time

from suite import POSTERN, Suite, make_message, wait_for
from sysusers import system_conf, system_users, user_maildir_new


def _suite():
    s = Suite(start=False)
    text = re.sub(r"^local \{.*\}$", system_conf(s), s.conf_text, count=1, flags=re.M)
    return s, text


def _aliases(s, text, owner=None):
    path = os.path.join(s.dir, "aliases")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _newaliases(s):
    return subprocess.run([POSTERN, "-c", s.conf, "newaliases"], capture_output=True, text=True)


def test_list_include_and_pipe_as_the_aliases_owner():
    s, text = _suite()
    with system_users(s.dir, 3) as (ann, ben, own):
        out = os.path.join(s.dir, "pipe-out")
        os.mkdir(out)
        os.chown(out, own.pw_uid, own.pw_gid)
        inc = os.path.join(s.dir, "list.inc")
        with open(inc, "w") as f:
            f.write(f"# the include list\n{ann.pw_name}\n{ben.pw_name}\n")
        os.chmod(inc, 0o644)
        _aliases(s, f"team: {ann.pw_name},\n  {ben.pw_name}\n"
                    f"inc: :include:{inc}\n"
                    f'pipe: "|cat > {out}/msg; id -u > {out}/uid"\n', owner=own)
        with s.start_with_conf(text):
            r = _newaliases(s)
            assert r.returncode == 0 and "3 aliases" in r.stdout, (r.stdout, r.stderr)
            s.send("x@example.test", ["team@example.test"], make_message(1, subject="team"))
            s.send("x@example.test", ["inc@example.test"], make_message(2, subject="inc"))
            s.send("x@example.test", ["pipe@example.test"], make_message(3, subject="piped"))
            wait_for(lambda: len(user_maildir_new(ann)) == 2 and len(user_maildir_new(ben)) == 2,
                     30, "the list and the include list delivered to both users")
            wait_for(lambda: os.path.exists(f"{out}/uid") and open(f"{out}/uid").read().strip(),
                     30, "the pipe alias")
            s.wait_queue_empty()
            for u in (ann, ben):
                for p in user_maildir_new(u):
                    assert os.stat(p).st_uid == u.pw_uid
            assert open(f"{out}/uid").read().strip() == str(own.pw_uid)
            st = os.stat(f"{out}/msg")
            assert st.st_uid == own.pw_uid, st            # not root, not postern
            data = open(f"{out}/msg", "rb").read()
            assert b"Subject: piped" in data and b"Delivered-To: pipe@example.test" in data


def test_pipe_of_a_root_owned_aliases_file_runs_as_default_user():
    s, text = _suite()
    out = os.path.join(s.dir, "pipe-out")
    os.mkdir(out)
    os.chmod(out, 0o1777)
    _aliases(s, f'pipe: "|id -u > {out}/uid"\n')
    with s.start_with_conf(text):
        s.send("x@example.test", ["pipe@example.test"], make_message(4))
        wait_for(lambda: os.path.exists(f"{out}/uid") and open(f"{out}/uid").read().strip(),
                 30, "the pipe alias")
        import pwd
        assert open(f"{out}/uid").read().strip() == str(pwd.getpwnam("nobody").pw_uid)


def test_alias_loop_is_refused_and_bounced():
    s, text = _suite()
    with system_users(s.dir, 1) as (ann,):
        _aliases(s, "l1: l2\nl2: l3\nl3: l1\n")
        with s.start_with_conf(text):
            s.send(f"{ann.pw_name}@example.test", ["l1@example.test"], make_message(5))
            wait_for(lambda: user_maildir_new(ann), 30, "the bounce to the sender")
            s.wait_queue_empty()
            data = open(user_maildir_new(ann)[0], "rb").read()
            assert b"5.4.6" in data and b"alias loop" in data, data[:2000]
            assert "alias loop" in s.log()


def test_newaliases_refuses_a_broken_line_and_keeps_the_old_index():
    s, text = _suite()
    src = _aliases(s, "root: admin\n")
    s.write_conf(text)
    r = _newaliases(s)
    assert r.returncode == 0, r.stderr
    idx = src + ".cdb"
    before = os.stat(idx)
    assert stat.S_IMODE(before.st_mode) == 0o644
    _aliases(s, "root: admin\nbroken line without colon\nok: x\n")
    r = _newaliases(s)
    assert r.returncode == 1
    assert f"{src}:2:8: ':' expected after the alias name" in r.stderr, r.stderr
    assert "the old index stays" in r.stderr
    after = os.stat(idx)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [f for f in os.listdir(s.dir) if ".tmp." in f]
    r = s.postern("check")
    err = r.stderr.decode()
    assert r.returncode == 1 and f"{src}:2:8: ':' expected" in err, err
    assert "is older than" in err and "run newaliases" in err, err


def test_postmaster_and_mailer_daemon_reach_root_by_default():
    with Suite() as s:          # catch-all layout: root's mailbox is <mail>/root
        s.send("x@example.test", ["postmaster@example.test"], make_message(6))
        s.send("x@example.test", ["MAILER-DAEMON@example.test"], make_message(7))
        s.wait_delivered("root", 2)
        assert s.delivered("postmaster") == [] and s.delivered("mailer-daemon") == []


def test_remote_member_and_owner_list_forwarded_through_cleanup():
    """A list with a remote member and an owner- alias: the remote copy is
    queued again (sender owner-list@..., Delivered-To on top) and relayed;
    the local member gets its copy."""
    from test_relay import relay_conf, start_peer
    peer, port, ctl = start_peer()
    try:
        s = Suite(start=False, extra_conf=relay_conf(port))
        _aliases(s, "list: alice, far@remote.test\nowner-list: alice\n")
        with s.start_with_conf(s.conf_text):
            s.send("x@example.test", ["list@example.test"], make_message(8, subject="fwd"))
            s.wait_delivered("alice", 1)
            wait_for(lambda: peer.got, 30, "the forwarded copy at the relayhost")
            s.wait_queue_empty()
            mail_from, rcpts, content, _ = peer.got[0]
            assert rcpts == ["far@remote.test"], rcpts
            assert mail_from == "owner-list@example.test", mail_from
            assert b"Delivered-To: list@example.test" in content
            assert b"Subject: fwd" in content
            assert b"Return-Path: <owner-list@example.test>" in open(
                s.delivered("alice")[0], "rb").read()
    finally:
        ctl.stop()


def test_mail_that_came_back_through_a_forward_is_a_loop():
    with Suite() as s:
        msg = make_message(9, extra_headers="Delivered-To: alice@example.test\r\n")
        s.send("bob@example.test", ["alice@example.test"], msg)
        (path,) = s.wait_delivered("bob", 1)
        data = open(path, "rb").read()
        assert b"mail forwarding loop for alice@example.test" in data, data[:1500]
        assert s.delivered("alice") == []


def test_one_copy_per_mailbox_per_message():
    s = Suite(start=False)
    _aliases(s, "team: alice, bob\nall: team, alice\n")
    with s.start_with_conf(s.conf_text):
        s.send("x@example.test", ["alice@example.test", "team@example.test", "all@example.test"],
               make_message(10))
        s.wait_delivered("bob", 1)
        s.wait_queue_empty()
        assert len(s.delivered("alice")) == 1 and len(s.delivered("bob")) == 1


def test_slow_pipes_stop_at_the_request_budget_and_are_deferred():
    """qmgr gives one delivery request 900 s, then may hand it out again:
    the local agent keeps each request within its own budget (600 s; 2 s
    here through the test knob) so slow commands are deferred (4.4.7) and
    tried later, never run on past qmgr's timeout to be delivered twice.
    Two pipe aliases that take 4 s each, in one message: the first is
    stopped at the budget, the second is not started."""
    s, text = _suite()
    out = os.path.join(s.dir, "pipe-out")
    os.mkdir(out)
    os.chmod(out, 0o1777)
    _aliases(s, f'slow1: "|sleep 4; echo 1 >> {out}/ran"\n'
                f'slow2: "|sleep 4; echo 2 >> {out}/ran"\n')
    os.environ["POSTERN_TEST_REQUEST_BUDGET_MS"] = "2000"
    try:
        with s.start_with_conf(text):
            s.send("x@example.test", ["slow1@example.test", "slow2@example.test"],
                   make_message(6))
            deferred = lambda: re.findall(r"to=<slow\d@example.test>.*dsn=4\.4\.7, "
                                          r"status=deferred \(([^)]*)\)", s.log())
            wait_for(lambda: len(deferred()) == 2, 30, "both recipients deferred")
            why = deferred()
            assert any("command stopped" in w for w in why), why
            assert any("not started" in w or "tried later" in w for w in why), why
            time.sleep(3)       # a command left running would have written by now
            assert not os.path.exists(f"{out}/ran"), open(f"{out}/ran").read()
    finally:
        del os.environ["POSTERN_TEST_REQUEST_BUDGET_MS"]
