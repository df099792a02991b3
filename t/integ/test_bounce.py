"""Delivery status notifications made by qmgr (qmgr/qmgr_bounce.c): a
failed local recipient bounces to a local sender's Maildir as an RFC 3464
multipart/report; NOTIFY=NEVER sends nothing, NOTIFY=SUCCESS a success
report; a bounce that cannot be delivered goes to postmaster once; delay
warnings and lifetime expiry for a recipient whose delivery defers."""
import email
import email.policy
import os
import time

from suite import Suite, make_message, wait_for

# an alias loop: accepted at RCPT (an alias name), refused by the local
# agent for good (5.4.6, delivery/delivery_expand.c)
BAD = "no-such@example.test"


def _suite(**kw):
    s = Suite(start=False, **kw)
    with open(os.path.join(s.dir, "aliases"), "w") as f:
        f.write("no-such: loop2\nloop2: no-such\n")
    s.start()
    return s


def _parse(path):
    with open(path, "rb") as f:
        data = f.read()
    return data, email.message_from_bytes(data, policy=email.policy.compat32)


def _report(msg):
    """(per-message fields, [per-recipient fields]) of the delivery-status part."""
    parts = msg.get_payload()
    st = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert len(st) == 1, [p.get_content_type() for p in parts]
    blocks = st[0].get_payload()
    return blocks[0], blocks[1:]


def _send(s, sender, rcpts, msg, mail_options=(), rcpt_options=()):
    with s.smtp() as c:
        c.ehlo("client.example.test")
        c.sendmail(sender, rcpts, msg, mail_options=list(mail_options),
                   rcpt_options=list(rcpt_options))


def test_bounce_unknown_local_user_reaches_sender():
    with _suite() as s:
        msg = make_message(1, subject="bounce me", extra_headers="X-Marker: orig-hdr\r\n")
        _send(s, "alice@example.test", [BAD], msg, mail_options=["ENVID=env+2D1"],
              rcpt_options=["ORCPT=rfc822;No+23Such@Example.test"])
        (path,) = s.wait_delivered("alice", 1)
        data, m = _parse(path)
        assert data.startswith(b"Return-Path: <>\n"), data[:200]
        assert m.get_content_type() == "multipart/report"
        assert m.get_param("report-type") == "delivery-status"
        assert m["Subject"] == "Undelivered Mail Returned to Sender"
        assert m["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
        assert m["Auto-Submitted"] == "auto-replied"
        assert m["Message-ID"] and m["Date"]
        per_msg, rcpts = _report(m)
        assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
        assert per_msg["Original-Envelope-Id"] == "env-1"
        assert per_msg["Arrival-Date"]
        assert len(rcpts) == 1
        r = rcpts[0]
        assert r["Final-Recipient"] == "rfc822; " + BAD
        assert r["Original-Recipient"] == "rfc822;No#Such@Example.test"
        assert r["Action"] == "failed"
        assert r["Status"] == "5.4.6"
        assert "alias loop" in r["Diagnostic-Code"], r["Diagnostic-Code"]
        assert r["Last-Attempt-Date"]
        parts = m.get_payload()
        orig = parts[-1]
        assert orig.get_content_type() == "text/rfc822-headers"
        text = orig.get_payload()
        assert "X-Marker: orig-hdr" in text and "Subject: bounce me" in text
        s.wait_queue_empty()
        assert "sender non-delivery notification" in s.log()


def test_ret_full_returns_the_whole_message():
    with _suite() as s:
        msg = make_message(2, body="the body line\r\n")
        _send(s, "alice@example.test", [BAD], msg, mail_options=["RET=FULL"])
        (path,) = s.wait_delivered("alice", 1)
        _, m = _parse(path)
        orig = m.get_payload()[-1]
        assert orig.get_content_type() == "message/rfc822"
        assert b"the body line" in orig.as_bytes()


def test_notify_never_sends_nothing_and_success_reports():
    with _suite() as s:
        _send(s, "alice@example.test", [BAD], make_message(3), rcpt_options=["NOTIFY=NEVER"])
        _send(s, "carol@example.test", ["bob@example.test"], make_message(4),
              rcpt_options=["NOTIFY=SUCCESS"])
        s.wait_delivered("bob", 1)
        (path,) = s.wait_delivered("carol", 1)
        _, m = _parse(path)
        assert m["Subject"] == "Successful Mail Delivery Report"
        _, rcpts = _report(m)
        assert rcpts[0]["Action"] == "delivered" and rcpts[0]["Status"].startswith("2.")
        assert rcpts[0]["Final-Recipient"] == "rfc822; bob@example.test"
        s.wait_queue_empty()
        time.sleep(1)
        assert s.delivered("alice") == [], "NOTIFY=NEVER must not send a report"


def test_double_bounce_goes_to_postmaster_once():
    with _suite() as s:
        # the sender's own mailbox fails permanently: its bounce bounces
        _send(s, "bad#sender@example.test", [BAD], make_message(5))
        (path,) = s.wait_delivered("root", 1)
        _, m = _parse(path)
        assert m["Subject"] == "Undelivered Mail Returned to Sender"
        _, rcpts = _report(m)
        assert rcpts[0]["Final-Recipient"] == "rfc822; bad#sender@example.test"
        s.wait_queue_empty()
        time.sleep(2)
        assert len(s.delivered("root")) == 1
        log = s.log()
        assert log.count("postmaster non-delivery notification") == 1, log[-3000:]


def test_null_sender_mail_that_fails_goes_to_postmaster():
    with _suite() as s:
        _send(s, "", [BAD], make_message(6))
        (path,) = s.wait_delivered("root", 1)
        s.wait_queue_empty()


def test_delay_warning_once_then_lifetime_expiry():
    s = Suite(start=False)
    s.start_with_conf(s.conf_text.replace(
        "delivery { retry = [2s, 2s, 5s]; lifetime = 1h; }",
        "delivery { retry = [2s]; lifetime = 1m; delay_warning = 3s; }"))
    with s:
        os.mkdir(os.path.join(s.mail, "dave"), 0o500)   # root's: delivery defers
        _send(s, "alice@example.test", ["dave@example.test"], make_message(7),
              mail_options=["ENVID=delay1"])
        (path,) = s.wait_delivered("alice", 1, timeout=30)
        _, m = _parse(path)
        assert m["Subject"] == "Delayed Mail (still being retried)"
        per_msg, rcpts = _report(m)
        assert per_msg["Original-Envelope-Id"] == "delay1"
        r = rcpts[0]
        assert r["Action"] == "delayed" and r["Status"].startswith("4."), r.items()
        assert r["Will-Retry-Until"] and r["Diagnostic-Code"]
        time.sleep(8)   # several more retries: still one warning
        assert len(s.delivered("alice")) == 1
        wait_for(lambda: len(s.delivered("alice")) >= 2, 90, "the expiry bounce")
        got = s.wait_delivered("alice", 2)
        _, m2 = _parse([p for p in got if p != path][0])
        assert m2["Subject"] == "Undelivered Mail Returned to Sender"
        _, rcpts = _report(m2)
        assert rcpts[0]["Action"] == "failed" and rcpts[0]["Status"] == "4.4.7", rcpts[0].items()
        assert "expired" in rcpts[0]["Diagnostic-Code"]
        s.wait_queue_empty()


def test_failing_double_bounce_is_dropped_no_loop():
    """Every message is refused after queueing (a postq rule): the sender's
    bounce fails, goes to postmaster, that fails too and is dropped."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="postern-rules-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "main.rules")
    with open(path, "w") as f:
        f.write('stage postq { rule "all" { return deny(554, "5.7.1", "refused after queueing"); } }\n')
    os.chmod(path, 0o644)
    try:
        with Suite(extra_conf=f'rules = "{path}";') as s:
            _send(s, "alice@example.test", ["bob@example.test"], make_message(8))
            wait_for(lambda: "double bounce to postmaster failed: dropped" in s.log(), 20,
                     "the double bounce to be dropped")
            s.wait_queue_empty()
            time.sleep(2)
            log = s.log()
            assert log.count("sender non-delivery notification") == 1, log[-3000:]
            assert log.count("postmaster non-delivery notification") == 1, log[-3000:]
            assert log.count("double bounce to postmaster failed") == 1, log[-3000:]
            for u in ("alice", "bob", "root"):
                assert s.delivered(u) == [], u
    finally:
        shutil.rmtree(d, ignore_errors=True)
