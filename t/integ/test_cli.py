"""The postern command: check, queue list/show/flush, reload, stop."""
import json
import os
import re
import signal
import subprocess
import time

from suite import POSTERN, SmtpClient, Suite, make_message, wait_for


def test_broken_config_names_file_line_col_and_key():
    s = Suite(start=False)
    try:
        good = s.conf_text
        bad = good.replace("hostname = ", "limits { message_size = lots; }\nhostname = ", 1)
        bad += "\nlocal_domians = [\"x.test\"];\n"
        s.write_conf(bad)
        lines = bad.split("\n")
        size_line = next(i for i, l in enumerate(lines, 1) if "message_size = lots" in l)
        typo_line = next(i for i, l in enumerate(lines, 1) if "local_domians" in l)
        r = s.postern("check")
        err = r.stderr.decode() + r.stdout.decode()
        assert r.returncode == 1, err
        assert f"{s.conf}:{size_line}:" in err and "limits.message_size" in err, err
        assert f"{s.conf}:{typo_line}:1: " in err and "local_domians" in err, err
        assert "local_domains" in err, "no did-you-mean suggestion: " + err
        r = s.postern("run", timeout=20)
        assert r.returncode == 1
        assert f"{s.conf}:{size_line}:" in r.stderr.decode() + r.stdout.decode()
        s.write_conf(good)
        r = s.postern("check")
        assert r.returncode == 0, r.stderr.decode()
    finally:
        s.__exit__(None, None, None)


def test_queue_list_show_and_flush():
    # alice's Maildir parent is not writable: delivery defers with a reason
    with Suite() as s:
        blocked = os.path.join(s.mail, "alice")
        os.mkdir(blocked, 0o500)          # owned by root: postern cannot create Maildir
        msg = make_message(42, subject="queued for a while")
        with s.smtp() as c:
            c.ehlo("q.example")
            c.sendmail("sender@example.test", ["alice@example.test"], msg)
        def deferred():
            r = s.postern("queue", "list", "--json", check=True)
            rows = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
            return rows if rows and rows[0]["queue"] == "deferred" else None
        rows = wait_for(deferred, 30, "the message to be deferred")
        assert len(rows) == 1
        row = rows[0]
        qid = row["id"]
        assert row["sender"] == "sender@example.test"
        rc = row["recipients"][0]
        assert rc["address"] == "alice@example.test" and rc["status"] == "deferred", rc
        assert rc["reason"], rc
        text = s.postern("queue", "list", check=True).stdout.decode()
        assert qid in text and "alice@example.test" in text
        mailq = subprocess.run([os.path.join(os.path.dirname(POSTERN), "mailq")],
                               env={**os.environ, "POSTERN_CONFIG": s.conf},
                               capture_output=True, timeout=30)
        assert qid in mailq.stdout.decode(), mailq
        show = s.postern("queue", "show", qid, check=True).stdout.decode()
        assert "queued for a while" in show and "alice@example.test" in show
        raw = s.postern("queue", "show", qid, "--raw", check=True).stdout
        assert raw.endswith(msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1])
        assert b"Subject: queued for a while\n" in raw
        js = json.loads(s.postern("queue", "show", qid, "--json", check=True).stdout)
        assert "content" in json.dumps(js)
        r = s.postern("queue", "show", "NOSUCHID")
        assert r.returncode == 1 and b"not found" in r.stderr
        r = s.postern("queue", "show", "../../etc/passwd")
        assert r.returncode != 0
        os.chmod(blocked, 0o700)
        os.chown(blocked, s.uid, s.gid)
        s.postern("queue", "flush", check=True)
        s.wait_delivered("alice", 1, timeout=20)
        s.wait_queue_empty()
        assert "Mail queue is empty" in s.postern("queue", "list", check=True).stdout.decode()


def test_reload_keeps_mail_and_bad_reload_keeps_running():
    with Suite() as s:
        for i in range(5):
            s.send("a@example.test", ["bob@example.test"], make_message(i))
        good = s.conf_text
        s.write_conf(good.replace('"example.test"]', '"example.test", "new.test"]'))
        r = s.postern("reload", check=True)
        assert r.returncode == 0
        # the new local domain is accepted once children restarted with the config
        def new_domain_ok():
            try:
                s.send("a@example.test", ["bob@new.test"], make_message(99))
                return True
            except Exception:
                return False
        wait_for(new_domain_ok, 20, "reloaded config in effect", interval=0.5)
        s.wait_delivered("bob", 6)
        s.write_conf(good + "\nthis is not valid\n")
        os.kill(s.master_pid(), signal.SIGHUP)
        wait_for(lambda: "not valid" in s.log() or "reload" in s.log().split("new.test")[-1], 10,
                 "reload failure logged")
        time.sleep(1)
        assert s.proc.poll() is None, "master died on a broken reload"
        s.send("a@example.test", ["bob@example.test"], make_message(100))
        s.wait_delivered("bob", 7)


def test_status_and_stop():
    with Suite() as s:
        r = s.postern("status")
        assert r.returncode == 0 and b"running" in r.stdout, r
        r = s.postern("stop", timeout=90)
        assert r.returncode == 0, r.stderr
        s.proc.wait(30)
        r = s.postern("status")
        assert r.returncode == 1 and b"not running" in r.stdout + r.stderr


def test_check_compiles_the_rules_file():
    s = Suite(start=False)
    try:
        rules = os.path.join(s.dir, "main.rules")
        with open(rules, "w") as f:
            f.write('stage rcpt {\n  rule "typo" { if rcpt.domian == "x.test" { return deny; } }\n}\n')
        s.write_conf(s.conf_text + f'rules = "{rules}";\n')
        r = s.postern("check")
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert f"{rules}:2:" in err and "domian" in err and "did you mean 'domain'" in err, err
        with open(rules, "w") as f:
            f.write('stage rcpt {\n  rule "ok" { if rcpt.domain == "x.test" { return deny; } }\n}\n')
        r = s.postern("check")
        assert r.returncode == 0, r.stderr.decode()
    finally:
        s.__exit__(None, None, None)


def test_reload_lets_open_sessions_finish():
    with Suite() as s:
        c = s.smtp()
        c.ehlo("before.reload.example")
        old = s.child_pids("smtpd")
        r = s.postern("reload", check=True)
        assert r.returncode == 0
        wait_for(lambda: "retiring" in s.log(), 10, "the old smtpd to retire")
        wait_for(lambda: set(s.child_pids("smtpd")) - set(old), 10, "a new smtpd")
        # the session opened before the reload goes on normally on the old
        # process: no 421, the message is queued and delivered
        assert c.noop()[0] == 250
        c.sendmail("a@example.test", ["carol@example.test"], make_message(77))
        c.quit()
        s.wait_delivered("carol", 1)
        # and the old process exits once its last session is over
        wait_for(lambda: not set(old) & set(s.child_pids("smtpd")), 10, "the old smtpd to exit")


def test_reload_mid_message_keeps_the_file_being_written():
    """A message half-sent when cleanup is replaced (reload) stays with the
    old cleanup, whose file in tmp/ the new one, purging what crashed runs
    left there at start, must leave alone (it is locked: lib/mail/queue.h).
    Before, the new cleanup removed it and the message got 451."""
    with Suite() as s:
        c = SmtpClient.ready(s.port)
        c.envelope("a@example.test", ["carol@example.test"])
        code, lines = c.cmd("DATA")
        assert code == 354, lines
        c.send(b"Subject: across a reload\r\n\r\n" + b"a line of the body\r\n" * 4000)
        tmp = os.path.join(s.spool, "tmp")
        wait_for(lambda: os.listdir(tmp), 10, "the file in tmp/")
        held = os.listdir(tmp)
        old = s.child_pids("cleanup")
        s.postern("reload", check=True)
        wait_for(lambda: set(s.child_pids("cleanup")) - set(old), 10, "a new cleanup")
        wait_for(lambda: len(re.findall(r"postern/cleanup\[\d+\]: ready", s.log())) >= 2,
                 10, "the new cleanup ready")
        assert set(held) <= set(os.listdir(tmp)), (held, os.listdir(tmp))
        c.send(b"the end\r\n.\r\n")
        code, lines = c.reply()
        assert code == 250, lines
        c.cmd("QUIT")
        got = s.wait_delivered("carol", 1)
        assert b"the end" in open(got[0], "rb").read()
