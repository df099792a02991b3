"""client.ptr end to end: smtpd looks up the client's forward-confirmed
reverse DNS name (lib/dns, libunbound) when a rules file is set, answered
here from the local-data of a test unbound.conf (dns.unbound_config;
nothing leaves the host), and the rules see it."""
import os

from dnszone import dns_conf, write_unbound_conf
from test_rules import rules_dir, rules_suite

RULES = '''
stage mail {
  rule "ptr" {
    if client.ptr == "client.example.test" { return deny(550, "5.7.1", "ptr is client.example.test"); }
    if client.ptr == "" { return deny(550, "5.7.1", "no confirmed ptr"); }
  }
}
'''


def dns_suite(local_data):
    d = rules_dir()
    ub = write_unbound_conf(os.path.join(d, "unbound.conf"), local_data,
                            zones=[("127.in-addr.arpa.", "nodefault")])
    return rules_suite(RULES, d=d, extra_conf=dns_conf(ub))


def mail_reply(s):
    c = s.smtp()
    c.ehlo("client.example.test")
    r = c.mail("a@example.org")
    c.quit()
    return r


def test_client_ptr_confirmed():
    with dns_suite(["1.0.0.127.in-addr.arpa. 300 IN PTR client.example.test.",
                    "client.example.test. 300 IN A 127.0.0.1"]) as s:
        assert mail_reply(s) == (550, b"5.7.1 ptr is client.example.test")


def test_client_ptr_not_confirmed():
    # the PTR name's address is another one: not the client's name
    with dns_suite(["1.0.0.127.in-addr.arpa. 300 IN PTR liar.example.test.",
                    "liar.example.test. 300 IN A 127.0.0.9"]) as s:
        assert mail_reply(s) == (550, b"5.7.1 no confirmed ptr")


def test_client_ptr_none():
    with dns_suite([]) as s:
        assert mail_reply(s) == (550, b"5.7.1 no confirmed ptr")
