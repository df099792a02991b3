"""`postern log ID` links ids only from where Postern writes them.

A client controls HELO and MAIL FROM, and both end up in log lines that
also carry its session id and queue ids. Those values must not make
`postern log` follow someone else's session or message, nor crowd out the
client's own links:
  - a sender `session=VICTIM_SID@...` (text and JSON: the "queued" line
    holds it before the real `session=`) does not pull the victim's session
    into the attacker's message;
  - a HELO naming the victim's queue id does not pull the attacker's whole
    session into the victim's message (only the lines that name the
    victim's ids are shown: a line naming an id belongs to it);
  - a HELO with many `session=<16 hex>` tokens does not use up the linked
    ids, and a session of 20 messages shows all 20 (`postern log SID`).
"""
import json
import os
import re

from suite import Suite, SmtpClient, make_message
from test_logs import log_conf

NMSG = 20
TEXT_ID = re.compile(r"\]: (?:(?:warning|error|fatal|panic|debug): )?([0-9A-Za-z]+): ")


def ids_of(line, fmt):
    """The ids a line is about: its session and queue id (Postern's own)."""
    if fmt == "json":
        r = json.loads(line)
        return {r.get("session"), r.get("queue_id")} - {None}
    m = TEXT_ID.search(line)
    return {m.group(1)} if m else set()


def session_of(path, fmt, qid):
    with open(path) as f:
        for line in f:
            if fmt == "json":
                r = json.loads(line)
                if r["event"] == "queued" and r["queue_id"] == qid:
                    return r["session"]
            else:
                m = re.search(rf"\]: {qid}: client=.*, session=([0-9a-f]{{16}})$", line)
                if m:
                    return m.group(1)
    raise AssertionError(f"no queued line for {qid}")


def one_format(fmt):
    s = Suite(start=False)
    path = os.path.join(s.dir, "mail." + fmt)
    s.start_with_conf(log_conf(s, fmt, path))
    with s:
        c = SmtpClient.ready(s.port)
        c.envelope("victim@example.test", ["alice@example.test"])
        code, lines = c.data(make_message(0))
        assert code == 250, lines
        vqid = lines[-1].rsplit(" ", 1)[-1]
        assert c.cmd("QUIT")[0] == 221
        c.close()
        s.wait_queue_empty()
        vsid = session_of(path, fmt, vqid)

        fakes = ",".join(f"session={i:016x}" for i in range(8))
        c = SmtpClient.ready(s.port, helo=f"x.{vqid}.example,{fakes}")
        aqids = []
        for i in range(NMSG):
            c.envelope(f"session={vsid}@example.test", ["alice@example.test"])
            code, lines = c.data(make_message(i + 1))
            assert code == 250, lines
            aqids.append(lines[-1].rsplit(" ", 1)[-1])
        assert c.cmd("QUIT")[0] == 221
        c.close()
        s.wait_delivered("alice", NMSG + 1)
        s.wait_queue_empty()
        asid = session_of(path, fmt, aqids[0])

        # the attacker's message: never the victim's lines
        r = s.postern("log", aqids[0])
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode().splitlines()
        foreign = [l for l in out if ids_of(l, fmt) & {vsid, vqid}]
        assert not foreign, (fmt, foreign)
        assert any(ids_of(l, fmt) == {asid} for l in out), out   # its session is there

        # the victim's message: of the attacker's lines, only those that name
        # the victim's ids (as documented, a line naming an id is shown)
        r = s.postern("log", vqid)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode().splitlines()
        foreign = [l for l in out if ids_of(l, fmt) & ({asid} | set(aqids))
                   and vqid not in l and vsid not in l]
        assert not foreign, (fmt, foreign)

        # the attacker's session: every one of its messages, to the end
        r = s.postern("log", asid)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        if fmt == "json":
            removed = {j.get("queue_id") for j in map(json.loads, out.splitlines())
                       if j["event"] == "removed"}
        else:
            removed = set(re.findall(r"\]: ([0-9A-Z]+): removed$", out, re.M))
        assert removed >= set(aqids), (fmt, sorted(set(aqids) - removed), out)


def test_text_log_values_do_not_link_ids():
    one_format("text")


def test_json_log_values_do_not_link_ids():
    one_format("json")
