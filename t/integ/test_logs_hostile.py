"""Hostile bytes from clients never break the logs, and AUTH secrets never
reach them (issue 7, item 10).

A client sends HELO/EHLO with control bytes 0x01-0x1f, NUL, 0x80-0xff,
quotes, backslashes and UTF-8, and AUTH PLAIN / LOGIN with such user names
(CR/LF included: they are base64 on the wire), with POSTERN_TRACE on (SMTP
lines and IPC frames traced). Then:
  - format = "json": every log line is UTF-8 and parses with json.loads;
  - format = "text": no byte outside printable ASCII is in the log, the
    hostile bytes appear as \\xNN;
  - either way the password, in clear or base64 (PLAIN's initial response,
    LOGIN's continuation line), is nowhere in the log.
"""
import base64
import json
import os
import re

from suite import Suite
from tlsutil import Raw, mkpasswd, tls_conf

PASSWORD = "S3cret-pw/with+stuff"
GOOD_USER = 'q"b\\\u00e9'                      # quote, backslash, UTF-8
CTRL = bytes(c for c in range(0x01, 0x20) if c not in (0x0a, 0x0d))
HIGH = bytes(range(0x80, 0x100))
HOSTILE_USER = b"u\r\n" + CTRL + HIGH + b'"\\'
EHLO_NAME = 'h"q\\b\\\\x41\u00e9\u20ac'       # accepted: printable + valid UTF-8


# EHLO_NAME as logged: a backslash may be kept or shown as \x5c
HELO_LOGGED = re.compile(r'helo=<h"q(\\|\\x5c)b(\\|\\x5c)(\\|\\x5c)x41\\xc3\\xa9\\xe2\\x82\\xac>')


def b64(b):
    return base64.b64encode(b if isinstance(b, bytes) else b.encode()).decode()


def plain_ir(user, pw=PASSWORD):
    u = user if isinstance(user, bytes) else user.encode()
    return b64(b"\0" + u + b"\0" + pw.encode())


def hostile_suite(fmt):
    """A suite logging in fmt, with AUTH over plain TCP on s.port and
    POSTERN_TRACE=0x3f (every trace category) in every daemon."""
    s = Suite(start=False)
    users = os.path.join(s.dir, "users")
    with open(users, "w") as f:
        f.write(f"{GOOD_USER}:{mkpasswd('sha512crypt', PASSWORD)}\n")
    os.chmod(users, 0o600)
    text = s.conf_text.replace('format = "text";', f'format = "{fmt}";')
    assert f'format = "{fmt}"' in text
    text += tls_conf(s.dir)
    text += f'auth {{ users = "{users}"; plaintext_without_tls = true; }}\n'
    os.environ["POSTERN_TRACE"] = "0x3f"
    try:
        s.start_with_conf(text)
    finally:
        del os.environ["POSTERN_TRACE"]
    return s


def send_raw(r, data):
    r.send(data + b"\r\n")
    return r.reply()


def hostile_traffic(s):
    r = Raw(s.port)
    assert r.reply()[0] == 220
    # refused names: controls, NUL, invalid UTF-8 (still traced)
    assert send_raw(r, b"HELO a" + CTRL + b"b")[0] == 501
    assert send_raw(r, b"EHLO a\x00b")[0] == 500
    assert send_raw(r, b"HELO x" + HIGH + b"y")[0] == 501
    assert send_raw(r, b'HELO "q\\\x7f\xff\xfe')[0] == 501
    # accepted: quotes, backslashes, UTF-8
    code, lines = send_raw(r, ("EHLO " + EHLO_NAME).encode())
    assert code == 250, lines
    assert any("AUTH PLAIN LOGIN" in l for l in lines), lines
    # AUTH PLAIN with a hostile user name (unknown: 535)
    code, lines = r.cmd("AUTH PLAIN " + plain_ir(HOSTILE_USER))
    assert code == 535, lines
    # AUTH LOGIN, user and password as continuation lines
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(b64(HOSTILE_USER))[0] == 334
    code, lines = r.cmd(b64(PASSWORD))
    assert code == 535, lines
    # the right user and password: 235, then a message
    code, lines = r.cmd("AUTH PLAIN " + plain_ir(GOOD_USER))
    assert code == 235, lines
    assert r.cmd("MAIL FROM:<alice@example.test>")[0] == 250
    assert r.cmd("RCPT TO:<bob@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    code, lines = send_raw(r, b"Subject: hi\r\n\r\nbody\r\n.")
    assert code == 250, lines
    assert r.cmd("QUIT")[0] == 221
    r.close()
    # LOGIN with the user as initial response, the password on its own line
    r = Raw(s.port)
    assert r.reply()[0] == 220
    r.ehlo()
    assert r.cmd("AUTH LOGIN " + b64(GOOD_USER))[0] == 334
    code, lines = r.cmd(b64(PASSWORD))
    assert code == 235, lines
    assert r.cmd("QUIT")[0] == 221
    r.close()
    s.wait_delivered("bob", 1)
    s.wait_queue_empty()


def raw_log(s):
    with open(s.log_path, "rb") as f:
        return f.read()


def assert_no_secrets(log):
    secrets = [PASSWORD, b64(PASSWORD), plain_ir(GOOD_USER), plain_ir(HOSTILE_USER)]
    for sec in secrets:
        assert sec.encode() not in log, f"secret {sec!r} is in the log"
    # and no AUTH initial response at all in the SMTP trace
    text = log.decode("ascii", errors="replace")
    assert re.search(r"> AUTH PLAIN <redacted>", text), "AUTH PLAIN not traced (trace off?)"
    assert re.search(r"> AUTH LOGIN <redacted>", text), text[-3000:]


def test_json_log_hostile_bytes_and_no_secrets():
    s = hostile_suite("json")
    with s:
        hostile_traffic(s)
        log = raw_log(s)
    msgs, objs = [], []
    for i, line in enumerate(log.split(b"\n")):
        if not line:
            continue
        try:
            obj = json.loads(line.decode("utf-8"))   # strict: invalid UTF-8 fails
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError(f"log line {i} is not valid JSON ({e}): {line!r}")
        assert isinstance(obj, dict) and "event" in obj, line
        objs.append(obj)
        if "msg" in obj:
            msgs.append(obj["msg"])
        if obj.get("helo") is not None:
            msgs.append(f"helo=<{obj['helo']}>")
    text = "\n".join(msgs)
    # the hostile values are there, escaped, in their own fields
    failed = [o for o in objs if o["event"] == "auth_failed"]
    assert len(failed) == 2 and all(o["client"].startswith("[127.0.0.1]:") for o in failed), failed
    users = "".join(o["user"] for o in failed)
    assert "\\x80\\x81" in users and "\\xff" in text, users    # user: first 64 octets
    assert "\\x01" in users and "\\x0d\\x0a" in users, users
    assert HELO_LOGGED.search(text), text[-3000:]
    assert any(o["event"] == "auth" and o["client"].startswith("[127.0.0.1]:") for o in objs)
    assert_no_secrets(log)


def test_text_log_hostile_bytes_escaped_and_no_secrets():
    s = hostile_suite("text")
    with s:
        hostile_traffic(s)
        log = raw_log(s)
    bad = sorted({b for b in log if (b < 0x20 and b != 0x0a) or b >= 0x7f})
    assert not bad, f"raw bytes {[hex(b) for b in bad]} in the text log"
    text = log.decode("ascii")
    failed = [l for l in text.splitlines() if "authentication failed from" in l]
    assert len(failed) == 2, failed
    for l in failed:
        assert "user=<u\\x0d\\x0a\\x01\\x02" in l, l
        assert "\\x1f\\x80\\x81" in l, l
    assert HELO_LOGGED.search(text), text[-3000:]
    # the refused HELO lines reach the trace only escaped
    assert re.search(r"> HELO x\\x80\\x81\\x82", text), text[-3000:]
    assert_no_secrets(log)


def test_trace_never_shows_auth_secrets():
    """Plain ASCII credentials, every trace category on: PLAIN's initial
    response, LOGIN's user/password lines and the password itself stay out
    of the log; the AUTH command is traced with its mechanism only."""
    s = hostile_suite("text")
    with s:
        r = Raw(s.port)
        assert r.reply()[0] == 220
        r.ehlo()
        code, lines = r.cmd("AUTH PLAIN " + plain_ir("nobody"))
        assert code == 535, lines
        assert r.cmd("AUTH LOGIN " + b64("nobody"))[0] == 334
        assert r.cmd(b64(PASSWORD))[0] == 535
        code, lines = r.cmd("AUTH PLAIN " + plain_ir(GOOD_USER))
        assert code == 235, lines
        assert r.cmd("QUIT")[0] == 221
        r.close()
        log = raw_log(s)
    for sec in (PASSWORD, b64(PASSWORD), plain_ir("nobody"), plain_ir(GOOD_USER)):
        assert sec.encode() not in log, f"secret {sec!r} is in the log"
    text = log.decode("ascii", errors="replace")
    assert "> AUTH PLAIN <redacted>" in text, text[-3000:]
    assert "> AUTH LOGIN <redacted>" in text, text[-3000:]
    assert "user=<nobody>" in text, text[-3000:]
