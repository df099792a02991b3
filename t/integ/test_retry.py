"""Retries of outbound mail (qmgr's delivery.retry schedule and `postern
queue flush`): a relayhost that is down defers the message, and `queue
list` shows it in deferred/ with the reason; once the relayhost is up, the
message waits for its retry time unless `postern queue flush` is run, which
delivers it at once; without a flush it is delivered when the retry time
(here 3 s) comes, not before."""
import json
import re
import time

from peerutil import sink_on
from suite import Suite, free_port, make_message, wait_for


def queue(s):
    r = s.postern("queue", "list", "--json", check=True)
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def deferred_with_reason(s):
    for m in queue(s):
        for r in m.get("recipients", []):
            if r["status"] == "deferred" and m.get("queue") == "deferred":
                return m, r
    return None


def suite_with_retry(port, retry):
    s = Suite(start=False)
    text = s.conf_text.replace("retry = [2s, 2s, 5s];", f"retry = [{retry}];")
    assert text != s.conf_text
    return s.start_with_conf(text + f'delivery {{ relayhost = "[127.0.0.1]:{port}"; }}\n')


def wait_deferred(s):
    """Send one message and wait until queue list shows it deferred."""
    s.send("sender@example.test", ["far@remote.test"], make_message(1))
    return wait_for(lambda: deferred_with_reason(s), 30, "the message in deferred/")


def test_down_destination_defers_then_flush_delivers():
    port = free_port()
    # the retry time is far away: only the flush can deliver in time
    with suite_with_retry(port, "1h") as s:
        m, r = wait_deferred(s)
        assert r["address"] == "far@remote.test" and r["dsn"] == "4.4.1", r
        assert re.search(rf"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}: "
                         r"Connection refused", r["reason"]), r
        assert r["attempts"] == 1, r
        with sink_on("127.0.0.1", port) as sink:
            time.sleep(2)
            assert not sink.got, "delivered before its retry time without a flush"
            out = s.postern("queue", "flush", check=True)
            assert b"flush requested" in out.stdout, out.stdout
            wait_for(lambda: sink.got, 20, "delivery after the flush")
            assert [g[1] for g in sink.got] == [["far@remote.test"]], sink.got
            s.wait_queue_empty()
            assert re.search(r"to=<far@remote\.test>, .*status=sent", s.log())


def test_retry_schedule_without_flush():
    port = free_port()
    with suite_with_retry(port, "3s") as s:
        wait_deferred(s)
        deferred_at = time.time()
        with sink_on("127.0.0.1", port) as sink:
            wait_for(lambda: sink.got, 30, "delivery at the retry time")
            # first attempt + 3 s: not at once, not much later (the deferral
            # was seen up to ~0.1 s after it happened)
            waited = sink.when[0] - deferred_at
            assert 2.0 <= waited <= 15, f"delivered {waited:.1f}s after the deferral"
            s.wait_queue_empty()
            assert [g[1] for g in sink.got] == [["far@remote.test"]], sink.got
