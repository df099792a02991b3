"""The RCPT check for local recipients (smtpd/smtpd_local.c) never blocks
smtpd: a lookup that hangs (here local.users is a FIFO nobody writes yet,
as a network directory behind NSS could hang) holds up only its own RCPT;
other sessions of the same smtpd process (processes.smtpd = 1) are served
at once, local recipients included, and the slow RCPT gets its answer when
the lookup finishes."""
import os
import time

from suite import Suite, SmtpClient


def fifo_users_suite(extra=""):
    """A suite whose local.users is a FIFO: a lookup at example.test waits
    in open() until the test writes to it."""
    s = Suite(start=False)
    fifo = os.path.join(s.dir, "users.fifo")
    os.mkfifo(fifo, 0o644)
    text = s.conf_text.replace("aliases = ", f'users = "{fifo}"; aliases = ', 1) + extra
    return s, text, fifo


def release(fifo, data=b""):
    """Let the lookup waiting on the FIFO go on: it reads data."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, data)
    os.close(fd)


def session_in_mail(s):
    c = SmtpClient.ready(s.port)
    c.envelope("x@example.test")
    return c


def test_slow_local_lookup_does_not_stall_other_sessions():
    s, text, fifo = fifo_users_suite()
    users = os.path.join(s.dir, "tenant.users")
    with open(users, "w") as f:
        f.write("eve\n")
    os.chmod(users, 0o644)
    text += (f'domain "tenant.test" {{ mailboxes = "{s.mail}/%d/%u/Maildir"; '
             f'users = "{users}"; }}\n')
    with s.start_with_conf(text):
        a = session_in_mail(s)
        a.send("RCPT TO:<alice@example.test>\r\n")  # the helper now waits on the FIFO
        time.sleep(0.2)
        t0 = time.monotonic()
        b = session_in_mail(s)
        assert b.cmd("RCPT TO:<eve@tenant.test>")[0] == 250
        code, lines = b.cmd("RCPT TO:<mallory@tenant.test>")
        assert code == 550 and "5.1.1" in lines[0], lines
        assert b.cmd("QUIT")[0] == 221
        b.close()
        took = time.monotonic() - t0
        # a blocked loop would hold b until a's 5 s bound ran out
        assert took < 3.5, f"second session took {took:.2f}s"
        # the lookup finishes: the FIFO names alice, and a gets its 250
        release(fifo, b"alice\n")
        code, lines = a.reply()
        assert code == 250, lines
        a.close()


def test_lookup_that_never_ends_is_451_and_session_goes_on():
    s, text, fifo = fifo_users_suite()
    with s.start_with_conf(text):
        a = session_in_mail(s)
        t0 = time.monotonic()
        code, lines = a.cmd("RCPT TO:<bob@example.test>")
        assert code == 451 and "4.3.0" in lines[0], lines
        assert 4 < time.monotonic() - t0 < 20
        # the session is still served; postmaster needs no users file
        assert a.cmd("NOOP")[0] == 250
        assert a.cmd("RCPT TO:<postmaster@example.test>")[0] == 250
        a.close()
        release(fifo)               # the helper thread still waiting on the FIFO
        assert "no answer within" in s.log()


def test_answers_kept_ten_seconds():
    """A yes or a no is kept 10 s (smtpd_local.c's cache): the same RCPT is
    answered at once without the helper (which would wait on the FIFO),
    another address is asked, and after 10 s the helper is asked again."""
    s, text, fifo = fifo_users_suite()
    with s.start_with_conf(text):
        a = session_in_mail(s)
        a.send("RCPT TO:<alice@example.test>\r\n")
        time.sleep(0.2)
        release(fifo, b"alice\n")
        assert a.reply()[0] == 250
        t0 = time.monotonic()
        assert a.cmd("RCPT TO:<alice@example.test>")[0] == 250     # kept: no FIFO read
        assert time.monotonic() - t0 < 1.0
        a.send("RCPT TO:<bob@example.test>\r\n")                  # not kept: asked
        time.sleep(0.2)
        release(fifo, b"alice\n")
        code, lines = a.reply()
        assert code == 550 and "5.1.1" in lines[0], lines
        code, lines = a.cmd("RCPT TO:<bob@example.test>")          # the no is kept too
        assert code == 550, lines
        time.sleep(10.2)
        a.send("RCPT TO:<alice@example.test>\r\n")                # expired: asked again
        a.s.settimeout(0.8)
        try:
            a.reply()
            raise AssertionError("answered without asking the helper after 10 s")
        except TimeoutError:
            pass
        a.s.settimeout(20)
        release(fifo, b"alice\nbob\n")
        assert a.reply()[0] == 250
        a.close()
