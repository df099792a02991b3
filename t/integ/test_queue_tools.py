"""Queue tools a postmaster expects: `postern queue` selectors (sender,
recipient, age, queue) on list and on every action, with the count printed;
each administrative action logged with who did it; mailq in Postfix's
layout with its summary line."""
import json
import os
import re
import subprocess

from suite import POSTERN, Suite, make_message, wait_for


def deferred_ids(s, n):
    def ready():
        r = s.postern("queue", "list", "--json", "--queue", "deferred", check=True)
        rows = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        return rows if len(rows) == n else None
    return wait_for(ready, 30, f"{n} deferred messages")


def out(r):
    return r.stdout.decode() + r.stderr.decode()


def test_queue_selectors_counts_audit_and_mailq():
    # retry in an hour: deferred mail stays put while the test works on it
    with Suite(retry="[1h]") as s:
        for user in ("alice", "bob"):
            os.mkdir(os.path.join(s.mail, user), 0o500)   # root's: delivery defers
        s.send("ann@one.test", ["alice@example.test"], make_message(1))
        s.send("ben@two.test", ["bob@example.test", "alice@example.test"], make_message(2))
        s.send("", ["bob@example.test"], make_message(3))
        rows = deferred_ids(s, 3)
        by_sender = {r["sender"]: r["id"] for r in rows}

        # postern status: each daemon's state and the queue table
        st = s.postern("status", check=True).stdout.decode()
        assert st.startswith("postern is running (pid "), st
        for proc in ("smtpd", "cleanup", "qmgr", "delivery", "filter"):
            assert re.search(r"^%s\s+\d+\s+running\s+0d\d\dh\d\dm\d\ds\s+0$" % proc, st, re.M), st
        assert re.search(r"^deferred\s+3\s+\d+\s+0d00h00m ago$", st, re.M), st
        assert re.search(r"^hold\s+0\s+0\s+-$", st, re.M), st
        r = s.postern("queue", "list", "--sender", "ann@one.test", check=True)
        assert by_sender["ann@one.test"] in out(r) and "-- 1 message," in out(r), out(r)
        r = s.postern("queue", "list", "--sender", "@TWO.test", check=True)
        assert by_sender["ben@two.test"] in out(r) and "-- 1 message," in out(r), out(r)
        r = s.postern("queue", "list", "--sender", "<>", check=True)
        assert by_sender[""] in out(r) and "-- 1 message," in out(r), out(r)
        r = s.postern("queue", "list", "--rcpt", "alice@example.test", check=True)
        assert "-- 2 messages," in out(r), out(r)
        r = s.postern("queue", "list", "--older-than", "1h", check=True)
        assert "-- 0 messages," in out(r), out(r)
        r = s.postern("queue", "list", "--newer-than", "1h", "--queue", "deferred", check=True)
        assert "-- 3 messages," in out(r), out(r)

        # an action by selector: the count, the move, and the audit line
        r = s.postern("queue", "hold", "--rcpt", "@example.test", "--sender", "@one.test",
                      check=True)
        assert out(r).strip() == "held 1 message", out(r)
        held = by_sender["ann@one.test"]
        r = s.postern("queue", "list", "--queue", "hold", "--json", check=True)
        assert [json.loads(l)["id"] for l in r.stdout.decode().splitlines()] == [held]
        wait_for(lambda: re.search(r"admin: queue hold: 1 message \(%s\) by root \(uid 0\)"
                                   % held, s.log()), 10, "the audit line for hold")

        # mailq: Postfix's layout, '!' on held mail, the summary line
        mq = subprocess.run([os.path.join(os.path.dirname(POSTERN), "mailq")],
                            env={**os.environ, "POSTERN_CONFIG": s.conf},
                            capture_output=True, timeout=30)
        text = mq.stdout.decode()
        lines = text.splitlines()
        assert lines[0].startswith("-Queue ID-  --Size--"), text
        assert re.search(r"^%s!\s+\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+ann@one.test$" % held,
                         text, re.M), text
        assert re.search(r"^\s{43}alice@example.test$", text, re.M), text
        assert "MAILER-DAEMON" in text, text   # the null sender, as Postfix shows it
        assert lines[-1] == "-- 1 Kbytes in 3 Requests." or \
            re.fullmatch(r"-- \d+ Kbytes in 3 Requests\.", lines[-1]), lines[-1]

        r = s.postern("queue", "release", "--queue", "hold", check=True)
        assert out(r).strip() == "released 1 message", out(r)
        r = s.postern("queue", "delete", "--sender", "<>", check=True)
        assert out(r).strip() == "deleted 1 message", out(r)
        wait_for(lambda: "admin: queue delete: 1 message (%s) by root (uid 0)" % by_sender[""]
                 in s.log(), 10, "the audit line for delete")
        r = s.postern("queue", "delete", "--sender", "nobody@nowhere.test", check=True)
        assert out(r).strip() == "deleted 0 messages", out(r)
        s.postern("queue", "flush", check=True)
        wait_for(lambda: "admin: queue flush by root (uid 0)" in s.log(), 10, "flush audit")

        for bad in (["list", "--queue", "nosuch"], ["list", "--older-than", "soon"],
                    ["hold"], ["delete", "--rcpt"]):
            r = s.postern("queue", *bad)
            assert r.returncode == 2, (bad, out(r))
