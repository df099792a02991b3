"""limits.message_size is exact at every size, in DATA and in BDAT (issue 7).

The octets counted are those the SIZE parameter counts (RFC 1870): the
message as transmitted, after dot-unstuffing, with CRLF line ends (2 octets
each); the final ".CRLF" does not count. A message of exactly message_size
such octets is accepted; one octet more is refused with 552 5.3.4 after the
end of the data (DATA) or at the chunk that crosses the limit (BDAT), and
the session goes on.

Before the fix DATA counted LF line ends, so a message of short lines could
pass by one octet per line: 10M + 100 KB of 80-octet lines got 250.
"""
from suite import SmtpClient, Suite, strip_delivery_headers

LINE = b"x" * 78 + b"\r\n"       # 80 octets on the wire


def message(size, tag):
    """A message of exactly `size` SIZE octets (no line starts with a dot)."""
    head = f"Subject: size {tag}\r\nMessage-ID: <{tag}@example.test>\r\n" \
           f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\n".encode()
    n, r = divmod(size - len(head), len(LINE))
    body = LINE * n
    if r == 1:                      # no 1-octet line: shorten one full line
        body = LINE * (n - 1) + b"y" * 79 + b"\r\n"
    elif r:
        body += b"z" * (r - 2) + b"\r\n"
    m = head + body
    assert len(m) == size, (len(m), size)
    return m


def session(s):
    c = SmtpClient.ready(s.port, timeout=120)
    return c, c.exts


def send_data(c, msg):
    c.envelope("a@example.test", ["alice@example.test"])
    return c.data(msg)


def send_bdat(c, msg, chunk=None):
    """BDAT in chunks of `chunk` octets (None: one chunk). The replies of
    every chunk, in order."""
    c.envelope("a@example.test", ["alice@example.test"])
    return c.bdat(msg, chunk)


def check_limit(limit_text, limit):
    with Suite(limits=f"limits {{ message_size = {limit_text}; }}") as s:
        c, exts = session(s)
        assert f"SIZE {limit}" in exts, exts
        over = message(limit + 100 * 1024, f"over{limit}")
        exact = message(limit, f"exact{limit}")
        one_over = message(limit + 1, f"one{limit}")
        # SIZE= announces the same count
        code, lines = c.cmd(f"MAIL FROM:<a@example.test> SIZE={limit + 1}")
        assert code == 552 and "5.3.4" in lines[0], lines
        assert c.cmd(f"MAIL FROM:<a@example.test> SIZE={limit}")[0] == 250
        assert c.cmd("RSET")[0] == 250
        # DATA: over by 100 KB and by one octet -> 552, the session goes on
        code, lines = send_data(c, over)
        assert code == 552 and lines[0].startswith("552 5.3.4"), lines
        assert c.cmd("NOOP")[0] == 250
        code, lines = send_data(c, one_over)
        assert code == 552 and lines[0].startswith("552 5.3.4"), lines
        # BDAT: one chunk, and 1 MB chunks (552 at the chunk crossing the limit)
        replies = send_bdat(c, over)
        assert replies[0][0] == 552 and "5.3.4" in replies[0][1][0], replies
        replies = send_bdat(c, over, 1 << 20)
        codes = [r[0] for r in replies]
        cross = limit // (1 << 20)          # index of the chunk that crosses
        assert codes[:cross] == [250] * cross, codes
        assert codes[cross] == 552 and "5.3.4" in replies[cross][1][0], replies[cross]
        assert all(x == 503 for x in codes[cross + 1:]), codes    # transaction gone
        replies = send_bdat(c, one_over)
        assert replies[0][0] == 552, replies
        assert c.cmd("NOOP")[0] == 250
        assert not s.delivered("alice")
        # exactly at the limit: accepted by DATA and by BDAT, delivered intact
        code, lines = send_data(c, exact)
        assert code == 250, lines
        replies = send_bdat(c, exact, 3 << 20)
        assert [r[0] for r in replies] == [250] * len(replies), replies
        assert c.cmd("QUIT")[0] == 221
        got = s.wait_delivered("alice", 2, timeout=120)
        want = exact.replace(b"\r\n", b"\n")
        for path in got:
            with open(path, "rb") as f:
                assert strip_delivery_headers(f.read()) == want


def test_size_limit_10m_exact():
    check_limit("10M", 10 * 1024 * 1024)


def test_size_limit_50m_exact():
    check_limit("50M", 50 * 1024 * 1024)


def test_header_section_limit_holds_however_the_content_is_cut():
    """A header section over 256 KiB (cleanup's CL_HDR_MAX) is refused with
    552 5.3.4 whether it arrives in many pieces or ends in the piece that
    takes it past the limit: a 300 KiB field in one BDAT chunk (one piece
    to cleanup) was accepted before. 250 KiB passes; the session goes on."""
    def msg(kib):
        return (b"Subject: long header\r\nX-Long: " + b"h" * (kib * 1024) +
                b"\r\n\r\nbody\r\n")
    with Suite() as s:
        c, _ = session(s)
        for kib, ok in ((300, False), (250, True)):
            replies = send_bdat(c, msg(kib))
            code, lines = replies[-1]
            assert (code == 250) == ok, (kib, lines)
            if not ok:
                assert code == 552 and "5.3.4" in lines[0], lines
            code, lines = send_data(c, msg(kib))
            assert (code == 250) == ok, (kib, lines)
        c.cmd("QUIT")
        s.wait_delivered("alice", 2)
