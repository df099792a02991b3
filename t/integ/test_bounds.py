"""Every smtpd session's memory is bounded, whatever the client does
(issue 7; HACKING.md "Per-session memory").

A client that pipelines commands and never reads the replies: smtpd stops
reading and parsing once a session's unsent replies pass SMTPD_OUT_HIGH
(tens of KB), so the client's writes block in the kernel instead of piling
up replies in smtpd; and a session that only says NOOP/HELP/VRFY/RSET ends
with 421 4.7.0 after limits.junk_commands of them (default 100).
"""
import os
import select
import socket
import subprocess
import time

from suite import ROOT, SmtpClient, Suite

# ASan's shadow memory and quarantine of freed blocks (256 MB) inflate RSS:
# the bounds are looser there but still far below what unbounded buffering
# of the floods reaches (2.5 GB before the fix)
SAN = b"libasan" in subprocess.run(["ldd", os.path.join(ROOT, "libexec", "smtpd")],
                                   capture_output=True).stdout
SLACK = 8 if SAN else 1
RSS_LIMIT_KB = 64 * 1024 * SLACK
HELP = b"HELP\r\n"


def smtpd_rss_kb(s):
    """The largest VmRSS among the smtpd processes, in kB."""
    best = 0
    for pid in s.child_pids("smtpd"):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best


def connect(s):
    c = SmtpClient(s.port, timeout=30)
    # small client buffers: the writes stall soon once smtpd stops reading
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    assert c.reply()[0] == 220
    return c


def flood_unread(s, sock, total, stall_secs=2.0):
    """Send up to `total` octets of HELP lines without reading a byte, until
    the writes stall for stall_secs (or the peer goes away). Checks smtpd's
    RSS all along. Returns (octets sent, largest RSS seen in kB)."""
    chunk = HELP * (256 * 1024 // len(HELP))
    sent, peak = 0, smtpd_rss_kb(s)
    sock.setblocking(False)
    last_progress = time.time()
    try:
        while sent < total:
            _, w, _ = select.select([], [sock], [], 0.2)
            peak = max(peak, smtpd_rss_kb(s))
            assert peak < RSS_LIMIT_KB, f"smtpd RSS {peak} kB after {sent} octets of unread HELP"
            if not w:
                if time.time() - last_progress > stall_secs:
                    break               # blocked: smtpd stopped reading
                continue
            off = sent % len(chunk)
            try:
                n = sock.send(chunk[off:off + min(len(chunk) - off, total - sent)])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break                   # smtpd hung up (junk limit)
            sent += n
            last_progress = time.time()
    finally:
        sock.setblocking(True)
    return sent, max(peak, smtpd_rss_kb(s))


def read_all(sock, timeout=30):
    """Everything until EOF or a reset."""
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        try:
            b = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not b:
            break
        data += b
    return bytes(data)


def test_unread_help_flood_ends_with_junk_limit():
    """200 MB of HELP, never read: RSS stays under 64 MB, the session ends
    with 421 4.7.0 after limits.junk_commands (default 100) HELPs."""
    with Suite() as s:
        base = smtpd_rss_kb(s)
        c = connect(s)
        sent, peak = flood_unread(s, c.s, 200 * 1024 * 1024)
        print(f"  sent {sent} octets of HELP; smtpd RSS {base} kB -> peak {peak} kB")
        assert peak < RSS_LIMIT_KB, peak
        data = read_all(c.s)
        lines = data.split(b"\r\n")
        assert lines[-1] == b"", data[-200:]
        lines = lines[:-1]
        assert len(lines) == 101, (len(lines), lines[:2], lines[-3:])
        assert all(l.startswith(b"214 2.0.0 ") for l in lines[:100]), lines[:3]
        assert lines[100].startswith(b"421 4.7.0 "), lines[100]
        c.close()
        assert "too many junk commands from [127.0.0.1]" in s.log()
        # a session that moves mail is not junk: 150 NOOPs around 2 messages
        c = connect(s)
        c.ehlo()
        for i in range(3):
            for _ in range(60):
                assert c.cmd("NOOP")[0] == 250
            if i < 2:
                assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
                assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
                assert c.cmd("DATA")[0] == 354
                c.send(b"Subject: j\r\n\r\nbody\r\n.\r\n")
                assert c.reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
        s.wait_delivered("alice", 2)


def test_unread_replies_pause_reading():
    """No junk limit: HELP without reading stalls the client's writes (smtpd
    stops reading above its high-water mark) with RSS bounded; once the
    client reads, smtpd goes on and answers every command in order."""
    with Suite(limits="limits { junk_commands = 0; }") as s:
        base = smtpd_rss_kb(s)
        c = connect(s)
        total = len(HELP) * (8 * 1024 * 1024 // len(HELP))   # whole commands
        sent, peak = flood_unread(s, c.s, total)
        print(f"  stalled after {sent} of {total} octets; smtpd RSS {base} kB -> {peak} kB")
        assert sent < total, "smtpd kept reading while its replies were not read"
        assert peak < RSS_LIMIT_KB and peak - base < 16 * 1024 * SLACK, (base, peak)
        # read while finishing the command cut in the middle, then QUIT:
        # every HELP answered (the rest of `total` is not needed to prove it)
        ncmd = -(-sent // len(HELP))
        total = ncmd * len(HELP)
        c.s.setblocking(False)
        chunk = HELP * (256 * 1024 // len(HELP))
        got, nl, quit_sent = bytearray(), 0, False
        deadline = time.time() + 120
        while time.time() < deadline:
            want_w = [c.s] if not quit_sent else []
            r, w, _ = select.select([c.s], want_w, [], 1.0)
            if w:
                if sent < total:
                    off = sent % len(chunk)
                    try:
                        sent += c.s.send(chunk[off:off + min(len(chunk) - off, total - sent)])
                    except BlockingIOError:
                        pass
                else:
                    c.s.sendall(b"QUIT\r\n")
                    quit_sent = True
            if r:
                b = c.s.recv(1 << 20)
                if not b:
                    break
                nl += b.count(b"\n")
                got += b[-200:]
                del got[:-400]
        c.s.setblocking(True)
        assert nl == ncmd + 1, (nl, ncmd)
        assert bytes(got).endswith(b"221 2.0.0 Bye\r\n"), bytes(got)[-100:]
        assert smtpd_rss_kb(s) < RSS_LIMIT_KB
        c.close()


def test_many_unread_sessions():
    """20 sessions flooding HELP at once, none reading: the RSS growth stays
    within the per-session bound stated in HACKING.md (well under 1 MB for
    a session outside a transaction)."""
    with Suite(limits="limits { junk_commands = 0; }") as s:
        base = smtpd_rss_kb(s)
        conns = [connect(s) for _ in range(20)]
        for c in conns:
            flood_unread(s, c.s, 4 * 1024 * 1024, stall_secs=0.5)
        peak = smtpd_rss_kb(s)
        print(f"  20 stalled sessions: smtpd RSS {base} kB -> {peak} kB "
              f"({(peak - base) / 20:.0f} kB per session)")
        assert (peak - base) / 20 < 1024 * SLACK, (base, peak)
        for c in conns:
            c.close()


def test_unread_replies_pause_reading_over_tls():
    """The same back-pressure over STARTTLS: the TLS bufferevent's output is
    what is checked, the session pauses, then answers everything."""
    import ssl
    from tlsutil import Raw, tls_suite
    with tls_suite(limits="limits { junk_commands = 0; }") as s:
        base = smtpd_rss_kb(s)
        c = Raw(s.port, timeout=30)
        assert c.reply()[0] == 220
        c.ehlo()
        tls = c.starttls()
        tls.settimeout(1.0)
        chunk = HELP * (64 * 1024 // len(HELP))
        sent, stalls, peak = 0, 0, base
        while sent < 64 * 1024 * 1024 and stalls < 3:
            try:
                off = sent % len(chunk)
                sent += tls.send(chunk[off:])
                stalls = 0
            except (socket.timeout, ssl.SSLWantWriteError):
                stalls += 1
            peak = max(peak, smtpd_rss_kb(s))
            assert peak < RSS_LIMIT_KB, peak
        print(f"  TLS: stalled after {sent} octets; smtpd RSS {base} kB -> {peak} kB")
        assert stalls >= 3 and peak - base < 16 * 1024 * SLACK, (sent, base, peak)
        # read everything: smtpd resumes and answers every whole HELP sent
        want = sent // len(HELP)
        nl, tail = 0, b""
        while nl < want:
            b = tls.recv(1 << 16)
            assert b, "closed"
            nl += b.count(b"\n")
            tail = (tail + b)[-200:]
        assert nl == want, (nl, want)
        assert tail.endswith(b"VRFY\r\n"), tail
        tls.settimeout(30)
        rest = HELP[sent % len(HELP):] if sent % len(HELP) else b""
        tls.sendall(rest + b"QUIT\r\n")
        data = b""
        while not data.endswith(b"221 2.0.0 Bye\r\n"):
            b = tls.recv(4096)
            assert b, data[-200:]
            data += b
