"""The pipe agent (pipe/): a `transport "t" { type = "pipe"; }` chosen by
transport(r, "t") at the deliver stage runs its command once per recipient,
as the transport's user (a system user this test creates), with no shell:
each ${variable} fills one argv element whatever it holds (spaces, quotes,
$(...), a leading -x), an element that would start with '-' from the
address before any "--" is refused (5.1.3), stdin is Return-Path +
Delivered-To + the message. Exit codes map per sysexits: 0 delivered,
75 deferred, 67/65/69/77 bounced with 5.1.1/5.6.0/5.3.0/5.7.0 and the
command's output in the DSN; a signal or the timeout defers. `postern
check` names a missing user, a root user and a command that is not
executable with file:line:col."""
import email
import email.policy
import glob
import json
import os
import pwd
import re
import signal
import subprocess
import tempfile

from suite import Suite, rules_suite, make_message, procs, wait_for

USER = "posterntest-pipe"

SCRIPT = r"""#!/usr/bin/python3
import json, os, signal, sys, time
fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
out, rcpt = sys.argv[1], sys.argv[4]
data = sys.stdin.buffer.read()
rec = {"argv": sys.argv, "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
       "stdin": data.decode("utf-8", "replace"), "env": dict(os.environ), "fds": fds}
with open(os.path.join(out, "%d-%d.json" % (time.time_ns(), os.getpid())), "w") as f:
    json.dump(rec, f)
lp = rcpt.split("@")[0]
codes = {"ok": 0, "tempfail": 75, "nouser": 67, "dataerr": 65, "unavail": 69, "noperm": 77,
         "odd": 3}
if lp == "nouser":
    sys.stderr.write("no such user here\n")
if lp == "sig":
    os.kill(os.getpid(), signal.SIGKILL)
if lp == "slow":
    time.sleep(60)
sys.exit(codes.get(lp, 0))
"""


def _user():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


def _setup():
    """(script, outdir, passwd entry)"""
    pw = _user()
    d = tempfile.mkdtemp(prefix="postern-pipe-")
    os.chmod(d, 0o755)
    script = os.path.join(d, "deliver.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    os.chmod(script, 0o755)
    out = os.path.join(d, "out")
    os.mkdir(out)
    os.chown(out, pw.pw_uid, pw.pw_gid)
    os.chmod(out, 0o700)
    return script, out, pw


def _conf(script, out, user=USER, timeout="3s"):
    return (f'transport "t" {{ type = "pipe"; user = "{user}"; timeout = {timeout};\n'
            f'  command = ["{script}", "{out}", "${{local_part}}", "--", "${{recipient}}",\n'
            f'             "${{sender}}", "q=${{queue_id}}", "${{size}}", "${{domain}}"]; }}\n')


RULES = """
stage deliver {
  action "pipe" { for r in rcpt_list { if r.domain == "pipe.test" { transport(r, "t"); } } }
}
"""


def _records(out):
    recs = []
    for p in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(p) as f:
            recs.append(json.load(f))
    return recs


def _by_rcpt(out):
    return {r["argv"][4]: r for r in _records(out)}


def _logged(s, pattern, timeout=30):
    return wait_for(lambda: re.search(pattern, s.log()), timeout, f"log line /{pattern}/")


def test_pipe_exit_codes_user_and_input():
    script, out, pw = _setup()
    with rules_suite(RULES, _conf(script, out)) as s:
        names = ["ok", "tempfail", "nouser", "dataerr", "unavail", "noperm", "odd", "sig", "slow"]
        msg = make_message(1, subject="piped")
        s.send("alice@example.test", [f"{n}@pipe.test" for n in names], msg)
        want = {
            "ok": r"dsn=2\.0\.0, status=sent \(delivered via t\)",
            "tempfail": r"dsn=4\.3\.0, status=deferred \(command .* exited with status 75 "
                        r"\(temporary failure\)\)",
            "nouser": r"dsn=5\.1\.1, status=bounced \(command .* exited with status 67 \(user "
                      r"unknown\): no such user here",
            "dataerr": r"dsn=5\.6\.0, status=bounced \(command .* status 65 ",
            "unavail": r"dsn=5\.3\.0, status=bounced \(command .* status 69 ",
            "noperm": r"dsn=5\.7\.0, status=bounced \(command .* status 77 ",
            "odd": r"dsn=5\.3\.0, status=bounced \(command .* status 3 \(unknown exit status\)",
            "sig": r"dsn=4\.3\.0, status=deferred \(command .* killed by signal 9 ",
            "slow": r"dsn=4\.3\.0, status=deferred \(command .* timed out",
        }
        for n, pat in want.items():
            _logged(s, rf"to=<{n}@pipe\.test>, relay=pipe, .*{pat}")
        recs = _by_rcpt(out)
        ok = recs["ok@pipe.test"]
        qid = re.search(r"q=(\S+)", " ".join(ok["argv"])).group(1)
        assert ok["argv"][1:] == [out, "ok", "--", "ok@pipe.test", "alice@example.test",
                                  f"q={qid}", ok["argv"][7], "pipe.test"], ok["argv"]
        assert int(ok["argv"][7]) > 0
        assert (ok["uid"], ok["gid"]) == (pw.pw_uid, pw.pw_gid), ok
        assert ok["cwd"] == "/"
        assert ok["fds"] == [0, 1, 2, 3], ok["fds"]   # 3: the listing itself; nothing leaked
        assert ok["stdin"].startswith("Return-Path: <alice@example.test>\nDelivered-To: "
                                      "ok@pipe.test\nReceived: "), ok["stdin"][:200]
        assert "Subject: piped\n" in ok["stdin"] and "\r" not in ok["stdin"]
        assert set(ok["env"]) <= {"PATH", "HOME", "USER", "LC_CTYPE"}, ok["env"]
        (path,) = s.wait_delivered("alice", 1)
        with open(path, "rb") as f:
            m = email.message_from_bytes(f.read(), policy=email.policy.compat32)
        st = [p for p in m.get_payload() if p.get_content_type() == "message/delivery-status"]
        got = {r["Final-Recipient"]: r for r in st[0].get_payload()[1:]}
        assert {k: r["Status"] for k, r in got.items()} == {
            "rfc822; nouser@pipe.test": "5.1.1", "rfc822; dataerr@pipe.test": "5.6.0",
            "rfc822; unavail@pipe.test": "5.3.0", "rfc822; noperm@pipe.test": "5.7.0",
            "rfc822; odd@pipe.test": "5.3.0"}, got
        assert "no such user here" in got["rfc822; nouser@pipe.test"]["Diagnostic-Code"]


def test_pipe_hostile_arguments_stay_one_literal_argument():
    script, out, pw = _setup()
    hostile = '"a b\' \\"c\\" $(touch /tmp/postern-pwned) `id` ;x -x"@pipe.test'
    with rules_suite(RULES, _conf(script, out)) as s:
        with s.smtp() as c:
            c.ehlo("client.example.test")
            assert c.mail("alice@example.test")[0] == 250
            assert c.docmd("RCPT", f"TO:<{hostile}>")[0] == 250
            assert c.docmd("RCPT", "TO:<-x@pipe.test>")[0] == 250
            assert c.data(make_message(2))[0] == 250
        _logged(s, r"to=<-x@pipe\.test>, relay=pipe, .*dsn=5\.1\.3, status=bounced \(argument 2 "
                   r"would begin with '-' from the address")
        _logged(s, r"to=<\"a b.*, relay=pipe, .*status=sent")
        recs = _records(out)
        assert len(recs) == 1, recs           # the -x recipient never reached the command
        argv = recs[0]["argv"]
        assert len(argv) == 9, argv
        assert argv[4] == hostile, argv
        assert argv[2] == hostile.rsplit("@", 1)[0], argv
        assert not os.path.exists("/tmp/postern-pwned")


def test_check_names_transport_problems():
    script, out, pw = _setup()
    os.chmod(script, 0o644)   # not executable any more
    conf = (_conf(script, out) +
            'transport "ghost" { type = "pipe"; user = "no-such-user-here";\n'
            '  command = ["/bin/true"]; }\n'
            'transport "boss" { type = "pipe"; user = "root"; command = ["/bin/true"]; }\n')
    s = Suite(start=False, extra_conf=conf)
    rules = os.path.join(s.dir, "t.rules")
    with open(rules, "w") as f:
        f.write('stage deliver { action "a" { for r in rcpt_list {\n'
                '  transport(r, "t"); transport(r, "nope");\n'
                '  lmtp(r, "t"); } } }\n')
    os.chmod(rules, 0o644)
    s.write_conf(s.conf_text + f'rules = "{rules}";\n')
    try:
        r = s.postern("check")
        err = r.stderr.decode()
        assert r.returncode == 1, err
        conf_text = open(s.conf).read().splitlines()
        ghost = next(i for i, l in enumerate(conf_text, 1) if '"ghost"' in l)
        boss = next(i for i, l in enumerate(conf_text, 1) if '"boss"' in l)
        cmd = next(i for i, l in enumerate(conf_text, 1) if "command = [" in l and script in l)
        assert re.search(rf"{re.escape(s.conf)}:{ghost}:\d+: transport\.ghost\.user: user "
                         r"\"no-such-user-here\" does not exist", err), err
        assert re.search(rf"{re.escape(s.conf)}:{boss}:\d+: transport\.boss\.user: \"root\" is "
                         r"root", err), err
        assert re.search(rf"{re.escape(s.conf)}:{cmd}:\d+: transport\.t\.command: "
                         rf"{re.escape(script)} is not an executable file for user {USER}",
                         err), err
        assert f'{rules}:2:35: transport: no transport "nope" {{ }} block in {s.conf}' in err, err
        assert f'{rules}:3:11: lmtp: transport "t" is not of type lmtp' in err, err
        assert f'transport(r, "t")' not in err and ":2:16:" not in err, err
    finally:
        s.__exit__(None, None, None)


def test_runner_lost_or_missing_user_defers_then_recovers():
    script, out, pw = _setup()
    conf = (_conf(script, out) +
            'transport "ghost" { type = "pipe"; user = "no-such-user-here";\n'
            '  command = ["/bin/true"]; }\n')
    rules = RULES.replace('transport(r, "t"); }',
                          'if r.local_part == "ghost" { transport(r, "ghost"); } '
                          'else { transport(r, "t"); } }')
    with rules_suite(rules, conf, processes="processes { smtpd = 1; delivery = 1; }") as s:
        s.send("alice@example.test", ["ghost@pipe.test"], make_message(3))
        _logged(s, r'to=<ghost@pipe\.test>, relay=pipe, .*dsn=4\.3\.0, status=deferred \(user '
                   r'"no-such-user-here" of pipe transport "ghost" does not exist\)')
        agents = s.child_pids("pipe")
        assert len(agents) == 1, agents
        rows = procs()
        runners = [(p, u) for p, pp, u, _ in rows if pp == agents[0]]
        # one runner, for "t" (ghost has none), as t's user; the agent as postern's
        assert [u for _, u in runners] == [pw.pw_name], (runners, pw)
        assert [u for p, _, u, _ in rows if p == agents[0]] == [pwd.getpwuid(s.uid).pw_name]
        os.kill(runners[0][0], signal.SIGKILL)
        s.send("alice@example.test", ["ok@pipe.test"], make_message(4))
        _logged(s, r"to=<ok@pipe\.test>, relay=pipe, .*status=deferred \(runner of pipe "
                   r"transport \"t\" ")
        # the agent stepped down; master started a new one with a new runner
        wait_for(lambda: s.child_pids("pipe") and s.child_pids("pipe") != agents, 30,
                 "a new pipe agent")
        wait_for(lambda: s.postern("queue", "flush").returncode == 0, 20, "flush")
        _logged(s, r"to=<ok@pipe\.test>, relay=pipe, .*status=sent")
