#!/usr/bin/python3
"""latency.py HOST SESSIONS PORT... - per-command SMTP latency at concurrency 1.

For each port, SESSIONS sessions one after the other; the ports take turns in
blocks of 50 sessions so that drift over the run hits all of them alike.
Each session: connect, banner, EHLO, MAIL FROM:<a@bench.test>,
RCPT TO:<b@bench.test>, QUIT. Timed (perf_counter_ns): banner = from
connect() until the 220 reply is complete; every command = from sending the
line until its reply is complete. Python's own per-command cost is in every
figure alike, so the difference between two ports is the servers'.
Prints per port: "PORT banner=US ehlo=US mail=US rcpt=US failed=N" (medians, µs).
"""
import socket
import statistics
import sys
import time

from smtpreply import read_reply

STAGES = ("banner", "ehlo", "mail", "rcpt")


def session(host, port, out):
    pc = time.perf_counter_ns
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    try:
        t0 = pc()
        s.connect((host, port))
        if read_reply(s) != 220:
            raise OSError("banner")
        t = [pc() - t0]
        for line, want in ((b"EHLO lat.bench.test\r\n", 250), (b"MAIL FROM:<a@bench.test>\r\n", 250),
                           (b"RCPT TO:<b@bench.test>\r\n", 250)):
            t0 = pc()
            s.sendall(line)
            code = read_reply(s)
            t.append(pc() - t0)
            if code != want:
                raise OSError("%s -> %d" % (line.split()[0].decode(), code))
        s.sendall(b"QUIT\r\n")
        read_reply(s)
        for k, v in zip(STAGES, t):
            out[k].append(v)
        return None
    except (OSError, EOFError) as e:
        return str(e) or type(e).__name__
    finally:
        s.close()


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host, n, ports = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
    res = {p: {k: [] for k in STAGES} for p in ports}
    failed = {p: 0 for p in ports}
    why = {}
    done = 0
    while done < n:
        block = min(50, n - done)
        for p in ports:
            for _ in range(block):
                e = session(host, p, res[p])
                if e:
                    failed[p] += 1
                    why[p] = e
        done += block
    for p in ports:
        med = " ".join("%s=%s" % (k, "%.1f" % (statistics.median(res[p][k]) / 1000) if res[p][k] else "n/a")
                       for k in STAGES)
        print("%d %s failed=%d %s" % (p, med, failed[p], why.get(p, "")), flush=True)


if __name__ == "__main__":
    main()
