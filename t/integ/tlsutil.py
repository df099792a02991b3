"""Helpers for the TLS and AUTH tests: real certificates made with
`openssl req -x509`, users files made with mkpasswd (whois package), a raw
SMTP client that can switch to TLS, and swaks / openssl s_client runners."""
import os
import ssl
import subprocess

from suite import SmtpClient, free_port


def make_cert(dirname, name, cn):
    """Self-signed certificate + key (root-only 0600, like production keys:
    smtpd must read them before it drops root). Returns (cert, key)."""
    cert = os.path.join(dirname, f"{name}.pem")
    key = os.path.join(dirname, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chown(key, 0, 0)
    os.chmod(key, 0o600)
    return cert, key


def tls_conf(dirname, level="may", protocols='["TLSv1.2", "TLSv1.3"]', timeout="10s",
             domains=()):
    """A tls { } block (default certificate CN=mx.example.test) plus a domain
    block with its own certificate for each name in domains."""
    cert, key = make_cert(dirname, "default", "mx.example.test")
    out = (f'tls {{ level = "{level}"; protocols = {protocols}; certificate = "{cert}"; '
           f'key = "{key}"; handshake_timeout = {timeout}; }}\n')
    for d in domains:
        c, k = make_cert(dirname, d, d)
        out += f'domain "{d}" {{ tls {{ certificate = "{c}"; key = "{k}"; }} }}\n'
    return out


def mkpasswd(method, password):
    r = subprocess.run(["mkpasswd", "-m", method, "-s"], input=password.encode(),
                       capture_output=True, check=True)
    return r.stdout.decode().strip()


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw(SmtpClient):
    """The raw SMTP client over a plain or TLS socket (implicit TLS, STARTTLS)."""

    def __init__(self, port, source=None, implicit=False, timeout=20):
        super().__init__(port, source=source, timeout=timeout)
        if implicit:
            self.s = client_context().wrap_socket(self.s)

    def starttls(self, server_hostname=None):
        code, lines = self.cmd("STARTTLS")
        assert code == 220 and lines[0].startswith("220 2.0.0"), lines
        assert self.buf == b"", self.buf
        self.s = client_context().wrap_socket(self.s, server_hostname=server_hostname)
        return self.s


def swaks(port, *args, timeout=60):
    """Run swaks against 127.0.0.1:port; returns CompletedProcess (text)."""
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "20",
                           "--from", "alice@example.test", *args],
                          capture_output=True, text=True, timeout=timeout)


def s_client(port, *args, timeout=30):
    """openssl s_client; stdin closed at once (-brief keeps output short)."""
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input="", capture_output=True, text=True, timeout=timeout)


def listen(*rows):
    """listen { } from (name, port, extra) rows."""
    body = " ".join(f'{n} {{ address = ["127.0.0.1:{p}"]; {x} }}' for n, p, x in rows)
    return f"listen {{ {body} }}"




def tls_suite(extra_listeners=(), smtp_extra="", tls_kw=None, extra_conf="", **kw):
    """A started Suite whose smtp listener (s.port) gets smtp_extra, plus
    listeners [(name, extra)] on free ports (s.ports[name]), a tls { } block
    made by tls_conf(**tls_kw) and extra_conf (a string, or a function of
    the not yet started suite returning one). Certificates live in s.dir."""
    from suite import Suite
    s = Suite(start=False, **kw)
    s.ports = {name: free_port() for name, _ in extra_listeners}
    default = f'listen {{ smtp {{ address = ["127.0.0.1:{s.port}"]; }} }}'
    assert default in s.conf_text
    rows = [("smtp", s.port, smtp_extra)] + [(n, s.ports[n], x) for n, x in extra_listeners]
    text = s.conf_text.replace(default, listen(*rows))
    if callable(extra_conf):
        extra_conf = extra_conf(s)      # may write files into s.dir first
    text += tls_conf(s.dir, **(tls_kw or {})) + extra_conf + "\n"
    return s.start_with_conf(text)


__all__ = ["make_cert", "tls_conf", "mkpasswd", "Raw", "swaks", "s_client", "listen",
           "free_port", "client_context", "tls_suite"]
