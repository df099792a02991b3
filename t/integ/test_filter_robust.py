"""No input and no rules file can crash a daemon (issue 7, item 3):
a rule that copies a 72 KB folded Subject into a header leaves filter
running (same pid), the message is accepted with the added field capped at
998 octets and folded, and the next message is accepted too; and while
filter is unavailable, smtpd still applies the default policy to the
stages that have no rules and tempfails only what needs them."""
import os
import signal
import socket
import time

from suite import Suite, SmtpClient, make_message, wait_for

MUT_CAP = 998          # one added header field, name included, folding breaks aside


def rules_suite(text, **kw):
    import tempfile
    d = tempfile.mkdtemp(prefix="postern-rules-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "main.rules")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return Suite(extra_conf=f'rules = "{path}";', **kw)


def header_fields(data):
    """[(name, raw field bytes with its continuation lines)] of a message."""
    head = data.split(b"\n\n", 1)[0]
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\n" + line)
        else:
            fields.append((line.split(b":", 1)[0], line))
    return fields


def big_subject():
    """A folded Subject of about 72 KB: 1000 lines of words."""
    words = " ".join(f"w{i:05d}" for i in range(10))
    return "\r\n ".join(f"part {k} {words}" for k in range(1000))


def data_session(s, sender, rcpt, msg):
    """MAIL, RCPT, DATA with msg: (code of the reply to the end of data, text)."""
    c = s.smtp()
    c.ehlo("client.example.test")
    code, _ = c.mail(sender)
    assert code == 250, code
    code, _ = c.rcpt(rcpt)
    assert code == 250, code
    r = c.data(msg)
    c.quit()
    return r


def test_huge_subject_mutation_keeps_filter():
    with rules_suite('stage data { action "x" { add_header("X-Subj", msg.subject); } }\n') as s:
        pids = s.child_pids("filter")
        assert len(pids) == 1, pids
        subj = big_subject()
        assert len(subj) > 72000
        code, text = data_session(s, "a@example.test", "bob@example.test",
                                  make_message(1, subject=subj))
        assert code == 250, (code, text)
        # the next message as well, served by the same filter
        code, text = data_session(s, "a@example.test", "bob@example.test", make_message(2))
        assert code == 250, (code, text)
        assert s.child_pids("filter") == pids, (pids, s.child_pids("filter"))
        got = s.wait_delivered("bob", 2)
        with open(got[0], "rb") as f:
            m1 = f.read()
        with open(got[1], "rb") as f:
            m2 = f.read()
        if b"part 0 w00000" not in m1:
            m1, m2 = m2, m1
        xs = [raw for name, raw in header_fields(m1) if name == b"X-Subj"]
        assert len(xs) == 1, xs
        x = xs[0]
        lines = x.split(b"\n")
        # at most 998 octets of field, folding line breaks aside
        assert len(b"".join(lines)) <= MUT_CAP, len(b"".join(lines))
        assert len(b"".join(lines)) > MUT_CAP - 20, len(b"".join(lines))
        assert len(lines) > 1, "not folded"
        assert all(len(l) <= 78 for l in lines), [len(l) for l in lines]
        assert all(l[:1] in (b" ", b"\t") for l in lines[1:])
        # folding only inserted line breaks: unfolded, it is the Subject's start
        unfolded = b"".join(lines)
        assert unfolded.startswith(b"X-Subj: part 0 w00000 w00001"), unfolded[:80]
        flat = " ".join(subj.replace("\r\n ", " ").split()).encode()
        v = b" ".join(unfolded[len(b"X-Subj:"):].split())
        assert flat.startswith(v), v[-60:]
        # the original Subject went through untouched
        assert subj.encode().replace(b"\r\n", b"\n") in m1
        assert [raw for name, raw in header_fields(m2) if name == b"X-Subj"] == \
            [b"X-Subj: test message 2"]
        log = s.log()
        assert "signal 6" not in log and "panic" not in log, log[-3000:]


def test_many_mutations_capped_per_message():
    """A rule that adds headers in a loop: the evaluation's mutations are
    capped (total size), filter stays up and the message is deferred with a
    4xx for this transaction alone."""
    rules = '''
stage data {
  action "many" {
    for r in rcpt_list { add_header("X-A", msg.subject); add_header("X-B", msg.subject);
                         add_header("X-C", msg.subject); add_header("X-D", msg.subject); }
  }
}
'''
    with rules_suite(rules) as s:
        pids = s.child_pids("filter")
        subj = "\r\n ".join(" ".join(f"word{i}.{k}" for k in range(8)) for i in range(50))
        c = s.smtp()
        c.ehlo("client.example.test")
        c.mail("a@example.test")
        for i in range(40):
            assert c.rcpt(f"bob+{i}@example.test")[0] == 250
        code, text = c.data(make_message(1, subject=subj))
        c.quit()
        # 160 fields of ~998 octets are over the 64 KiB cap per message
        assert 400 <= code < 500, (code, text)
        assert s.child_pids("filter") == pids
        code, text = data_session(s, "a@example.test", "bob@example.test", make_message(2))
        assert code == 250, (code, text)
        assert s.child_pids("filter") == pids
        assert "mutation" in s.log()


def zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kill_filter_hold_master(s, smtpd_connected=True):
    """Make filter unavailable and keep it so: master is stopped (it cannot
    restart filter), filter is killed. Returns master's pid (SIGCONT it)."""
    mpid = s.master_pid()
    fpids = s.child_pids("filter")
    assert len(fpids) == 1
    os.kill(mpid, signal.SIGSTOP)
    try:
        os.kill(fpids[0], signal.SIGKILL)
        wait_for(lambda: zombie(fpids[0]), 10, "filter to die")
        if smtpd_connected:
            wait_for(lambda: "filter connection" in s.log() or "filter: connect" in s.log(),
                     10, "smtpd to see filter gone")
    except Exception:
        os.kill(mpid, signal.SIGCONT)
        raise
    time.sleep(0.5)
    return mpid


def test_filter_down_default_policy_applies():
    """Rules at data only: while filter is down, a local recipient still
    gets 250 at RCPT (no rules there, default policy), relaying for an
    untrusted client is refused (554, default policy), and DATA, which needs
    the rules, gets a 4xx. Once filter is back, mail flows again."""
    rules = 'stage data { action "tag" { add_header("X-Tagged", "yes"); } }\n'
    with rules_suite(rules, mynetworks="[]") as s:
        code, text = data_session(s, "a@example.test", "bob@example.test", make_message(1))
        assert code == 250, (code, text)
        mpid = kill_filter_hold_master(s)
        try:
            c = SmtpClient.ready(s.port)
            c.envelope("a@example.test", ["bob@example.test"])
            code, lines = c.cmd("RCPT TO:<someone@elsewhere.test>")
            assert code == 554 and "Relay access denied" in lines[0], lines
            code, lines = c.data(make_message(2))
            assert 400 <= code < 500, lines
            c.cmd("QUIT")
            c.close()
        finally:
            os.kill(mpid, signal.SIGCONT)
        # filter restarted by master: mail flows again, with its rules
        def flows():
            try:
                return data_session(s, "a@example.test", "bob@example.test",
                                    make_message(3))[0] == 250
            except (AssertionError, OSError):
                return False
        wait_for(flows, 90, "mail accepted again after filter's restart", interval=1)
        got = s.wait_delivered("bob", 2)
        for p in got:
            with open(p, "rb") as f:
                assert b"\nX-Tagged: yes\n" in f.read()


def test_frozen_filter_does_not_hold_stages_without_rules():
    """filter stopped (SIGSTOP: connected but silent): a stage without rules
    never waits for it. Relay control at a rcpt without rules is answered at
    once by the default policy (554 for an untrusted client), a local
    recipient gets 250."""
    rules = 'stage data { action "tag" { add_header("X-Tagged", "yes"); } }\n'
    with rules_suite(rules, mynetworks="[]") as s:
        fpids = s.child_pids("filter")
        assert len(fpids) == 1
        # smtpd knows the stages (a first session has been served)
        code, text = data_session(s, "a@example.test", "bob@example.test", make_message(1))
        assert code == 250, (code, text)
        os.kill(fpids[0], signal.SIGSTOP)
        try:
            t0 = time.time()
            c = SmtpClient.ready(s.port, timeout=10)
            c.envelope("a@example.test")
            code, lines = c.cmd("RCPT TO:<someone@elsewhere.test>")
            assert code == 554 and "Relay access denied" in lines[0], lines
            code, lines = c.cmd("RCPT TO:<bob@example.test>")
            assert code == 250, lines
            assert time.time() - t0 < 5
            c.cmd("QUIT")
            c.close()
        finally:
            os.kill(fpids[0], signal.SIGCONT)
        assert s.child_pids("filter") == fpids


def test_no_rules_file_needs_no_filter():
    """Without a rules file, smtpd decides every stage itself: a session
    while filter is down gets 250 at RCPT for a local recipient and 554 for
    relaying (untrusted client), and cleanup takes the message without asking
    filter at data."""
    with Suite(mynetworks="[]") as s:
        mpid = kill_filter_hold_master(s, smtpd_connected=False)
        try:
            c = SmtpClient.ready(s.port)
            c.envelope("a@example.test", ["bob@example.test", "postmaster"])
            code, lines = c.cmd("RCPT TO:<x@elsewhere.test>")
            assert code == 554 and "Relay access denied" in lines[0], lines
            code, lines = c.data(make_message(1))
            assert code == 250, lines
            c.cmd("QUIT")
            c.close()
        finally:
            os.kill(mpid, signal.SIGCONT)
        s.wait_delivered("bob", 1)
