"""Success reports for relayed mail (RFC 3461 5.2.2): a recipient with
NOTIFY=SUCCESS handed to a next hop that offers DSN keeps its NOTIFY there
and the next hop reports (we send nothing); handed to a next hop without
DSN, we report it ourselves with Action: relayed. Reports are parsed with
Python's email module."""
import email
import email.policy
import re
import time

from peerutil import sink_on
from suite import Suite, free_port, make_message, wait_for


def parse(path):
    with open(path, "rb") as f:
        m = email.message_from_bytes(f.read(), policy=email.policy.compat32)
    st = [p for p in m.get_payload() if p.get_content_type() == "message/delivery-status"]
    assert len(st) == 1
    blocks = st[0].get_payload()
    return m, blocks[0], blocks[1:]


def send(s, rcpts, i, rcpt_options=("NOTIFY=SUCCESS",)):
    with s.smtp() as c:
        c.ehlo("client.example.test")
        c.sendmail("alice@example.test", rcpts, make_message(i), rcpt_options=list(rcpt_options))


def test_next_hop_without_dsn_gets_relayed_report():
    port = free_port()
    with sink_on("127.0.0.1", port) as sink:
        with Suite(extra_conf=f'delivery {{ relayhost = "[127.0.0.1]:{port}"; }}\n') as s:
            send(s, ["far@remote.test"], 1)
            wait_for(lambda: sink.got, 20, "the relayed message")
            assert sink.got[0][1] == ["far@remote.test"]
            (path,) = s.wait_delivered("alice", 1)
            m, per_msg, rcpts = parse(path)
            assert m.get_content_type() == "multipart/report"
            assert m.get_param("report-type") == "delivery-status"
            assert m["Subject"] == "Successful Mail Delivery Report"
            assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
            assert len(rcpts) == 1
            r = rcpts[0]
            assert r["Final-Recipient"] == "rfc822; far@remote.test"
            assert r["Action"] == "relayed", r["Action"]
            assert r["Status"] == "2.0.0"
            text = m.get_payload()[0].get_payload()
            assert "relayed" in text and "queued as SINK1" in text, text
            # a recipient without NOTIFY=SUCCESS gets no report
            send(s, ["quiet@remote.test"], 2, rcpt_options=())
            wait_for(lambda: len(sink.got) == 2, 20, "the second message")
            s.wait_queue_empty()
            time.sleep(1)
            assert len(s.delivered("alice")) == 1


def test_next_hop_with_dsn_reports_itself():
    """near relays to far (a Postern: offers DSN), far delivers locally and
    sends the success report, which comes back through near. alice gets
    exactly one report, far's."""
    near_port, far_port = free_port(), free_port()
    with Suite(port=far_port, local_domains='["localhost", "remote.test"]',
               extra_conf=f'delivery {{ relayhost = "[127.0.0.1]:{near_port}"; }}\n') as far:
        with Suite(port=near_port,
                   extra_conf=f'delivery {{ relayhost = "[127.0.0.1]:{far_port}"; }}\n') as near:
            send(near, ["carol@remote.test"], 3)
            far.wait_delivered("carol", 1)
            (path,) = near.wait_delivered("alice", 1, timeout=40)
            m, per_msg, rcpts = parse(path)
            far_id = re.search(r"(\S+): to=<carol@remote\.test>, relay=local", far.log()).group(1)
            assert per_msg["X-Postern-Queue-ID"] == far_id, (per_msg["X-Postern-Queue-ID"], far_id)
            assert rcpts[0]["Action"] == "delivered"
            assert rcpts[0]["Final-Recipient"] == "rfc822; carol@remote.test"
            near.wait_queue_empty()
            far.wait_queue_empty()
            time.sleep(1)
            assert len(near.delivered("alice")) == 1
            assert "sender delivery notification" not in near.log()
            assert "sender delivery notification" in far.log()
