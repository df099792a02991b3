"""Structured logs, `postern log ID`, log.file and the admin trail (issue 12).

- format = "json" with hostile input (bad commands, control bytes and quotes
  in HELO/MAIL/headers, overlong lines, STARTTLS, AUTH failures): every line
  of log.file parses, and each event carries its documented fields
  (postern.log(7));
- `postern log ID` shows a message's whole path, deferred by a relay that
  answers 451 first, then delivered; by queue id and by session id alike;
- queue hold/release/delete/requeue/flush, reload and stop are logged with
  who did them;
- log.file is reopened on SIGUSR1 and on SIGHUP after logrotate renamed it;
- `postern start` with neither /dev/log nor log.file says where the logs go.
"""
import json
import os
import re
import signal
import threading
import time

from aiosmtpd.controller import Controller

from suite import Suite, free_port, make_message, wait_for
from tlsutil import Raw, mkpasswd, tls_conf

PASSWORD = "pw-Log-test"

COMMON = {"ts", "level", "process", "pid", "event"}
REQUIRED = {
    "connect": {"session", "client", "listener"},
    "helo": {"session", "client", "helo"},
    "tls": {"session", "client", "tls_version", "tls_cipher"},
    "auth_failed": {"session", "client", "mechanism", "user", "reason", "failures"},
    "auth": {"session", "client", "mechanism", "user"},
    "mail": {"session", "client", "sender"},
    "rcpt": {"session", "client", "sender", "recipient"},
    "reject": {"session", "client", "command", "code", "dsn", "reason"},
    "queued": {"session", "queue_id", "client", "helo", "sender", "nrcpt", "size"},
    "disconnect": {"session", "client", "commands", "errors"},
    "cleanup": {"session", "queue_id", "sender", "size", "nrcpt"},
    "active": {"queue_id", "sender", "size", "nrcpt"},
    "delivered": {"queue_id", "recipient", "relay", "delay", "dsn", "status", "reason"},
    "deferred": {"queue_id", "recipient", "relay", "delay", "dsn", "status", "reason"},
    "bounced": {"queue_id", "recipient", "relay", "delay", "dsn", "status", "reason"},
    "removed": {"queue_id"},
    "admin": {"kind", "action", "by", "uid"},
    "start": {"processes", "by", "uid"},
    "stop": set(),
    "reload": {"path", "by", "uid"},
    "reopen": {"path"},
    "log": {"msg"},
}
TYPES = {"pid": int, "code": int, "size": int, "nrcpt": int, "uid": int, "delay": float,
         "failures": int, "commands": int, "errors": int}


def log_conf(s, fmt, path, extra=""):
    text = s.conf_text.replace('log = { level = "info"; format = "text"; }',
                               f'log = {{ level = "info"; format = "{fmt}"; file = "{path}"; }}')
    assert f'file = "{path}"' in text
    return text + extra


def read_json_lines(path):
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    for i, line in enumerate(data.split(b"\n")):
        if not line:
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError(f"{path} line {i + 1} is not JSON ({e}): {line!r}")
        assert isinstance(obj, dict), line
        rows.append(obj)
    return rows


def assert_clean_file(path):
    """The file holds what Suite.assert_clean_log checks in stderr."""
    with open(path, errors="replace") as f:
        text = f.read()
    for bad in ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                "LeakSanitizer", "panic", "signal 6", "signal 11"):
        assert bad not in text, f"{path} contains {bad!r}"


def check_fields(rows):
    """Every row has the common fields and its event's; types are right."""
    for r in rows:
        missing = (COMMON | REQUIRED.get(r["event"], set())) - set(r)
        assert not missing, f"{r['event']} lacks {sorted(missing)}: {r}"
        for k, t in TYPES.items():
            if k in r:
                assert isinstance(r[k], (int, float) if t is float else t), (k, r)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]), r
        if "session" in r:
            assert re.fullmatch(r"[0-9a-f]{16}", r["session"]), r


def hostile_session(s):
    """Bad commands, hostile HELO/MAIL/header bytes, a long line, STARTTLS,
    AUTH failures, then a good message to alice. Returns its queue id."""
    r = Raw(s.port)
    assert r.reply()[0] == 220
    r.send(b"FOO\x01bar\r\n")
    assert r.reply()[0] in (500, 501, 502)
    r.send(b"MAIL FROM:<x@example.test>\r\n")
    assert r.reply()[0] == 503
    r.send(b"HELO bad\x01\x1b[31mname\r\n")
    assert r.reply()[0] == 501
    r.send(b"X" * 3000 + b"\r\n")
    assert r.reply()[0] == 500
    code, lines = r.cmd('EHLO q"uote\\back')
    assert code == 250, lines
    r.starttls()
    code, lines = r.cmd('EHLO q"uote\\back')
    assert code == 250, lines
    code, _ = r.cmd("AUTH PLAIN " + __import__("base64").b64encode(
        b"\0nobody\r\n\"\\\0wrong").decode())
    assert code == 535
    code, _ = r.cmd('MAIL FROM:<"we\\"ird\\\\"@example.test>')
    assert code == 250, code
    code, _ = r.cmd("RCPT TO:<far@elsewhere.test>")
    assert code == 554, code                     # relay denied: a reject event
    code, _ = r.cmd("RCPT TO:<alice@example.test>")
    assert code == 250
    assert r.cmd("DATA")[0] == 354
    body = (b"Subject: \x01\x7f\"quoted\" \\ \xff\xfe\r\nX-Long: " + b"y" * 5000 +
            b"\r\n\r\nbody\r\n.\r\n")
    r.send(body)
    code, lines = r.reply()
    assert code == 250, lines
    qid = lines[-1].rsplit(" ", 1)[-1]
    assert r.cmd("QUIT")[0] == 221
    r.close()
    return qid


def test_json_events_parse_and_carry_their_fields():
    s = Suite(start=False, mynetworks='["192.0.2.0/24"]')     # no relaying for us
    path = os.path.join(s.dir, "mail.json")
    users = os.path.join(s.dir, "users")
    with open(users, "w") as f:
        f.write(f"someone:{mkpasswd('sha512crypt', PASSWORD)}\n")
    os.chmod(users, 0o600)
    s.start_with_conf(log_conf(s, "json", path, tls_conf(s.dir) +
                               f'auth {{ users = "{users}"; }}\n'))
    with s:
        qid = hostile_session(s)
        s.wait_delivered("alice", 1)
        s.wait_queue_empty()
        r = s.postern("log", qid)
        assert r.returncode == 0, r.stderr
        shown = [json.loads(l) for l in r.stdout.decode().splitlines()]
        s.stop()
        rows = read_json_lines(path)
        assert_clean_file(path)
    check_fields(rows)
    events = {r["event"] for r in rows}
    want = {"start", "connect", "helo", "tls", "auth_failed", "mail", "rcpt", "reject",
            "queued", "cleanup", "active", "delivered", "removed", "disconnect", "stop"}
    assert want <= events, sorted(want - events)
    # values from the wire stay in their fields, escaped
    helo = [r for r in rows if r["event"] == "helo"]
    assert helo and helo[0]["helo"] == 'q"uote\\back', helo
    mail = [r for r in rows if r["event"] == "mail"]
    assert mail[0]["sender"] == '"we\\"ird\\\\"@example.test', mail
    fail = [r for r in rows if r["event"] == "auth_failed"][0]
    assert fail["user"] == 'nobody\\x0d\\x0a"\\', fail
    tls = [r for r in rows if r["event"] == "tls"][0]
    assert tls["tls_version"].startswith("TLSv1."), tls
    # one session id from connect to the queued line, which names the queue id
    queued = [r for r in rows if r["event"] == "queued"][0]
    assert queued["queue_id"] == qid
    sid = queued["session"]
    assert [r["event"] for r in rows if r.get("session") == sid][0] == "connect"
    assert any(r["event"] == "cleanup" and r["session"] == sid for r in rows)
    # `postern log QID`: the whole life, smtpd's session included
    path_events = [r["event"] for r in shown]
    for ev in ("connect", "helo", "tls", "mail", "rcpt", "queued", "cleanup", "active",
               "delivered", "removed", "disconnect"):
        assert ev in path_events, (ev, path_events)
    assert path_events.index("connect") < path_events.index("queued") < \
        path_events.index("delivered")
    assert all(r.get("queue_id") == qid or r.get("session") == sid for r in shown), shown


class FlakyPeer:
    """A relay that answers the first RCPT with 451, then accepts."""

    def __init__(self):
        self.tries = 0
        self.got = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.tries += 1
            if self.tries == 1:
                return "451 4.3.2 not now"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append(envelope.original_content)
        return "250 2.0.0 queued as SINK1"


def test_postern_log_shows_deferred_then_delivered():
    peer = FlakyPeer()
    port = free_port()
    ctl = Controller(peer, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        s = Suite(start=False)
        path = os.path.join(s.dir, "mail.log")
        s.start_with_conf(log_conf(s, "text", path,
                                   f'delivery {{ relayhost = "[127.0.0.1]:{port}"; }}\n'))
        with s:
            with s.smtp() as c:
                c.ehlo("client.example.test")
                c.mail("sender@example.test")
                c.rcpt("far@remote.test")
                code, text = c.data(make_message(1))
            assert code == 250, text
            qid = text.decode().rsplit(" ", 1)[-1]
            wait_for(lambda: peer.got, 30, "the retried delivery")
            s.wait_queue_empty()
            # master writes the log file: the last lines may lag the queue
            wait_for(lambda: f"{qid}: removed" in open(path, errors="replace").read(), 10,
                     "the removed line in the log file")
            r = s.postern("log", qid)
            assert r.returncode == 0, r.stderr
            out = r.stdout.decode()
            lines = out.splitlines()
            deferred = [i for i, l in enumerate(lines)
                        if "to=<far@remote.test>" in l and "status=deferred" in l]
            sent = [i for i, l in enumerate(lines)
                    if "to=<far@remote.test>" in l and "status=sent" in l]
            assert deferred and sent and deferred[0] < sent[-1], out
            assert re.search(r"dsn=4\.3\.2, status=deferred \(.*451 4\.3\.2 not now", out), out
            # the smtp agent's own line for each attempt, under the queue id
            attempts = re.findall(rf"smtp\[\d+\]: {qid}: to=<far@remote\.test>, "
                                  rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, .*status=(\w+)", out)
            assert attempts == ["deferred", "sent"], (attempts, out)
            for what in ("connect from [127.0.0.1]", f"{qid}: client=[127.0.0.1]",
                         "(queued)", "(queue active)", f"{qid}: removed",
                         "disconnect from [127.0.0.1]"):
                assert what in out, (what, out)
            assert lines[0].split("]: ", 1)[1].split(": ", 1)[1].startswith("connect from"), out
            # the session id finds the same path
            sid = re.search(rf"{qid}: client=\S+ helo=.*session=([0-9a-f]{{16}})", out)
            assert sid, out
            r2 = s.postern("log", sid.group(1))
            assert r2.returncode == 0 and r2.stdout.decode() == out, (out, r2.stdout)
            assert s.postern("log", "NOSUCHID0").returncode == 1
    finally:
        ctl.stop()


def test_admin_actions_reload_and_stop_are_logged_with_who():
    s = Suite(start=False)
    path = os.path.join(s.dir, "mail.json")
    s.start_with_conf(log_conf(s, "json", path))
    with s:
        s.postern("queue", "hold", "ALL", check=True)        # 0 messages: still logged
        s.postern("queue", "flush", check=True)
        r = s.postern("reload", timeout=90)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: any(r["event"] == "admin" and r["action"] == "flush"
                             for r in read_json_lines(path)), 10, "the flush audit")
        s.stop()
        rows = read_json_lines(path)
        assert_clean_file(path)
    check_fields(rows)
    admin = {r["action"]: r for r in rows if r["event"] == "admin"}
    assert {"hold", "flush"} <= set(admin), admin
    assert admin["hold"]["count"] == 0 and admin["hold"]["by"] == "root", admin
    assert admin["flush"]["uid"] == 0 and "count" not in admin["flush"], admin
    reload = [r for r in rows if r["event"] == "reload"]
    assert reload and reload[0]["by"] == "root" and reload[0]["uid"] == 0, reload
    stop = [r for r in rows if r["event"] == "stop"]
    assert stop and stop[0]["by"] == "root", stop
    start = [r for r in rows if r["event"] == "start"]
    assert start and start[0]["by"] == "root", start


def test_log_file_reopened_after_rename():
    s = Suite(start=False)
    path = os.path.join(s.dir, "mail.log")
    s.start_with_conf(log_conf(s, "text", path))
    with s:
        master = s.proc.pid
        wait_for(lambda: os.path.exists(path) and "starting Postern" in open(path).read(),
                 10, "the start line")
        os.rename(path, path + ".1")
        os.kill(master, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(path), 10, "a new log file")
        s.send("sender@example.test", ["alice@example.test"], make_message(1))
        s.wait_delivered("alice", 1)
        wait_for(lambda: "status=sent" in open(path).read(), 10, "delivery in the new file")
        text = open(path).read()
        assert "log file reopened" in text and "connect from [127.0.0.1]" in text, text
        assert "status=sent" not in open(path + ".1").read()
        # logrotate's other habit: SIGHUP (a reload) reopens too
        os.rename(path, path + ".2")
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: os.path.exists(path) and "reload: every process ready"
                 in open(path).read(), 30, "the reload in the new file")
        s.send("sender@example.test", ["alice@example.test"], make_message(2))
        s.wait_delivered("alice", 2)
        wait_for(lambda: "status=sent" in open(path).read(), 10, "delivery after SIGHUP")
        assert open(path + ".2").read().count("status=sent") == 1     # message 1 only


def test_start_without_syslog_says_where_the_logs_go():
    s = Suite(start=False)
    try:
        r = s.postern("start", timeout=90)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        if os.path.exists("/dev/log"):
            assert "logging to syslog" in out, out
            return
        path = os.path.join(s.spool, "log", "postern.log")
        assert f"logging to {path} (no syslog" in out, out
        s.send("sender@example.test", ["alice@example.test"], make_message(1))
        s.wait_delivered("alice", 1)
        wait_for(lambda: "status=sent" in open(path).read(), 10, "the delivery line")
        text = open(path).read()
        assert "starting Postern" in text and "connect from [127.0.0.1]" in text, text
        r = s.postern("stop", timeout=90)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "stopping by root (uid 0)" in open(path).read(), 10, "stop line")
    finally:
        s.postern("stop", timeout=90)
        s.__exit__(None, None, None)


def test_check_names_a_log_file_it_cannot_use():
    s = Suite(start=False)
    base = s.conf_text
    try:
        s.write_conf(log_conf(s, "text", "/nonexistent-dir/postern.log"))
        r = s.postern("check")
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1 and "log.file" in out and "/nonexistent-dir" in out, out
        link = os.path.join(s.dir, "link.log")
        os.symlink("/etc/passwd", link)
        s.conf_text = base
        s.write_conf(log_conf(s, "text", link))
        r = s.postern("check")
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1 and "not a regular file" in out, out
        r = s.postern("run", timeout=30)              # master refuses it too
        assert r.returncode != 0 and "refusing" in (r.stdout + r.stderr).decode(), r
    finally:
        s.__exit__(None, None, None)
