"""Outbound scheduling (qmgr/qmgr_deliver.c, qmgr_dest.c, smtp/smtp_cache.c):
several messages to one destination share an SMTP connection (no RSET after
a completed transaction, RSET after a failed one), delivery.concurrency
bounds the simultaneous deliveries to one destination, delivery.rate spaces
them, a connection the peer ended (421, closed) is never used again while
the mail is still delivered or deferred, and limits.active_queue bounds what
qmgr holds in memory (the rest waits in incoming/ on disk).

The peer is a small threaded SMTP server written here, so that it can count
connections, concurrent sessions and transactions, and misbehave on cue."""
import os
import re
import socket
import threading
import time

from suite import Suite, free_port, make_message, wait_for

SENDER = "sender@example.test"
PROCS = 'processes { smtpd = 1; delivery = 4; }'


class Sink:
    """An SMTP server on 127.0.0.1 that records what the smtp agent does.

    delay: seconds before the reply to the final "."
    mail_421_on: on every connection, the MAIL command of this transaction
        (1-based) is answered 421 and the connection closed
    close_on_mail: the same, but closed without a word (the peer timed out)
    close_after_data: close the connection right after each 250 to "."
    """

    def __init__(self, delay=0.0, mail_421_on=0, close_on_mail=0, close_after_data=False,
                 host="127.0.0.1"):
        self.delay, self.mail_421_on = delay, mail_421_on
        self.close_on_mail, self.close_after_data = close_on_mail, close_after_data
        self.lock = threading.Lock()
        self.connections = 0
        self.open = self.max_open = 0
        self.txn = self.max_txn = 0          # transactions between MAIL and the reply to "."
        self.messages = []                   # (connection number, rcpts, time)
        self.rsets = 0
        self.txn_by_ip, self.max_by_ip = {}, {}   # per local address (destination)
        self.after_421 = []                  # commands a client sent after our 421
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, self.port))
        self.sock.listen(64)
        self.stopping = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self):
        self.stopping = True
        self.sock.close()

    def accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.open += 1
                self.max_open = max(self.max_open, self.open)
            threading.Thread(target=self.session, args=(c, n), daemon=True).start()

    def session(self, c, n):
        f = c.makefile("rb")
        try:
            self.dialogue(c, f, n)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            f.close()
            c.close()

    def dialogue(self, c, f, n):
        c.sendall(b"220 sink.test ESMTP\r\n")
        ntxn, rcpts, in_txn = 0, [], False
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                c.sendall(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif cmd.startswith(b"MAIL"):
                ntxn += 1
                if ntxn == self.close_on_mail:
                    return
                if ntxn == self.mail_421_on:
                    c.sendall(b"421 4.7.0 sink.test too many messages, closing\r\n")
                    c.settimeout(1)
                    try:
                        rest = f.read1(4096) if hasattr(f, "read1") else b""
                    except OSError:
                        rest = b""
                    with self.lock:
                        # a pipelined RCPT/DATA batch may follow MAIL, and QUIT
                        # is polite: anything else was sent after the 421
                        extra = [l for l in rest.split(b"\r\n") if l and
                                 not l.upper().startswith((b"RCPT", b"DATA", b"QUIT"))]
                        self.after_421 += extra
                    return
                rcpts, in_txn = [], True
                with self.lock:
                    self.txn += 1
                    self.max_txn = max(self.max_txn, self.txn)
                    ip = c.getsockname()[0]
                    self.txn_by_ip[ip] = self.txn_by_ip.get(ip, 0) + 1
                    self.max_by_ip[ip] = max(self.max_by_ip.get(ip, 0), self.txn_by_ip[ip])
                c.sendall(b"250 2.1.0 ok\r\n")
            elif cmd.startswith(b"RCPT"):
                addr = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                if addr.startswith("reject@"):
                    c.sendall(b"550 5.1.1 no such user\r\n")
                else:
                    rcpts.append(addr)
                    c.sendall(b"250 2.1.5 ok\r\n")
            elif cmd == b"DATA":
                if not rcpts:
                    c.sendall(b"554 5.5.1 no valid recipients\r\n")
                    self.end_txn(in_txn, c)
                    in_txn = False
                    continue
                c.sendall(b"354 go ahead\r\n")
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                if not l:
                    return
                if self.delay:
                    time.sleep(self.delay)
                with self.lock:
                    self.messages.append((n, list(rcpts), time.monotonic()))
                self.end_txn(in_txn, c)
                in_txn = False
                c.sendall(b"250 2.0.0 queued\r\n")
                if self.close_after_data:
                    return
            elif cmd == b"RSET":
                with self.lock:
                    self.rsets += 1
                self.end_txn(in_txn, c)
                in_txn = False
                c.sendall(b"250 2.0.0 ok\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                c.sendall(b"250 ok\r\n")

    def end_txn(self, in_txn, c):
        if in_txn:
            with self.lock:
                self.txn -= 1
                self.txn_by_ip[c.getsockname()[0]] -= 1

    def delivered(self):
        with self.lock:
            return [r for _, rs, _ in self.messages for r in rs]


def conf(sink, extra=""):
    return f'delivery {{ relayhost = "[127.0.0.1]:{sink.port}"; {extra} }}\n'


def send_many(s, rcpts):
    """One SMTP session, one message per recipient (as a bulk sender would)."""
    with s.smtp() as c:
        c.ehlo("client.example.test")
        for i, r in enumerate(rcpts):
            c.sendmail(SENDER, [r], make_message(i))


def logged(s, pattern, timeout=20):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def test_thirty_messages_reuse_connections_within_concurrency():
    sink = Sink(delay=0.15)
    try:
        with Suite(extra_conf=conf(sink, "concurrency = 2;"), processes=PROCS) as s:
            rcpts = [f"u{i}@remote.test" for i in range(30)]
            send_many(s, rcpts)
            wait_for(lambda: len(sink.delivered()) == 30, 60,
                     f"30 messages at the sink (have {len(sink.delivered())})")
            s.wait_queue_empty()
            assert sorted(sink.delivered()) == sorted(rcpts)
            # reuse: two agents at most, each on one connection (a few more
            # would be tolerable; one per message would not)
            assert sink.connections <= 6, f"{sink.connections} connections for 30 messages"
            # concurrency: four agents, but never more than 2 at once
            assert sink.max_txn <= 2 and sink.max_open <= 2, (sink.max_txn, sink.max_open)
            assert sink.max_txn == 2, "the limit was never reached: test proves nothing"
            assert sink.rsets == 0, "RSET after a completed transaction"
            assert "status=deferred" not in s.log()
    finally:
        sink.close()


def test_concurrency_is_per_destination():
    # no relayhost: two destinations (address literals, both at the sink),
    # one delivery at a time each, both at once
    sink = Sink(delay=0.2, host="0.0.0.0")
    try:
        with Suite(extra_conf=f"delivery {{ smtp_port = {sink.port}; concurrency = 1; }}\n",
                   processes=PROCS) as s:
            rcpts = [f"u{i}@[127.0.0.{1 + i % 2}]" for i in range(12)]
            send_many(s, rcpts)
            wait_for(lambda: len(sink.delivered()) == 12, 60,
                     f"12 messages at the sink (have {len(sink.delivered())})")
            s.wait_queue_empty()
            assert sink.max_by_ip == {"127.0.0.1": 1, "127.0.0.2": 1}, sink.max_by_ip
            assert sink.max_txn == 2, "the two destinations never ran at the same time"
            assert sink.connections <= 4, sink.connections
    finally:
        sink.close()


def test_failed_transaction_is_followed_by_rset_on_the_same_connection():
    sink = Sink()
    try:
        with Suite(extra_conf=conf(sink)) as s:
            s.send(SENDER, ["reject@remote.test"], make_message(1))
            logged(s, r"to=<reject@remote\.test>.*status=bounced")
            s.send(SENDER, ["ok@remote.test"], make_message(2))
            wait_for(lambda: sink.delivered() == ["ok@remote.test"], 20, "the second message")
            assert sink.connections == 1, sink.connections
            assert sink.rsets == 1, sink.rsets
    finally:
        sink.close()


def test_421_connection_is_not_reused_and_the_message_is_deferred_then_delivered():
    # every connection takes one message; the second MAIL gets 421 + close
    sink = Sink(mail_421_on=2)
    try:
        with Suite(extra_conf=conf(sink)) as s:
            s.send(SENDER, ["a@remote.test"], make_message(1))
            wait_for(lambda: sink.delivered() == ["a@remote.test"], 20, "the first message")
            s.send(SENDER, ["b@remote.test"], make_message(2))
            logged(s, r"to=<b@remote\.test>.*dsn=4\.7\.0, status=deferred .*421 4\.7\.0")
            assert sink.connections == 1
            s.postern("queue", "flush", check=True)
            wait_for(lambda: "b@remote.test" in sink.delivered(), 20, "the deferred message")
            s.wait_queue_empty()
            assert sink.connections == 2, "the 421 connection was used again"
            assert sink.after_421 == [], f"commands after 421: {sink.after_421}"
    finally:
        sink.close()


def test_peer_closing_a_kept_connection_costs_nothing():
    # the peer hangs up before answering the second MAIL (its idle timeout
    # raced our reuse), and another that closes after each message
    for kw in ({"close_on_mail": 2}, {"close_after_data": True}):
        sink = Sink(**kw)
        try:
            with Suite(extra_conf=conf(sink)) as s:
                for i, r in enumerate(["a@remote.test", "b@remote.test", "c@remote.test"]):
                    s.send(SENDER, [r], make_message(i))
                    wait_for(lambda: r in sink.delivered(), 20, f"{r} at the sink ({kw})")
                s.wait_queue_empty()
                assert "status=deferred" not in s.log(), kw
                assert sink.connections == 3, (kw, sink.connections)
                assert "closed by the peer" in s.log(), kw
        finally:
            sink.close()


def test_rate_spaces_deliveries_to_one_destination():
    sink = Sink()
    try:
        # one agent: it keeps its connection, so after the first message
        # (which also connects: slow under ASan) a delivery takes a few ms,
        # and the sink sees the gaps qmgr keeps between starting them
        with Suite(extra_conf=conf(sink, "rate = 120;"),            # 1 per 0.5 s
                   processes='processes { smtpd = 1; delivery = 1; }') as s:
            send_many(s, [f"r{i}@remote.test" for i in range(5)])
            wait_for(lambda: len(sink.delivered()) == 5, 30, "5 messages at the sink")
            times = sorted(t for _, _, t in sink.messages)
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert min(gaps[1:]) >= 0.4 and times[-1] - times[0] >= 1.4, gaps
            s.wait_queue_empty()
    finally:
        sink.close()


def test_rate_kept_destination_and_a_bucket_mate_in_one_message():
    """With delivery.rate a destination stays known for its gap after its
    last job. qmgr once freed such a one when the next message also had a
    recipient in its hash bucket ([127.0.0.1] and [127.0.1.79] share one),
    while it still held it: use after free (ASan stops qmgr), two jobs
    merged. Both recipients must go out, each to its own destination."""
    sink = Sink(host="0.0.0.0")
    a, b = "[127.0.0.1]", "[127.0.1.79]"
    try:
        with Suite(extra_conf=f"delivery {{ smtp_port = {sink.port}; rate = 60; }}\n",
                   processes='processes { smtpd = 1; delivery = 2; }') as s:
            s.send(SENDER, [f"first@{a}"], make_message(1))
            wait_for(lambda: len(sink.delivered()) == 1, 20, "the first message")
            s.wait_queue_empty()
            time.sleep(1.5)            # the 1 s gap has passed (the sweep may not have run)
            s.send(SENDER, [f"x@{a}", f"y@{b}"], make_message(2))
            wait_for(lambda: len(sink.delivered()) == 3, 20, "both recipients")
            s.wait_queue_empty()
            assert sorted(sink.delivered()[1:]) == [f"x@{a}", f"y@{b}"], sink.messages
            assert sink.max_by_ip.get("127.0.1.79") == 1, sink.max_by_ip
    finally:
        sink.close()


def test_active_queue_bound_leaves_the_rest_on_disk():
    sink = Sink(delay=0.2)
    try:
        with Suite(extra_conf=conf(sink, "concurrency = 2;"), processes=PROCS,
                   limits="limits { active_queue = 3; }") as s:
            rcpts = [f"q{i}@remote.test" for i in range(15)]
            most_active, most_waiting = [0], [0]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    most_active[0] = max(most_active[0], len(s.queue_files("active")))
                    most_waiting[0] = max(most_waiting[0], len(s.queue_files("incoming")))
                    time.sleep(0.01)
            t = threading.Thread(target=sample, daemon=True)
            t.start()
            send_many(s, rcpts)
            wait_for(lambda: len(sink.delivered()) == 15, 60,
                     f"15 messages at the sink (have {len(sink.delivered())})")
            s.wait_queue_empty()
            stop.set()
            t.join()
            assert sorted(sink.delivered()) == sorted(rcpts)
            assert most_active[0] <= 3, most_active[0]
            assert most_waiting[0] > 0, "nothing ever waited on disk: the bound was not tested"
    finally:
        sink.close()
