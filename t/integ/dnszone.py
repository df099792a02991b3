"""The test resolver (TESTING.md "DNS without the Internet"): an
unbound.conf that libunbound reads through dns.unbound_config, answering
from its local-data; the root zone is static, so nothing leaves the host.
The one writer of such files for the integration tests (spfzone.py builds
its zones on it)."""
import os


def unbound_text(local_data, zones=()):
    """local_data: resource records as text ("a.test. 300 IN A 127.0.0.1");
    zones: (name, kind) local-zone lines besides the static root, e.g.
    ("127.in-addr.arpa.", "nodefault") for the reverse names of loopback."""
    lines = ['server:', '  module-config: "iterator"', '  local-zone: "." static']
    lines += [f'  local-zone: "{name}" {kind}' for name, kind in zones]
    # single quotes: a TXT record holds double ones
    lines += [f'  local-data: "{rr}"' if "'" in rr else f"  local-data: '{rr}'"
              for rr in local_data]
    return "\n".join(lines) + "\n"


def write_unbound_conf(path, local_data, zones=()):
    """unbound_text() written to path, readable by the postern user."""
    with open(path, "w") as f:
        f.write(unbound_text(local_data, zones))
    os.chmod(path, 0o644)
    return path


def dns_conf(unbound_conf, timeout="5s", dnssec=None):
    """postern.conf's dns block for the resolver of unbound_conf."""
    sec = "" if dnssec is None else f' dnssec = {"true" if dnssec else "false"};'
    return f'dns {{ unbound_config = "{unbound_conf}";{sec} timeout = {timeout}; }}'
