"""make install PREFIX=...: the installed binaries carry that prefix (also
when the tree was built before with another one), the installed sample
configuration passes `postern check` without -c, and the man pages, sample
rules and systemd unit are where the prefix says. Also `postern version` and
`postern config show`."""
import os
import shutil
import subprocess
import tempfile

from suite import ROOT

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, env=None, check=True):
    e = dict(os.environ)
    e.pop("POSTERN_CONFIG", None)
    e.update(env or {})
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e,
                       timeout=900)
    out = r.stdout.decode(errors="replace")
    if check:
        assert r.returncode == 0, f"{args}: rc {r.returncode}\n{out[-3000:]}"
    return r.returncode, out


def make_install(tmp, prefix):
    # a private object tree: the suite's own build is left alone
    return run("make", "-C", REPO, "-j2", f"OBJ={tmp}/obj", f"OUT={tmp}/out",
               f"PREFIX={prefix}", "install")


def test_install_prefix_and_sample_config():
    if os.path.basename(os.path.normpath(ROOT)) == "san":
        return   # the sanitizer run reuses the same scripts; one real install is enough
    tmp = tempfile.mkdtemp(prefix="postern-inst-")
    os.chmod(tmp, 0o755)   # the daemons' user reads the installed files (check does too)
    try:
        p1 = os.path.join(tmp, "p1")
        make_install(tmp, p1)
        postern = os.path.join(p1, "bin", "postern")
        _, out = run(postern, "version")
        assert f"prefix:    {p1} " in out, out
        # no -c and no $POSTERN_CONFIG: the compiled-in PREFIX/etc/postern/postern.conf
        rc, out = run(postern, "check", check=False)
        assert rc == 0 and f"{p1}/etc/postern/postern.conf: ok" in out, out
        _, out = run(postern, "config", "show", "-n", "rules")
        assert out.strip() == f'rules = "{p1}/etc/postern/rules/main.rules";', out
        for f in ("share/man/man8/postern.8", "share/man/man5/postern.conf.5",
                  "share/man/man8/postern-smtpd.8", "share/man/man8/postern-qmgr.8",
                  "share/man/man5/postern.rules.5", "etc/postern/rules/main.rules",
                  "etc/postern/tls/mx.pem", "libexec/postern/master", "libexec/postern/smtpd",
                  "bin/mailq"):
            assert os.path.exists(os.path.join(p1, f)), f
        unit = open(os.path.join(p1, "lib/systemd/system/postern.service")).read()
        assert f"ExecStart={p1}/bin/postern run" in unit, unit
        assert oct(os.stat(os.path.join(p1, "etc/postern/tls/mx.key")).st_mode & 0o777) == "0o600"
        # Postern as the system's sendmail (make install-sendmail), in a scratch root
        sysroot = os.path.join(tmp, "sys")
        os.makedirs(os.path.join(sysroot, "usr/sbin"))
        with open(os.path.join(sysroot, "usr/sbin/sendmail"), "w") as f:
            f.write("#!/bin/sh\necho other MTA\n")
        links = os.path.join(REPO, "mk", "sendmail-links.sh")
        run(links, p1, sysroot)
        for name in ("usr/sbin/sendmail", "usr/lib/sendmail", "usr/bin/mailq",
                     "usr/bin/newaliases"):
            assert os.readlink(os.path.join(sysroot, name)) == postern, name
        assert open(os.path.join(sysroot, "usr/sbin/sendmail.pre-postern")).read().endswith(
            "other MTA\n")
        _, out = run(os.path.join(sysroot, "usr/sbin/sendmail"), "-bv", "postmaster@localhost")
        assert "\npostmaster@localhost: deliverable: " in "\n" + out, out
        _, out = run(links, p1, sysroot)   # again: nothing changes
        assert "already Postern" in out and "pre-postern" not in out, out
        run(links, "--remove", p1, sysroot)
        assert open(os.path.join(sysroot, "usr/sbin/sendmail")).read().endswith("other MTA\n")
        assert not os.path.lexists(os.path.join(sysroot, "usr/bin/mailq"))
        # the same object tree, another prefix: the compiled-in path follows
        p2 = os.path.join(tmp, "p2")
        make_install(tmp, p2)
        _, out = run(os.path.join(p2, "bin", "postern"), "version")
        assert f"prefix:    {p2} " in out, out
        rc, out = run(os.path.join(p2, "bin", "postern"), "check", check=False)
        assert rc == 0 and f"{p2}/etc/postern/postern.conf: ok" in out, out
        # a second install keeps the administrator's edited config
        with open(os.path.join(p2, "etc/postern/postern.conf"), "a") as f:
            f.write("# edited\n")
        make_install(tmp, p2)
        assert open(os.path.join(p2, "etc/postern/postern.conf")).read().endswith("# edited\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_show():
    postern = os.path.join(ROOT, "bin", "postern")
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "p.conf")
        with open(conf, "w") as f:
            f.write('hostname = "mx.show.test";\nlimits { message_size = 10M; }\n'
                    'delivery { retry = [60s, 2h]; }\nmynetworks = ["10.0.0.0/8", "[::1]/128"];\n')
        _, out = run(postern, "-c", conf, "config", "show", "-n")
        assert out.splitlines() == [
            'hostname = "mx.show.test";',
            'mynetworks = ["10.0.0.0/8", "[::1]/128"];',
            'limits.message_size = 10M;',
            'delivery.retry = [1m, 2h];',
        ] or set(out.splitlines()) == {
            'hostname = "mx.show.test";', 'mynetworks = ["10.0.0.0/8", "[::1]/128"];',
            'limits.message_size = 10M;', 'delivery.retry = [1m, 2h];'}, out
        _, out = run(postern, "-c", conf, "config", "show", "limits.message_size", "local.mailbox")
        assert out.splitlines() == ['limits.message_size = 10M;', 'local.mailbox = "maildir";'], out
        _, out = run(postern, "config", "show", "-d", "limits.message_size", "delivery.lifetime")
        assert out.splitlines() == ['limits.message_size = 50M;', 'delivery.lifetime = 5d;'], out
        rc, out = run(postern, "-c", conf, "config", "show", "no.such.key", check=False)
        assert rc == 1 and 'unknown key "no.such.key"' in out, out
        rc, out = run(postern, "config", "frobnicate", check=False)
        assert rc == 2, out


# the daemon binary (libexec/NAME) -> its page, when the names differ
MAN_OF = {"delivery": "postern-local.8"}


def test_every_command_and_daemon_has_a_clean_man_page():
    man = os.path.join(REPO, "man")
    pages = set(os.listdir(man))
    want = {"postern.8", "postern.conf.5", "postern.rules.5"}
    want |= {n + ".1" for n in os.listdir(os.path.join(ROOT, "bin")) if n != "postern"}
    want |= {MAN_OF.get(d, f"postern-{d}.8") for d in os.listdir(os.path.join(ROOT, "libexec"))}
    missing = sorted(want - pages)
    assert not missing, f"no man page for: {missing}"
    for p in sorted(pages):
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(man, p)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert r.returncode == 0 and not r.stdout.strip(), f"{p}: {r.stdout.decode()}"
