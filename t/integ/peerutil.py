"""Helpers for the outbound tests: an aiosmtpd next hop that records what
it gets, a test unbound.conf of local-data, and a log-line wait."""
import contextlib
import os
import re
import threading
import time

from aiosmtpd.controller import Controller

from dnszone import write_unbound_conf
from suite import wait_for


class Sink:
    """A next hop (aiosmtpd: offers 8BITMIME, no DSN) answering every
    message with 250 2.0.0 queued as SINK1. got: (mail_from, rcpts,
    rcpt_options) per message, when: its arrival time."""

    def __init__(self):
        self.got = []
        self.when = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos),
                             list(envelope.rcpt_options)))
            self.when.append(time.time())
        return "250 2.0.0 queued as SINK1"


@contextlib.contextmanager
def sink_on(host, port):
    """A Sink listening on host:port for the with block."""
    sink = Sink()
    ctl = Controller(sink, hostname=host, port=port)
    ctl.start()
    try:
        yield sink
    finally:
        ctl.stop()


def unbound_conf(d, zone):
    """An unbound.conf in d answering only from the local-data rows of zone."""
    return write_unbound_conf(os.path.join(d, "unbound.conf"), zone)


def logged(s, pattern, timeout=20):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")
