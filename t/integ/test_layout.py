"""Link layout: the rule language (lib/rules/, librules.a) is linked only
into filter and the CLI. smtpd, cleanup, qmgr, delivery and master hear
verdicts through lib/filter/filter_mut.h and must carry no rule-language symbol
(rl_*): no compiler, VM, or cmd service that forks programs."""
import os
import subprocess

from suite import ROOT

CLEAN = ("smtpd", "cleanup", "qmgr", "delivery", "smtp", "pipe", "master")


def rl_symbols(path):
    """The defined rl_* symbols of a binary (functions and data)."""
    r = subprocess.run(["nm", "--defined-only", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, check=True)
    names = (l.split()[-1] for l in r.stdout.decode().splitlines() if l.strip())
    return sorted(n for n in names if n.startswith("rl_"))


def test_daemons_without_rules_link_no_rule_language():
    for d in CLEAN:
        path = os.path.join(ROOT, "libexec", d)
        assert os.path.exists(path), path
        syms = rl_symbols(path)
        assert not syms, f"{d} links the rule language: {' '.join(syms[:10])}"


def test_filter_and_cli_have_the_rule_language():
    for path in (os.path.join(ROOT, "libexec", "filter"), os.path.join(ROOT, "bin", "postern")):
        syms = rl_symbols(path)
        for want in ("rl_compile_file", "rl_eval"):
            assert want in syms, f"{path} lacks {want}"


def test_lib_folders_have_no_upward_include():
    """lib/ is split by concern into folders with a layering order
    (mk/layout.py): no folder includes one above it, so there is no include
    cycle, and every include of a shared header names its folder."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(["/usr/bin/python3", "mk/layout.py"], cwd=repo,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_layout_check_catches_an_upward_include():
    """The checker itself fails on a lib/util file including a filter header."""
    import shutil
    import tempfile
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(os.path.join(repo, "lib"), os.path.join(d, "lib"))
        os.makedirs(os.path.join(d, "mk"))
        shutil.copy(os.path.join(repo, "mk", "layout.py"), os.path.join(d, "mk"))
        with open(os.path.join(d, "lib", "util", "buf.c"), "a") as f:
            f.write('\n#include "filter/filter_mut.h"\n')
        r = subprocess.run(["/usr/bin/python3", "mk/layout.py"], cwd=d,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 1 and b"lib/util may not include" in r.stdout, r.stdout
