#!/usr/bin/python3
"""idle.py HOST PORT N - hold N idle SMTP sessions open.

Each session: connect, read the 220 banner, send EHLO, read the whole 250
reply; then nothing. Prints "ready OK FAILED" once every session is set up
(or has failed), then sleeps until killed (SIGTERM closes everything).
"""
import resource
import signal
import socket
import sys
import time

from smtpreply import read_reply


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    socks, failed, why = [], 0, ""
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect((host, port))
            if read_reply(s) != 220:
                raise OSError("no 220 banner")
            s.sendall(b"EHLO idle%d.bench.test\r\n" % i)
            if read_reply(s) != 250:
                raise OSError("EHLO refused")
            socks.append(s)
        except (OSError, EOFError) as e:
            failed += 1
            why = str(e)
            s.close()
    print("ready %d %d %s" % (len(socks), failed, why), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
