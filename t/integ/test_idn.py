"""Internationalized domain names on the inbound side (RFC 6531, 8616):
the configuration names domains in A-labels ("xn--..."), and an SMTPUTF8
recipient written in U-labels is the same domain: accepted as local, and
delivered into the folder a "%d" template names with the A-labels (before,
bücher.test was no local domain: "554 5.7.1 Relay access denied" from
outside, and a mailbox template refused the UTF-8 name). A name that is no
valid IDN is no local domain. Unicode in a configured domain is refused
with its A-label form in the message. (SPF and DMARC: test_spf_smtpd.py,
test_dmarc.py; MX routing: test_relay_mx.py.)"""
import glob
import os
import smtplib
import time

from suite import Suite, make_message


def test_unicode_recipient_of_a_local_domain():
    s = Suite(mynetworks="[]", local_domains='["localhost", "xn--bcher-kva.test"]',
              start=False)
    s.start_with_conf(s.conf_text.replace(
        f'maildir = "{s.mail}/%u/Maildir"', f'maildir = "{s.mail}/%d/%u/Maildir"'))
    with s:
        c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
        c.ehlo("client.example.test")
        c.sendmail("a@sender.example", ["anna@B\u00fccher.test", "ben@xn--bcher-kva.test"],
                   make_message(1, subject="unicode"), mail_options=["SMTPUTF8"])
        c.mail("a@sender.example", ["SMTPUTF8"])
        code, text = c.rcpt("carl@b\u00fccher\u2028.test")
        assert code == 554 and b"Relay access denied" in text, (code, text)
        c.quit()
        box = os.path.join(s.mail, "xn--bcher-kva.test")
        for user in ("anna", "ben"):
            path = os.path.join(box, user, "Maildir", "new", "*")
            for _ in range(100):
                if glob.glob(path):
                    break
                time.sleep(0.1)
            assert len(glob.glob(path)) == 1, (user, os.listdir(s.mail))
        assert sorted(os.listdir(s.mail)) == ["xn--bcher-kva.test"], os.listdir(s.mail)


def test_unicode_in_a_configured_domain_is_refused_with_its_a_labels():
    s = Suite(local_domains='["localhost", "b\u00fccher.test"]', start=False)
    try:
        r = s.postern("check")
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1, out
        assert "local_domains" in out and 'A-label form: "xn--bcher-kva.test"' in out, out
    finally:
        s.__exit__(None, None, None)
