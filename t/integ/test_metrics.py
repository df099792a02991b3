"""Observability: master's metrics endpoint scraped during a run and parsed
with python3-prometheus-client's text parser, its counters compared with what
the test sent (accepted, rejected by reason and by rule, bytes, deliveries,
queue size, restarts); the endpoint's bounds (only GET /metrics); the
loopback-only check; `postern queue shape` against the queue (ages shifted
with --at); the last errors in `postern status`; `postern top --once`;
counts that survive a reload; DNS queries and failures."""
import json
import os
import signal
import smtplib
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from suite import Suite, free_port, make_message, wait_for
from test_rules import rules_dir, write


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        text = r.read().decode()
    samples = {}
    for fam in text_string_to_metric_families(text):   # raises on a malformed exposition
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def wait_metric(port, name, want, timeout=20, at_least=False, **labels):
    """Children report at most once a second (the blocking agents between
    requests): wait for the value (or at least it)."""
    got = []

    def ok():
        got[:] = [value(scrape(port), name, **labels)]
        return got[0] >= want if at_least else got[0] == want
    try:
        wait_for(ok, timeout, f"{name}{labels} == {want}", interval=0.3)
    except AssertionError:
        raise AssertionError(f"{name}{labels}: want {want}, have {got}")


def rules_file(text):
    path = os.path.join(rules_dir(), "main.rules")
    write(path, text)
    return path


RULES = '''
stage mail {
  rule "blocked sender" {
    if mail_from.domain == "blocked.test" { return deny(554, "5.7.1", "sender blocked"); }
  }
}
'''


def test_scrape_counts_match_what_was_sent():
    port = free_port()
    rules = rules_file(RULES)
    # mynetworks excludes the test client: relaying is refused (554 5.7.1 at rcpt)
    with Suite(extra_conf=f'metrics {{ address = "127.0.0.1:{port}"; }}\nrules = "{rules}";',
               mynetworks='["10.9.9.0/24"]', retry="[1h]") as s:
        os.mkdir(os.path.join(s.mail, "carol"), 0o500)   # root's: delivery to carol defers
        base = scrape(port)
        conns0 = value(base, "postern_smtpd_connections_total", listener="smtp")
        msgs = [make_message(i) for i in range(4)]   # Message-ID has the time: made once
        with s.smtp() as c:
            c.ehlo("client.example.test")
            for m in msgs[:3]:
                c.sendmail("a@ok.test", ["bob@example.test"], m)
            c.sendmail("a@ok.test", ["carol@example.test"], msgs[3])
            for rc in ("x@remote.example", "y@remote.example"):
                c.mail("a@ok.test")
                code, _ = c.rcpt(rc)
                assert code == 554, code
                c.rset()
            code, _ = c.mail("spam@blocked.test")
            assert code == 554, code
        s.wait_delivered("bob", 3)
        sent_bytes = sum(len(m) for m in msgs)

        wait_metric(port, "postern_messages_accepted_total", 4, listener="smtp")
        wait_metric(port, "postern_received_bytes_total", sent_bytes, listener="smtp")
        wait_metric(port, "postern_messages_rejected_total", 2, stage="rcpt", reason="5.7.1")
        wait_metric(port, "postern_messages_rejected_total", 1, stage="mail", reason="5.7.1")
        wait_metric(port, "postern_rule_rejections_total", 1, stage="mail",
                    rule="blocked sender")
        wait_metric(port, "postern_delivery_attempts_total", 3, transport="local", status="sent")
        wait_metric(port, "postern_delivery_attempts_total", 1, transport="local",
                    status="deferred")
        wait_metric(port, "postern_queue_messages", 1, queue="deferred")
        m = scrape(port)
        assert value(m, "postern_smtpd_connections_total", listener="smtp") >= conns0 + 1
        assert value(m, "postern_smtpd_sessions_active", listener="smtp") == 0, m
        assert 0 <= value(m, "postern_queue_oldest_age_seconds", queue="deferred") < 120
        assert value(m, "postern_queue_messages", queue="incoming") == 0
        assert value(m, "postern_delivery_delay_seconds_count", transport="local") == 3
        assert value(m, "postern_delivery_delay_seconds_bucket", transport="local",
                     le="+Inf") == 3
        # rules ran at mail for each MAIL command: 4 messages + 2 refused relays + 1 blocked
        assert value(m, "postern_filter_seconds_count", stage="mail") >= 7, m
        assert value(m, "postern_processes", process="qmgr") == 1

        # a killed process: restarted and counted
        pid = s.child_pids("delivery")[0]
        os.kill(pid, signal.SIGKILL)
        wait_metric(port, "postern_process_restarts_total", 1, process="delivery")
        wait_metric(port, "postern_processes", 2, process="delivery")

        # only GET/HEAD of /metrics
        for path, method, want in (("/", "GET", 404), ("/metrics/x", "GET", 404),
                                   ("/metrics", "POST", 405), ("/metrics", "PUT", 405)):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                         data=b"x" if method in ("POST", "PUT") else None)
            try:
                urllib.request.urlopen(req, timeout=10)
                raise AssertionError(f"{method} {path} answered 200")
            except urllib.error.HTTPError as e:
                assert e.code == want, (method, path, e.code)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD")
        assert urllib.request.urlopen(req, timeout=10).status == 200
        # the same text for `postern top`, in run_dir
        assert os.path.exists(os.path.join(s.run_dir, "metrics.prom"))
        # every report master read was well formed
        assert "metrics report" not in s.log() and "metrics line" not in s.log(), s.log()


def test_metrics_address_loopback_only():
    with Suite(start=False) as s:
        conf = s.conf_text + 'metrics { address = "0.0.0.0:9153"; }\n'
        s.write_conf(conf)
        r = s.postern("check")
        err = r.stdout.decode() + r.stderr.decode()
        assert r.returncode == 1 and "not a loopback address" in err, err
        s.write_conf(s.conf_text.replace('"0.0.0.0:9153"; }',
                                         '"0.0.0.0:9153"; allow_remote = true; }'))
        r = s.postern("check")
        assert "metrics" not in r.stdout.decode() + r.stderr.decode(), r


def shape(s, *args):
    r = s.postern("queue", "shape", "--json", *args, check=True)
    return json.loads(r.stdout)


def test_queue_shape_counts_match_the_queue():
    # an unreachable relayhost: every remote message stays deferred
    port = free_port()
    with Suite(delivery='relayhost = "[127.0.0.1]:1";', retry="[1h]",
               extra_conf=f'metrics {{ address = "127.0.0.1:{port}"; }}') as s:
        for i in range(3):
            s.send("a@ok.test", [f"u{i}@a.example"], make_message(i))
        for i in range(2):
            s.send("a@ok.test", [f"v{i}@B.example"], make_message(10 + i))
        # one message, two recipients at a.example and one at c.example
        s.send("a@ok.test", ["p@a.example", "q@a.example", "r@c.example"], make_message(20))

        def deferred():
            r = s.postern("queue", "list", "--json", "--queue", "deferred", check=True)
            rows = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
            return rows if len(rows) == 6 else None
        rows = wait_for(deferred, 30, "6 deferred messages")
        want = {}
        for row in rows:   # what the queue holds: messages per recipient domain
            for d in {r["address"].rsplit("@", 1)[1].lower() for r in row["recipients"]}:
                want[d] = want.get(d, 0) + 1
        assert want == {"a.example": 4, "b.example": 2, "c.example": 1}, want

        # the smtp agent's side: every recipient deferred, connections refused
        wait_metric(port, "postern_delivery_attempts_total", 8, transport="smtp",
                    status="deferred")
        wait_metric(port, "postern_smtp_connections_total", 1, at_least=True, result="failed")
        m = scrape(port)
        assert value(m, "postern_smtp_connections_total", result="ok") == 0, m
        assert value(m, "postern_delivery_attempt_seconds_count", transport="smtp") == 6, m
        assert value(m, "postern_queue_messages", queue="deferred") == 6, m

        now = int(time.time())
        for at, col in ((now, 0), (now + 25 * 60, 3), (now + 120 * 60, 5),
                        (now + 2000 * 60, 9)):
            j = shape(s, "--at", str(at))
            assert j["buckets"] == ["5", "10", "20", "40", "80", "160", "320", "640", "1280",
                                    "1280+"], j
            got = {d["domain"]: d["total"] for d in j["domains"]}
            assert got == want, (got, want)
            assert j["total"]["total"] == 6, j
            for d in j["domains"]:
                assert d["buckets"][col] == d["total"] and sum(d["buckets"]) == d["total"], (at, d)
            assert [d["domain"] for d in j["domains"]] == ["a.example", "b.example", "c.example"]

        # per queue: hold one message, it moves between the queue selections
        s.postern("queue", "hold", rows[0]["id"], check=True)
        assert shape(s, "--queue", "hold")["total"]["total"] == 1
        assert shape(s)["total"]["total"] == 5
        text = s.postern("queue", "shape", check=True).stdout.decode().splitlines()
        assert text[0].split() == ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280",
                                   "1280+"], text
        assert text[1].split()[:3] == ["TOTAL", "5", "5"], text


def test_status_last_errors_and_top_once():
    with Suite() as s:
        # master writes its files once the children are ready
        st = wait_for(lambda: (lambda o: o if "last errors:" in o else None)(
            s.postern("status", check=True).stdout.decode()), 20, "postern status complete")
        assert "last errors: none" in st, st
        # a damaged queue file: qmgr moves it to corrupt/ and logs an error
        bad = "0000000000000000ZZ"
        with open(os.path.join(s.spool, "incoming", bad), "wb") as f:
            f.write(b"this is not a queue file\n")
        os.chown(os.path.join(s.spool, "incoming", bad), s.uid, s.gid)
        s.postern("queue", "flush", check=True)
        wait_for(lambda: os.path.exists(os.path.join(s.spool, "corrupt", bad)), 30,
                 "the damaged file in corrupt/")

        def shown():
            out = s.postern("status", check=True).stdout.decode()
            return out if "corrupt queue file" in out else None
        st = wait_for(shown, 20, "the error in postern status")
        tail = st[st.index("last errors:"):]
        assert " qmgr " in tail and bad in tail, tail

        s.send("a@ok.test", ["bob@example.test"], make_message(1))
        s.wait_delivered("bob", 1)
        time.sleep(1.5)
        r = s.postern("top", "--once", check=True, timeout=30)
        out = r.stdout.decode()
        assert "\033[" not in out, out   # no terminal: no control codes
        assert out.startswith("postern top - "), out
        assert "sessions: 0 open" in out, out
        assert "(accepted 1)" in out and "(delivered 1)" in out, out
        assert "corrupt 1" in out and "deferred 0" in out, out
        assert "top destinations by deferred mail (0 messages deferred)" in out, out
        r = s.postern("top", "-n", "2", check=True, timeout=30)
        assert r.stdout.decode().count("postern top - ") == 2, r.stdout


def test_counts_survive_a_reload():
    """A reload retires every process: what they counted in their last
    second still reaches master (a report at exit, the retired pipes read
    until the processes are gone), and counters do not restart."""
    port = free_port()
    with Suite(extra_conf=f'metrics {{ address = "127.0.0.1:{port}"; }}') as s:
        for i in range(3):
            s.send("a@ok.test", ["bob@example.test"], make_message(i))
            s.postern("reload", check=True, timeout=60)   # right after: not reported yet
        s.wait_delivered("bob", 3)
        wait_metric(port, "postern_messages_accepted_total", 3, listener="smtp")
        wait_metric(port, "postern_delivery_attempts_total", 3, transport="local", status="sent")
        m = scrape(port)
        assert value(m, "postern_process_restarts_total", process="smtpd") == 0, m
        assert value(m, "postern_smtpd_sessions_active", listener="smtp") == 0, m


def test_dns_counters():
    """smtpd's client.ptr lookups (a PTR, then the A of its name) through the
    test unbound.conf: the PTR answers, the A is in a refused zone: a
    temporary failure."""
    port = free_port()
    d = rules_dir()
    ub = os.path.join(d, "unbound.conf")
    write(ub, 'server:\n  module-config: "iterator"\n  local-zone: "." static\n'
              '  local-zone: "127.in-addr.arpa." nodefault\n'
              '  local-data: "1.0.0.127.in-addr.arpa. 300 IN PTR client.example.test."\n'
              '  local-zone: "example.test." refuse\n')
    rules = os.path.join(d, "main.rules")
    write(rules, 'stage mail { rule "ptr" { if client.ptr == "x" { return deny; } } }\n')
    with Suite(extra_conf=f'rules = "{rules}"; dns {{ unbound_config = "{ub}"; timeout = 5s; }}\n'
                          f'metrics {{ address = "127.0.0.1:{port}"; }}') as s:
        with s.smtp() as c:   # (the suite's start-up probes looked up too)
            c.ehlo("client.example.test")
            assert c.mail("a@ok.test")[0] == 250
        wait_metric(port, "postern_dns_queries_total", 1, at_least=True, process="smtpd",
                    type="PTR")
        # the PTR name's A lookup hits the refused zone: a temporary failure
        wait_metric(port, "postern_dns_failures_total", 1, at_least=True, process="smtpd",
                    type="A")
        m = scrape(port)
        assert value(m, "postern_dns_failures_total", process="smtpd", type="PTR") == 0, m


def test_slow_clients_cannot_hold_the_endpoint():
    """Slowloris: 8 connections from 127.0.0.1 (the per-address limit) each
    send a request a byte at a time, well inside the idle timeout. Each
    connection lives at most 20 s whatever it sends, so a scraper on the
    same address gets its answer again once they are cut."""
    import socket
    port = free_port()
    with Suite(extra_conf=f'metrics {{ address = "127.0.0.1:{port}"; }}') as s:
        scrape(port)
        slow = []
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            slow.append(c)
        time.sleep(0.5)
        try:
            scrape(port)
            held = False
        except (urllib.error.URLError, ConnectionError, OSError):
            held = True
        assert held, "8 slow connections did not fill the per-address limit"
        start, ok, cut = time.time(), False, 0
        while time.time() - start < 35 and not ok:
            for c in slow:      # a byte every 2 s: never idle for 10 s
                try:
                    c.sendall(b"X")
                except OSError:
                    pass
            time.sleep(2)
            try:
                scrape(port)
                ok = True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
        for c in slow:
            c.settimeout(1)
            try:
                cut += c.recv(1) == b""
            except OSError:
                cut += 1
            c.close()
        assert ok, "slow clients held the metrics endpoint for 35 s"
        assert cut == 8, cut
        assert "panic" not in s.log(), s.log()
