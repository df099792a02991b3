"""The one SMTP reply reader of the bench clients (idle.py, latency.py)."""


def read_reply(s):
    """Read from socket s until a whole (possibly multi-line) reply has
    come; its code."""
    buf = b""
    while True:
        d = s.recv(4096)
        if not d:
            raise EOFError("connection closed")
        buf += d
        if buf.endswith(b"\r\n"):
            last = buf[:-2].rsplit(b"\r\n", 1)[-1]
            if len(last) >= 4 and last[3:4] == b" ":
                return int(last[:3])
