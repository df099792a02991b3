"""Long lines (issue 7): text lines of any length are accepted up to
limits.message_size and delivered byte-for-byte (in the body and in the
header section), by DATA and by BDAT; limits.line_length (0 = no limit, the
default) turns on RFC-strict refusal: one 500 5.5.2 after the end of the
data, and the session goes on.
"""
from suite import SmtpClient, Suite, strip_delivery_headers


def pattern(n, seed):
    """n octets of printable text that is not all one byte (so a shifted or
    truncated copy shows), never starting with a dot."""
    alpha = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
    out = bytes(alpha[(i * 7 + seed) % len(alpha)] for i in range(min(n, 4096)))
    return (out * (n // len(out) + 1))[:n]


def long_message(tag):
    """Headers with a 1500-octet and a 200,000-octet line (one unfolded
    Subject, one X- field), a body with lines of 1500 and 200,000 octets,
    one of them starting with a dot (stuffed on the wire)."""
    h1500 = b"Subject: " + pattern(1500 - 9, 1)
    h200k = b"X-Long: " + pattern(200000 - 8, 2)
    body = [b"short line", pattern(1500, 3), b"." + pattern(199999, 4), pattern(200000, 5),
            b"last"]
    head = [b"From: a@example.test", b"To: alice@example.test", h1500, h200k,
            f"Message-ID: <{tag}@example.test>".encode(),
            b"Date: Sun, 22 Nov 2026 10:00:00 +0000"]
    assert len(h1500) == 1500 and len(h200k) == 200000
    assert len(body[1]) == 1500 and len(body[2]) == 200000 and len(body[3]) == 200000
    msg = b"\r\n".join(head) + b"\r\n\r\n" + b"\r\n".join(body) + b"\r\n"
    return msg


def stuff(msg):
    return msg.replace(b"\r\n.", b"\r\n..")


def session(s):
    return SmtpClient.ready(s.port, timeout=60)


def data_txn(c, msg):
    c.envelope("a@example.test", ["alice@example.test"])
    return c.data(stuff(msg))


def bdat_txn(c, msg, chunk=65536 + 17):
    c.envelope("a@example.test", ["alice@example.test"])
    return c.bdat(msg, chunk)


def test_long_lines_delivered_intact():
    with Suite() as s:
        c = session(s)
        m1, m2 = long_message("ll-data"), long_message("ll-bdat")
        code, lines = data_txn(c, m1)
        assert code == 250, lines
        replies = bdat_txn(c, m2)
        assert [r[0] for r in replies] == [250] * len(replies), replies
        assert c.cmd("QUIT")[0] == 221
        got = s.wait_delivered("alice", 2)
        want = {m1.replace(b"\r\n", b"\n"), m2.replace(b"\r\n", b"\n")}
        for path in got:
            with open(path, "rb") as f:
                content = strip_delivery_headers(f.read())
            assert content in want, (path, len(content))
            want.discard(content)
        assert not want


def test_line_length_limit_refuses_after_the_dot():
    with Suite(limits="limits { line_length = 998; }") as s:
        c = session(s)
        ok = b"Subject: at the limit\r\n\r\n" + pattern(998, 6) + b"\r\n"
        too_long = b"Subject: over\r\n\r\n" + pattern(1500, 7) + b"\r\n" + pattern(200000, 8) + b"\r\n"
        long_header = b"Subject: " + pattern(1000, 9) + b"\r\n\r\nbody\r\n"
        for m in (too_long, long_header):
            code, lines = data_txn(c, m)
            assert code == 500 and lines == ["500 5.5.2 Line too long"], lines   # one reply
            assert c.cmd("NOOP")[0] == 250                      # the session goes on
        replies = bdat_txn(c, too_long)
        assert [r[0] for r in replies[:-1]] == [250] * (len(replies) - 1), replies
        assert replies[-1] == (500, ["500 5.5.2 Line too long"]), replies[-1]
        # the next transactions work; a line of exactly 998 octets is fine
        code, lines = data_txn(c, ok)
        assert code == 250, lines
        replies = bdat_txn(c, ok)
        assert replies[-1][0] == 250, replies
        assert c.cmd("QUIT")[0] == 221
        got = s.wait_delivered("alice", 2)
        for path in got:
            with open(path, "rb") as f:
                assert strip_delivery_headers(f.read()).endswith(
                    b"\n\n" + pattern(998, 6) + b"\n")
