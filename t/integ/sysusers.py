"""Unprivileged system users for the local-delivery tests: created with
useradd -m (home under the suite's directory), removed with userdel -r
(home and /var/mail spool) when the block ends."""
import contextlib
import os
import pwd
import random
import string
import subprocess


@contextlib.contextmanager
def system_users(base, n):
    """n fresh users with homes under base: yields their pwd entries."""
    tag = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    names = [f"pt{tag}{i}" for i in range(n)]
    made = []
    try:
        for name in names:
            subprocess.run(["useradd", "-m", "-d", os.path.join(base, "home-" + name),
                            "-s", "/bin/sh", name], check=True, capture_output=True)
            made.append(name)
        yield [pwd.getpwnam(x) for x in names]
    finally:
        for name in made:
            subprocess.run(["userdel", "-r", name], capture_output=True)
            subprocess.run(["rm", "-f", "/var/mail/" + name, "/var/mail/" + name + ".lock"])


def user_maildir_new(pw):
    d = os.path.join(pw.pw_dir, "Maildir", "new")
    return sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []


def system_conf(s, extra=""):
    """The local block for system users: ~/Maildir, the suite's aliases."""
    return (f'local {{ mailbox = "maildir"; maildir = "~/Maildir"; '
            f'aliases = "{s.dir}/aliases"; {extra}}}')
