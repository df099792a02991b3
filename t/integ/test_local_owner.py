"""Delivery as the recipient (delivery/delivery_ident.c, delivery_run.c):
a system user's Maildir file is owned by the user, mode 0600, in 0700
directories the user created; an mbox in /var/mail is USER:mail 0660;
unknown local users get 550 5.1.1 at RCPT; ~/.forward is followed when it
is safe and ignored (logged) when group writable."""
import os
import re
import stat

from suite import Suite, make_message, wait_for
from sysusers import system_conf, system_users, user_maildir_new


def _suite(extra=""):
    s = Suite(start=False)
    text = re.sub(r"^local \{.*\}$", system_conf(s, extra), s.conf_text, count=1, flags=re.M)
    return s, text


def test_maildir_file_owned_by_recipient_0600():
    s, text = _suite()
    with system_users(s.dir, 1) as (ann,):
        with s.start_with_conf(text):
            s.send("x@example.test", [f"{ann.pw_name}@example.test"], make_message(1))
            wait_for(lambda: user_maildir_new(ann), 30, "delivery to the user's Maildir")
            s.wait_queue_empty()
            (path,) = user_maildir_new(ann)
            st = os.stat(path)
            assert (st.st_uid, st.st_gid) == (ann.pw_uid, ann.pw_gid), st
            assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
            for d in ("", "new", "cur", "tmp"):
                ds = os.stat(os.path.join(ann.pw_dir, "Maildir", d))
                assert ds.st_uid == ann.pw_uid and stat.S_IMODE(ds.st_mode) == 0o700, (d, ds)
            assert f"Delivered-To: {ann.pw_name}@example.test".encode() in open(path, "rb").read()


def test_mbox_in_var_mail_is_user_mail_0660():
    s, text = _suite()
    text = text.replace('mailbox = "maildir";', 'mailbox = "mbox"; mbox = "/var/mail/%u";')
    with system_users(s.dir, 1) as (ann,):
        with s.start_with_conf(text):
            path = "/var/mail/" + ann.pw_name
            s.send("x@example.test", [f"{ann.pw_name}@example.test"], make_message(2))
            wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 30, "mbox")
            s.wait_queue_empty()
            st = os.stat(path)
            assert st.st_uid == ann.pw_uid, st
            assert st.st_gid == 8, st                     # Debian's mail group
            assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
            assert not os.path.exists(path + ".lock")
            assert open(path, "rb").read().startswith(b"From x@example.test ")


def test_mbox_made_by_another_user_is_not_written():
    """/var/mail is writable by the mail group: a member who makes
    /var/mail/ann as their own file must not get ann's mail in it."""
    s, text = _suite()
    text = text.replace('mailbox = "maildir";', 'mailbox = "mbox"; mbox = "/var/mail/%u";')
    with system_users(s.dir, 2) as (ann, ben):
        path = "/var/mail/" + ann.pw_name
        with open(path, "w"):
            pass
        os.chown(path, ben.pw_uid, 8)
        os.chmod(path, 0o666)
        try:
            with s.start_with_conf(text):
                s.send("x@example.test", [f"{ann.pw_name}@example.test"], make_message(3))
                wait_for(lambda: "the mailbox belongs to another user" in s.log(), 30,
                         "the deferral")
                assert os.path.getsize(path) == 0
                assert re.search(rf"to=<{ann.pw_name}@example\.test>.*status=deferred", s.log())
        finally:
            os.unlink(path)


def test_unknown_local_user_refused_at_rcpt():
    s, text = _suite()
    with system_users(s.dir, 1) as (ann,):
        with open(os.path.join(s.dir, "aliases"), "w") as f:
            f.write(f"team: {ann.pw_name}\n")
        with s.start_with_conf(text):
            with s.smtp() as c:
                c.ehlo("client.example.test")
                assert c.mail("x@example.test")[0] == 250
                code, msg = c.rcpt("no-such-user-zz@example.test")
                assert code == 550 and msg.startswith(b"5.1.1"), (code, msg)
                for ok in (f"{ann.pw_name}@example.test", "team@example.test",
                           "postmaster@example.test", "MAILER-DAEMON@example.test", "postmaster"):
                    assert c.rcpt(ok)[0] == 250, ok
            # nothing refused was queued to bounce later
            s.wait_queue_empty()


def test_forward_followed_and_group_writable_one_ignored():
    s, text = _suite()
    with system_users(s.dir, 3) as (ann, ben, cid):
        # ann forwards to ben and keeps a copy (\ann); cid's .forward is
        # group writable: ignored, with a log line
        fwd = os.path.join(ann.pw_dir, ".forward")
        with open(fwd, "w") as f:
            f.write(f"\\{ann.pw_name}, {ben.pw_name}\n")
        os.chown(fwd, ann.pw_uid, ann.pw_gid)
        os.chmod(fwd, 0o644)
        bad = os.path.join(cid.pw_dir, ".forward")
        with open(bad, "w") as f:
            f.write(f"{ben.pw_name}\n")
        os.chown(bad, cid.pw_uid, cid.pw_gid)
        os.chmod(bad, 0o664)
        with s.start_with_conf(text):
            s.send("x@example.test", [f"{ann.pw_name}@example.test"], make_message(3))
            s.send("x@example.test", [f"{cid.pw_name}@example.test"], make_message(4))
            wait_for(lambda: len(user_maildir_new(ben)) == 1 and user_maildir_new(ann)
                     and user_maildir_new(cid), 30, "forwarded and kept copies")
            s.wait_queue_empty()
            assert len(user_maildir_new(ann)) == 1 and len(user_maildir_new(cid)) == 1
            assert len(user_maildir_new(ben)) == 1
            assert os.stat(user_maildir_new(ben)[0]).st_uid == ben.pw_uid
            assert "group or world writable: ignored" in s.log(), s.log()[-2000:]


def test_virtual_domain_mailboxes_written_as_vmail_user():
    s, text = _suite(extra="")
    with system_users(s.dir, 1) as (vm,):
        vdir = os.path.join(s.dir, "vmail")
        os.mkdir(vdir)
        os.chown(vdir, vm.pw_uid, vm.pw_gid)
        users = os.path.join(s.dir, "tenant.users")
        with open(users, "w") as f:
            f.write("eve:x\n")
        os.chmod(users, 0o644)
        with open(os.path.join(s.dir, "aliases"), "w") as f:
            f.write("toeve: eve@tenant.test\n")
        text = text.replace('aliases = ', f'vmail_user = "{vm.pw_name}"; aliases = ')
        text += (f'domain "tenant.test" {{ mailboxes = "{vdir}/%d/%u/Maildir"; '
                 f'users = "{users}"; }}\n')
        with s.start_with_conf(text):
            with s.smtp() as c:
                c.ehlo("client.example.test")
                c.mail("x@example.test")
                code, msg = c.rcpt("mallory@tenant.test")
                assert code == 550 and msg.startswith(b"5.1.1"), (code, msg)
            s.send("x@example.test", ["eve@tenant.test", "toeve@example.test"], make_message(9))
            new = os.path.join(vdir, "tenant.test", "eve", "Maildir", "new")
            wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) == 1, 30,
                     "eve's virtual Maildir")
            s.wait_queue_empty()
            assert len(os.listdir(new)) == 1    # eve and toeve: one copy per message
            for f in os.listdir(new):
                st = os.stat(os.path.join(new, f))
                assert st.st_uid == vm.pw_uid and stat.S_IMODE(st.st_mode) == 0o600, st
