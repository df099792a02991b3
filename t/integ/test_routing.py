"""After-queue rules in qmgr: the deliver stage chooses maildir / mbox /
discard per recipient, postq quarantines (then `queue release` delivers),
denies (bounced) and defers (reason kept); without rules qmgr never asks."""
import glob
import json
import os
import re

from suite import Suite, free_port, make_message, wait_for


def _suite(rules, start=True, **kw):
    """A Suite whose config names a rules file written here; mbox files go
    to <mail>/<user>.mbox."""
    s = Suite(start=False, **kw)
    path = os.path.join(s.dir, "test.rules")
    with open(path, "w") as f:
        f.write(rules)
    os.chmod(path, 0o644)
    local = (f'local {{ mailbox = "maildir"; maildir = "{s.mail}/%u/Maildir"; '
             f'mbox = "{s.mail}/%u.mbox"; }}')
    text = re.sub(r"^local \{.*\}$", local, s.conf_text, count=1, flags=re.M)
    text += f'rules = "{path}";\n'
    if start:
        return s.start_with_conf(text)
    s.write_conf(text)
    return s


def _queue(s):
    r = s.postern("queue", "list", "--json", check=True)
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def _send(s, rcpts, subject, sender="sender@example.test"):
    s.send(sender, [f"{u}@example.test" for u in rcpts], make_message(1, subject=subject))


def _logged(s, pattern, timeout=20):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


ROUTE = """
stage deliver {
  action "route" {
    for r in rcpt_list {
      if r.local_part == "bob" { mbox(r); }
      else if r.local_part == "carol" { discard(r); }
      else { maildir(r); }
    }
  }
}
"""


def test_deliver_stage_routes_maildir_mbox_discard():
    with _suite(ROUTE) as s:
        _send(s, ["alice", "bob", "carol"], "routed")
        s.wait_delivered("alice", 1)
        mbox = os.path.join(s.mail, "bob.mbox")
        wait_for(lambda: os.path.exists(mbox) and os.path.getsize(mbox) > 0, 20, "bob's mbox")
        s.wait_queue_empty()
        with open(mbox, "rb") as f:
            data = f.read()
        assert data.startswith(b"From sender@example.test "), data[:80]
        assert b"Subject: routed" in data
        assert not os.path.exists(os.path.join(s.mail, "bob", "Maildir")), "bob got a Maildir too"
        assert not glob.glob(os.path.join(s.mail, "carol*")), "carol got mail"
        log = s.log()
        assert re.search(r"to=<alice@example\.test>, relay=local \(maildir\),.*status=sent", log), log
        assert re.search(r"to=<bob@example\.test>, relay=local \(mbox\),.*status=sent", log), log
        assert re.search(r'to=<carol@example\.test>, relay=local \(discard\),.*dsn=2\.0\.0, '
                         r'status=discarded \(discarded by rule "route"\)', log), log


def test_deliver_stage_relay_for_local_domain_does_not_loop_and_forward_waits():
    dead = free_port()   # forward() to a host that is down: deferred (t/integ/test_lmtp.py: up)
    rules = """
stage deliver {
  action "route" {
    for r in rcpt_list {
      if r.local_part == "alice" { relay(r); } else { forward(r, "[127.0.0.1]:%d"); }
    }
  }
}
""" % dead
    with _suite(rules) as s:
        _send(s, ["alice", "bob"], "relay")
        s.wait_delivered("alice", 1)       # relay() to our own domain: delivered here
        _logged(s, r"to=<bob@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d,.*"
                   r"dsn=4\.4\.1, status=deferred \(connect to " % dead)
        rows = wait_for(lambda: [r for r in _queue(s) if r["queue"] == "deferred"], 20,
                        "bob deferred")
        st = {rc["address"]: rc for rc in rows[0]["recipients"]}
        assert st["alice@example.test"]["status"] == "delivered", st
        assert st["bob@example.test"]["status"] == "deferred", st


POSTQ = """
stage postq {
  rule "hold junk" { if msg.subject == "junk" { return quarantine("junk"); } }
  rule "deny bad" { if msg.subject == "bad" { return deny(550, "5.7.9", "bad subject here"); } }
  rule "later" { if msg.subject == "later" { return defer(451, "4.7.3", "come back later please"); } }
  action "tag" {
    if msg.subject == "tagme" {
      add_header("X-Tag", "tagged by postq");
      remove_rcpt(address "dave@example.test");
      add_rcpt(address "erin@example.test");
    }
  }
}
"""


def test_postq_quarantine_then_release_delivers():
    with _suite(POSTQ) as s:
        _send(s, ["alice"], "junk")
        qdir = os.path.join(s.spool, "quarantine", "junk")
        # ID.tmp is qmgr recording the quarantine in the file: not the message
        files = wait_for(lambda: [f for f in glob.glob(os.path.join(qdir, "*")) if "." not in os.path.basename(f)],
                         20, "a file in quarantine/junk")
        assert len(files) == 1, files
        qid = os.path.basename(files[0])
        _logged(s, rf'{qid}: quarantined \(junk\) by rule "hold junk"')
        rows = _queue(s)
        assert [(r["id"], r["queue"], r.get("quarantine")) for r in rows] == \
            [(qid, "quarantine/junk", "junk")], rows
        assert rows[0]["recipients"][0]["status"] == "pending", rows
        js = json.loads(s.postern("queue", "show", qid, "--json", check=True).stdout)
        assert js["metadata"]["quarantine"] == "junk", js["metadata"]
        assert not s.delivered("alice")
        # qmgr never schedules it by itself: a flush leaves it where it is
        s.postern("queue", "flush", check=True)
        r = s.postern("queue", "release", qid, check=True)
        assert "released 1 message" in r.stdout.decode(), r.stdout
        s.wait_delivered("alice", 1)       # released: postq is not asked again
        s.wait_queue_empty()
        assert not glob.glob(os.path.join(qdir, "*"))


def test_postq_deny_bounces_and_defer_keeps_reason():
    with _suite(POSTQ) as s:
        _send(s, ["alice", "bob"], "bad")
        _logged(s, r'to=<alice@example\.test>, relay=none,.*dsn=5\.7\.9, status=bounced '
                   r'\(rejected by rule "deny bad": bad subject here\)')
        _logged(s, r'to=<bob@example\.test>, relay=none,.*status=bounced \(rejected by rule "deny bad"')
        s.wait_queue_empty()
        assert not s.delivered("alice") and not s.delivered("bob")

        _send(s, ["carol"], "later")
        _logged(s, r'postq: deferred by rule "later": come back later please')

        def deferred():
            rows = [r for r in _queue(s) if r["queue"] == "deferred"]
            return rows or None
        rows = wait_for(deferred, 20, "the message in deferred/")
        rc = rows[0]["recipients"][0]
        assert rc["address"] == "carol@example.test" and rc["status"] == "deferred", rc
        assert rc["reason"] == "come back later please" and rc["dsn"] == "4.7.3", rc
        assert not s.delivered("carol")


def test_postq_mutations_rewrite_the_queue_file():
    with _suite(POSTQ) as s:
        _send(s, ["alice", "dave"], "tagme")
        s.wait_delivered("alice", 1)
        s.wait_delivered("erin", 1)
        s.wait_queue_empty()
        assert not s.delivered("dave")
        with open(s.delivered("alice")[0], "rb") as f:
            data = f.read()
        head = data.split(b"\n\n", 1)[0]
        assert b"\nX-Tag: tagged by postq\n" in head + b"\n", head
        assert data.count(b"X-Tag:") == 1
        log = s.log()
        assert re.search(r'to=<dave@example\.test>, relay=none,.*status=discarded '
                         r'\(removed by rule "tag"\)', log), log
        assert 'added recipient <erin@example.test> (rule "tag")' in log, log


def test_no_rules_no_postq_round_trip():
    s = Suite(start=False)
    os.environ["POSTERN_TRACE"] = "1"
    try:
        s.start()
    except Exception:
        s.__exit__(None, None, None)
        raise
    finally:
        del os.environ["POSTERN_TRACE"]
    with s:
        _send(s, ["alice"], "plain")
        s.wait_delivered("alice", 1)
        s.wait_queue_empty()
        log = s.log()
        assert re.search(r"qmgr\[\d+\]: ipc >local: deliver_req ", log), \
            "POSTERN_TRACE is not honoured"
        # no rules file: no stage needs filter, nobody asks it anything
        reqs = re.findall(r"(?i)filter_req .*", log)
        assert not reqs, reqs


def test_qmgr_reconnects_after_filter_restart():
    import signal
    with _suite(ROUTE) as s:
        _send(s, ["bob"], "first")
        mbox = os.path.join(s.mail, "bob.mbox")
        wait_for(lambda: os.path.exists(mbox) and os.path.getsize(mbox) > 0, 20, "bob's mbox")
        old = s.child_pids("filter")
        assert len(old) == 1, old
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda: s.child_pids("filter") and s.child_pids("filter") != old, 20,
                 "a new filter process")
        wait_for(s.banner_ok, 20, "220 banner after the filter restart")
        _send(s, ["bob", "alice"], "second")
        s.wait_delivered("alice", 1)
        wait_for(lambda: open(mbox, "rb").read().count(b"Subject: second") == 1, 20,
                 "the second message in bob's mbox")
        s.wait_queue_empty()
        assert not os.path.exists(os.path.join(s.mail, "bob", "Maildir"))
