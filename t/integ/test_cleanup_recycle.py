"""libopendkim 2.11 does not free an Ed25519 signing key (about 0.5 KiB per
signature), so cleanup asks master for a replacement after
processes.cleanup_max_ed25519 Ed25519 signatures: master starts a new
cleanup at once and the old one drains, as at reload. No message is lost
or refused on the way, and every one is signed (checked by dkimpy)."""
import base64
import os
import re
import smtplib
import subprocess
import threading

import dkim

from suite import Suite, make_message, wait_for
from spfzone import unbound_conf


def ed_key(path):
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path],
                   check=True, capture_output=True)
    os.chmod(path, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()


def test_cleanup_replaced_after_ed25519_signatures():
    s = Suite(start=False,
              processes='processes { smtpd = 1; delivery = 2; cleanup_max_ed25519 = 3; }')
    txt = {"e1._domainkey.example.test": ed_key(f"{s.dir}/e1.key")}
    ub = f"{s.dir}/unbound.conf"
    unbound_conf({k: [{"TXT": v}] for k, v in txt.items()}, ub)
    os.chmod(ub, 0o644)
    conf = (s.conf_text + f'dns {{ unbound_config = "{ub}"; timeout = 5s; }}\n'
            f'domain "example.test" {{ dkim {{ selector = "e1"; key = "{s.dir}/e1.key"; }} }}\n')
    with s.start_with_conf(conf) as s:
        # four sessions at once, ten messages each, From: sender@example.test
        # from 127.0.0.1 (mynetworks): each signed. smtpd reuses its
        # connections to cleanup, so replacements happen under them: no
        # message may be refused (a draining cleanup serves what smtpd
        # started and tells it not to start another there)
        refused = []

        def session(k):
            try:
                with s.smtp() as c:
                    c.ehlo("client.example.test")
                    for n in range(10):
                        c.sendmail("sender@example.test", ["bob@example.test"],
                                   make_message(k * 100 + n))
            except smtplib.SMTPException as e:
                refused.append(repr(e))
        threads = [threading.Thread(target=session, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not refused, refused
        got = s.wait_delivered("bob", 40)

        def dnsfunc(name, timeout=5):
            return txt.get(name.decode().rstrip("."), "").encode() or None
        for path in got:
            m = open(path, "rb").read().replace(b"\n", b"\r\n")
            d = dkim.DKIM(m)
            assert d.verify(dnsfunc=dnsfunc), m[:500]
            assert d.signature_fields[b"a"] == b"ed25519-sha256"

        def pids():
            return re.findall(r"postern/cleanup\[(\d+)\]: ready", s.log())
        # 3 signatures each (a drain may sign a few more): several replaced
        wait_for(lambda: len(set(pids())) >= 5, 20, "a fifth cleanup")
        log = s.log()
        assert log.count("asks to be replaced") >= 4, log[-3000:]
        assert "asked master for a new cleanup" in log
        assert "while draining" not in log and "killed by signal" not in log, log[-3000:]
        assert "unexpected data" not in log and "write error" not in log, log[-3000:]
        # the replaced ones have exited; one cleanup runs
        first = pids()[0]
        wait_for(lambda: not os.path.exists(f"/proc/{first}"), 20, "the first cleanup to exit")
