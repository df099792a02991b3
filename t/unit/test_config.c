/*
 * test_config.c - postern.conf loading (lib/config*.c): syntax, every kind
 * of error with its file:line:col, defaults, the PRODUCT.md example, value
 * parsers (sizes, durations, networks) and relative paths / includes.
 * Config files are written into a private mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "config/config.h"
#include "unit_tmpdir.h"

static char tmpdir[] = "/tmp/test_config.XXXXXX";

static char *path_of(const char *name)
{
    buf_t b;
    buf_init(&b, 64);
    buf_printf(&b, "%s/%s", tmpdir, name);
    char *r = buf_steal(&b);
    buf_free(&b);
    return r;
}

static void write_file(const char *name, const char *text)
{
    char *p = path_of(name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0700);                      /* one level of sub-directory */
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

/* Load text as main.conf; errors come back formatted, tmpdir prefix removed,
 * one per line. */
static struct config *load(const char *text, buf_t *errout)
{
    struct config_errors errs = { 0 };
    write_file("main.conf", text);
    char *p = path_of("main.conf");
    struct config *c = config_load(p, &errs);
    size_t dl = strlen(tmpdir) + 1;
    for (int i = 0; i < errs.n; i++) {
        buf_t b;
        buf_init(&b, 64);
        config_error_format(&b, &errs.v[i]);
        buf_append_str(errout, strncmp(b.data, tmpdir, dl - 1) == 0 ? b.data + dl : b.data);
        buf_append_char(errout, '\n');
        buf_free(&b);
    }
    if (errs.n)
        assert_null(c);
    config_errors_free(&errs);
    free(p);
    return c;
}

static struct config *load_ok(const char *text)
{
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load(text, &e);
    if (c == NULL)
        print_error("unexpected errors:\n%s", e.data);
    assert_non_null(c);
    buf_free(&e);
    return c;
}

/* The config must fail, and one error line must be exactly `want`. */
static void expect_error(const char *text, const char *want)
{
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load(text, &e);
    assert_null(c);
    int found = 0;
    for (char *line = e.data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        found |= strcmp(line, want) == 0;
        *nl = '\n';
    }
    if (!found)
        print_error("wanted: %s\ngot:\n%s", want, e.data);
    assert_true(found);
    buf_free(&e);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- metrics endpoint against the listeners -------------------------------- */
static void test_metrics_not_on_a_listener_port(void **st)
{
    (void)st;
    /* the same address, or the wildcard of its family, takes the port */
    expect_error("listen { smtp { address = [\"127.0.0.1:2525\"]; } }\n"
                 "metrics { address = \"127.0.0.1:2525\"; }\n",
                 "main.conf:2:21: metrics.address: \"127.0.0.1:2525\" takes the port of "
                 "listen.smtp's address \"127.0.0.1:2525\"");
    expect_error("listen { mx { address = [\"[::1]:26\", \"0.0.0.0:9153\"]; } }\n"
                 "metrics { address = \"127.0.0.1:9153\"; }\n",
                 "main.conf:2:21: metrics.address: \"127.0.0.1:9153\" takes the port of "
                 "listen.mx's address \"0.0.0.0:9153\"");
    expect_error("listen { smtp { address = [\"[::]:9153\"]; } }\n"
                 "metrics { address = \"[::1]:9153\"; }\n",
                 "main.conf:2:21: metrics.address: \"[::1]:9153\" takes the port of "
                 "listen.smtp's address \"[::]:9153\"");
    /* the default listener is 0.0.0.0:25 */
    expect_error("metrics { address = \"127.0.0.1:25\"; }\n",
                 "main.conf:1:21: metrics.address: \"127.0.0.1:25\" takes the port of "
                 "listen.smtp's address \"0.0.0.0:25\"");
    /* another port, another address, another family (master binds v6
     * listeners IPV6_V6ONLY, so [::]:9153 leaves 127.0.0.1:9153 free): fine */
    const char *ok[] = {
        "listen { smtp { address = [\"0.0.0.0:25\"]; } }\nmetrics { address = \"127.0.0.1:9153\"; }\n",
        "listen { smtp { address = [\"127.0.0.2:9153\"]; } }\nmetrics { address = \"127.0.0.1:9153\"; }\n",
        "listen { smtp { address = [\"0.0.0.0:9153\"]; } }\nmetrics { address = \"[::1]:9153\"; }\n",
        "listen { smtp { address = [\"[::]:9153\"]; } }\nmetrics { address = \"127.0.0.1:9153\"; }\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        config_free(load_ok(ok[i]));
}

/* ---- defaults and full example ----------------------------------------- */

static void test_defaults(void **st)
{
    (void)st;
    struct config *c = load_ok("# nothing but a comment\n");
    char host[256] = "";
    gethostname(host, sizeof(host));
    assert_string_equal(c->hostname, host);
    assert_string_equal(c->spool, "/var/spool/postern");
    assert_string_equal(c->user, "postern");
    assert_null(c->group);
    /* root's run directory (the spool when not root: one user owns all) */
    if (geteuid() == 0) {
        assert_string_equal(c->run_dir, "/run/postern");
        assert_string_equal(c->pid_file, "/run/postern/postern.pid");
    } else {
        assert_string_equal(c->run_dir, "/var/spool/postern");
        assert_string_equal(c->pid_file, "/var/spool/postern/postern.pid");
    }
    assert_int_equal(c->log_level, LOG_L_INFO);
    assert_int_equal(c->log_json, 0);
    assert_int_equal(c->message_size, 50 * 1024 * 1024);
    assert_int_equal(c->recipients, 1000);
    assert_int_equal(c->sessions, 10000);
    assert_int_equal(c->sessions_per_ip, 50);
    assert_int_equal(c->idle_timeout, 300);
    assert_int_equal(c->command_timeout, 300);
    assert_int_equal(c->data_timeout, 600);
    assert_int_equal(c->max_errors, 20);
    assert_int_equal(c->tls_level, TLSL_MAY);
    assert_int_equal(c->tls_protocols.n, 2);
    assert_string_equal(c->tls_protocols.v[0], "TLSv1.2");
    assert_string_equal(c->tls_protocols.v[1], "TLSv1.3");
    assert_null(c->tls_certificate);
    assert_null(c->tls_key);
    assert_int_equal(c->tls_handshake_timeout, 10);
    assert_null(c->dns_unbound_config);
    assert_int_equal(c->dns_dnssec, 1);
    assert_int_equal(c->mynetworks.n, 2);
    assert_int_equal(c->mynetworks.v[0].prefix, 104);
    assert_int_equal(c->mynetworks.v[1].prefix, 128);
    assert_null(c->auth_users);
    assert_int_equal(c->auth_plaintext_without_tls, 0);
    assert_int_equal(c->local_domains.n, 0);
    assert_int_equal(c->local_mailbox, MBOX_MAILDIR);
    assert_string_equal(c->local_maildir, "~/Maildir");
    assert_string_equal(c->local_mbox, "/var/mail/%u");
    assert_string_equal(c->local_aliases, "/etc/aliases");
    assert_int_equal(c->ndomains, 0);
    assert_null(c->relayhost);
    assert_int_equal(c->smtp_port, 25);
    static const int retry[] = { 300, 900, 1800, 3600, 7200, 14400 };
    assert_int_equal(c->nretry, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(c->retry[i], retry[i]);
    assert_int_equal(c->lifetime, 5 * 86400);
    assert_int_equal(c->delay_warning, 4 * 3600);
    assert_null(c->rules);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->smtpd_processes, cpus < 1 ? 1 : cpus);
    assert_int_equal(c->cleanup_threads, 8);
    assert_int_equal(c->delivery_processes, 4);
    assert_int_equal(c->nlisteners, 1);
    assert_string_equal(c->listeners[0].name, "smtp");
    assert_int_equal(c->listeners[0].address.n, 1);
    assert_string_equal(c->listeners[0].address.v[0], "0.0.0.0:25");
    assert_int_equal(c->listeners[0].tls, TLSM_MAY);
    assert_int_equal(c->listeners[0].auth_required, 0);
    assert_int_equal(c->listeners[0].auth_offered, 1);
    assert_non_null(strstr(c->path, "/main.conf"));
    assert_true(c->path[0] == '/');
    config_free(c);
}

static const char product_example[] =
    "hostname = \"mx.example.test\";\n"
    "spool    = \"/var/spool/postern\";\n"
    "user     = \"postern\";                 # every child but master runs as this\n"
    "log      = { level = \"info\"; format = \"text\"; }   # text | json\n"
    "\n"
    "listen {\n"
    "  smtp        { address = [\"0.0.0.0:25\", \"[::]:25\"]; }\n"
    "  submission  { address = [\"0.0.0.0:587\"]; tls = \"required\"; auth = \"required\"; }\n"
    "  submissions { address = [\"0.0.0.0:465\"]; tls = \"implicit\"; auth = \"required\"; }\n"
    "}\n"
    "\n"
    "limits { message_size = 50M; recipients = 1000; sessions = 10000;\n"
    "         sessions_per_ip = 50; idle_timeout = 300s; }\n"
    "\n"
    "tls {\n"
    "  level = \"may\";                      # none | may | encrypt (inbound, port 25)\n"
    "  protocols = [\"TLSv1.2\", \"TLSv1.3\"];\n"
    "  certificate = \"/etc/postern/tls/mx.pem\";  key = \"/etc/postern/tls/mx.key\";\n"
    "  handshake_timeout = 10s;\n"
    "}\n"
    "\n"
    "dns { unbound_config = \"\";            # optional unbound.conf-syntax file\n"
    "      dnssec = true; }\n"
    "\n"
    "mynetworks = [\"127.0.0.0/8\", \"[::1]/128\"];    # may relay without AUTH\n"
    "auth { users = \"/etc/postern/users\";\n"
    "       plaintext_without_tls = false; }\n"
    "\n"
    "local_domains = [\"localhost\", \"example.test\"];\n"
    "local { mailbox = \"maildir\";          # maildir | mbox\n"
    "        maildir = \"~/Maildir\";        # or a template: \"/var/vmail/%d/%u/Maildir\"\n"
    "        aliases = \"/etc/aliases\"; }\n"
    "\n"
    "domain \"tenant.example\" {             # virtual / tenant domains\n"
    "  mailboxes = \"/var/vmail/%d/%u/Maildir\"; users = \"/etc/postern/tenant.users\";\n"
    "  dkim { selector = \"s1\"; key = \"/etc/postern/dkim/tenant.example.s1.key\"; }\n"
    "  tls  { certificate = \"...\"; key = \"...\"; }   # chosen by SNI\n"
    "  limits { messages_per_hour = 10000; }\n"
    "}\n"
    "\n"
    "delivery { relayhost = \"\";            # \"[host]:port\" smarthost\n"
    "           smtp_port = 25;            # outbound port\n"
    "           retry = [5m, 15m, 30m, 1h, 2h, 4h]; lifetime = 5d; delay_warning = 4h; }\n"
    "\n"
    "rules = \"/etc/postern/rules/main.rules\";\n";

static void test_product_example(void **st)
{
    (void)st;
    struct config *c = load_ok(product_example);
    assert_string_equal(c->hostname, "mx.example.test");
    assert_int_equal(c->nlisteners, 3);
    assert_string_equal(c->listeners[0].name, "smtp");
    assert_int_equal(c->listeners[0].address.n, 2);
    assert_string_equal(c->listeners[0].address.v[1], "[::]:25");
    assert_int_equal(c->listeners[0].tls, TLSM_MAY);
    assert_string_equal(c->listeners[1].name, "submission");
    assert_int_equal(c->listeners[1].tls, TLSM_REQUIRED);
    assert_int_equal(c->listeners[1].auth_required, 1);
    assert_int_equal(c->listeners[1].auth_offered, 1);
    assert_int_equal(c->listeners[2].tls, TLSM_IMPLICIT);
    assert_string_equal(c->tls_certificate, "/etc/postern/tls/mx.pem");
    assert_string_equal(c->tls_key, "/etc/postern/tls/mx.key");
    assert_null(c->dns_unbound_config);
    assert_string_equal(c->auth_users, "/etc/postern/users");
    assert_int_equal(c->local_domains.n, 2);
    assert_int_equal(c->ndomains, 1);
    const struct domain_conf *d = config_domain(c, "Tenant.Example");
    assert_non_null(d);
    assert_string_equal(d->mailboxes, "/var/vmail/%d/%u/Maildir");
    assert_string_equal(d->users, "/etc/postern/tenant.users");
    assert_string_equal(d->dkim_selector, "s1");
    assert_string_equal(d->dkim_key, "/etc/postern/dkim/tenant.example.s1.key");
    assert_int_equal(d->messages_per_hour, 10000);
    char *dots = path_of("...");     /* relative, so resolved against the file's dir */
    assert_string_equal(d->tls_certificate, dots);
    free(dots);
    assert_null(c->relayhost);
    assert_string_equal(c->rules, "/etc/postern/rules/main.rules");
    assert_true(config_is_local_domain(c, "localhost"));
    assert_true(config_is_local_domain(c, "EXAMPLE.test"));
    assert_true(config_is_local_domain(c, "example.test."));
    assert_true(config_is_local_domain(c, "tenant.EXAMPLE"));
    assert_false(config_is_local_domain(c, "example.org"));
    assert_false(config_is_local_domain(c, "test"));
    assert_false(config_is_local_domain(c, ""));
    assert_null(config_domain(c, "example.test"));
    config_free(c);
}

static void test_repo_confs(void **st)
{
    (void)st;
    /* conf/ is reached from the test's cwd (the repository) when present. */
    struct config_errors errs = { 0 };
    if (access("conf/dev.conf", R_OK) != 0)
        skip();
    struct config *c = config_load("conf/dev.conf", &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    buf_t want;
    buf_init(&want, 64);
    buf_printf(&want, "%s/run/spool", cwd);
    assert_string_equal(c->spool, want.data);
    buf_reset(&want);
    buf_printf(&want, "%s/run/mail/%%u/Maildir", cwd);
    assert_string_equal(c->local_maildir, want.data);
    assert_int_equal(c->smtpd_processes, 1);
    assert_string_equal(c->listeners[0].address.v[0], "127.0.0.1:2525");
    buf_free(&want);
    config_free(c);
    c = config_load("conf/postern.conf", &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    config_free(c);
}

/* ---- syntax ------------------------------------------------------------- */

static void test_syntax_block_semicolon(void **st)
{
    (void)st;
    /* the last value in a block still needs its ';' */
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load("log { level = debug; format = json }\n", &e);
    assert_null(c);
    assert_string_equal(e.data, "main.conf:1:35: log.format: missing ';' after value\n");
    buf_free(&e);
}

static void test_syntax_ok(void **st)
{
    (void)st;
    struct config *c = load_ok(
        "# comment\n"
        "limits = { recipients = 7; };\n"
        "log { level = debug; format = json; }\n"
        "local_domains = [\"a.test\", b.test, ];   # trailing comma\n"
        "delivery { relayhost = \"[smtp.example.com]:587\"; }\n"
        "dns { unbound_config = \"u\\\\n\\\"q\\\".conf\"; }\n"
        ";;\n");
    assert_int_equal(c->recipients, 7);
    assert_int_equal(c->log_level, LOG_L_DEBUG);
    assert_int_equal(c->log_json, 1);
    assert_int_equal(c->local_domains.n, 2);
    assert_string_equal(c->local_domains.v[1], "b.test");
    assert_string_equal(c->relayhost, "[smtp.example.com]:587");
    assert_non_null(strstr(c->dns_unbound_config, "/u\\n\"q\".conf"));
    config_free(c);
    c = load_ok("local_domains = [];\nmynetworks = [];\n");
    assert_int_equal(c->local_domains.n, 0);
    assert_int_equal(c->mynetworks.n, 0);
    config_free(c);
    c = load_ok("local_domains = \"only.test\";\n");   /* one value = one-item list */
    assert_int_equal(c->local_domains.n, 1);
    config_free(c);
}

static void test_err_missing_semicolon(void **st)
{
    (void)st;
    expect_error("user = \"a\"\nhostname = \"b\";\n",
                 "main.conf:1:11: user: missing ';' after value");
    expect_error("limits {\n  message_size = 50M\n  recipients = 3;\n}\n",
                 "main.conf:2:21: limits.message_size: missing ';' after value");
}

static void test_err_unterminated_string(void **st)
{
    (void)st;
    expect_error("user = \"postern;\nhostname = \"b\";\n",
                 "main.conf:1:8: unterminated string");
    expect_error("user = \"bad \\q escape\";\n",
                 "main.conf:1:13: unknown escape \"\\q\" in string (use \\\" \\\\ \\n \\t)");
}

static void test_err_braces(void **st)
{
    (void)st;
    expect_error("user = \"a\";\nlimits {\n  recipients = 5;\n",
                 "main.conf:2:8: limits: '{' is never closed");
    expect_error("limits { recipients = 5; }\n}\nuser = \"x\";\n",
                 "main.conf:2:1: unexpected '}' (no block is open)");
    expect_error("mynetworks = [\"10.0.0.0/8\";\n",
                 "main.conf:1:14: mynetworks: '[' is never closed");
    expect_error("user = ;\n", "main.conf:1:8: user: expected a value, got ';'");
    expect_error("user \"x\";\n",
                 "main.conf:1:1: user: expected '=' after key (a label must be followed by '{')");
    expect_error("user = \"a\";\n@ = 1;\n", "main.conf:2:1: @: unknown key \"@\"");
    expect_error("user = \"a\";\n! = 1;\n", "main.conf:2:1: unexpected character '!'");
}

static void test_err_depth(void **st)
{
    (void)st;
    buf_t t;
    buf_init(&t, 256);
    for (int i = 0; i < 20; i++)
        buf_append_str(&t, "a { ");
    for (int i = 0; i < 20; i++)
        buf_append_str(&t, "} ");
    buf_append_char(&t, '\n');
    expect_error(t.data,
                 "main.conf:1:67: a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nested too deeply (limit 16 levels)");
    buf_free(&t);
}

static void test_err_unknown_key(void **st)
{
    (void)st;
    expect_error("limts { message_size = 1M; }\n",
                 "main.conf:1:1: limts: unknown key \"limts\" (did you mean \"limits\"?)");
    expect_error("limits {\n  sesions = 5;\n}\n",
                 "main.conf:2:3: limits.sesions: unknown key \"sesions\" (did you mean \"sessions\"?)");
    expect_error("message_size = 5M;\n",
                 "main.conf:1:1: message_size: unknown key \"message_size\" "
                 "(did you mean \"limits.message_size\"?)");
    expect_error("zzzzzz = 1;\n", "main.conf:1:1: zzzzzz: unknown key \"zzzzzz\"");
    expect_error("listen { smtp { adress = [\"0.0.0.0:25\"]; } }\n",
                 "main.conf:1:17: listen.smtp.adress: unknown key \"adress\" (did you mean \"address\"?)");
    expect_error("domian \"x.test\" { }\n",
                 "main.conf:1:1: domian: unexpected label \"x.test\" (only domain and transport "
                 "blocks take one)");
}

static void test_err_wrong_type(void **st)
{
    (void)st;
    expect_error("limits { message_size = abc; }\n",
                 "main.conf:1:25: limits.message_size: expected a size like 50M, got \"abc\"");
    expect_error("limits { idle_timeout = 5x; }\n",
                 "main.conf:1:25: limits.idle_timeout: expected a duration like 300s or 5m, got \"5x\"");
    expect_error("limits { recipients = 1.5; }\n",
                 "main.conf:1:23: limits.recipients: expected an integer, got \"1.5\"");
    expect_error("dns { dnssec = yes; }\n",
                 "main.conf:1:16: dns.dnssec: expected true or false, got \"yes\"");
    expect_error("user = [\"a\"];\n", "main.conf:1:8: user: expected a string, got a list");
    expect_error("limits = 5;\n", "main.conf:1:10: limits: expected a block { ... }, got a value");
    expect_error("delivery { retry = [5m, soon]; }\n",
                 "main.conf:1:25: delivery.retry: expected a duration like 300s or 5m, got \"soon\"");
}

static void test_err_range(void **st)
{
    (void)st;
    expect_error("limits { recipients = 0; }\n",
                 "main.conf:1:23: limits.recipients: \"0\" is out of range (1..1000000)");
    expect_error("delivery { smtp_port = 70000; }\n",
                 "main.conf:1:24: delivery.smtp_port: \"70000\" is out of range (1..65535)");
    expect_error("limits { message_size = 10; }\n",
                 "main.conf:1:25: limits.message_size: \"10\" is out of range (1k..1T)");
    expect_error("limits { idle_timeout = 2d; }\n",
                 "main.conf:1:25: limits.idle_timeout: \"2d\" is out of range (1s..86400s)");
}

static void test_err_enum(void **st)
{
    (void)st;
    expect_error("tls { level = \"sometimes\"; }\n",
                 "main.conf:1:15: tls.level: expected one of \"none\", \"may\", \"encrypt\", got \"sometimes\"");
    expect_error("listen { smtp { address = [\"0.0.0.0:25\"]; tls = \"maybe\"; } }\n",
                 "main.conf:1:49: listen.smtp.tls: expected one of \"none\", \"may\", \"required\", "
                 "\"implicit\", got \"maybe\"");
    expect_error("local { mailbox = \"pst\"; }\n",
                 "main.conf:1:19: local.mailbox: expected one of \"maildir\", \"mbox\", \"discard\", got \"pst\"");
    expect_error("tls { protocols = [\"SSLv3\"]; }\n",
                 "main.conf:1:20: tls.protocols: expected one of \"TLSv1\", \"TLSv1.1\", \"TLSv1.2\", "
                 "\"TLSv1.3\", got \"SSLv3\"");
}

static void test_err_cidr_and_address(void **st)
{
    (void)st;
    expect_error("mynetworks = [\"10.0.0.0/8\", \"300.1.1.1/8\"];\n",
                 "main.conf:1:29: mynetworks: expected a network like 10.0.0.0/8 or [::1]/128, "
                 "got \"300.1.1.1/8\"");
    expect_error("mynetworks = [\"::1/129\"];\n",
                 "main.conf:1:15: mynetworks: expected a network like 10.0.0.0/8 or [::1]/128, got \"::1/129\"");
    expect_error("listen {\n  smtp { address = [\"::1:25\"]; }\n}\n",
                 "main.conf:2:21: listen.smtp.address: expected an address like 0.0.0.0:25 or [::]:25, "
                 "got \"::1:25\"");
    expect_error("listen { smtp { address = [\"1.2.3.4\"]; } }\n",
                 "main.conf:1:28: listen.smtp.address: expected an address like 0.0.0.0:25 or [::]:25, "
                 "got \"1.2.3.4\"");
    expect_error("listen { smtp { tls = \"none\"; } }\n",
                 "main.conf:1:10: listen.smtp: missing address = [\"host:port\", ...]");
    expect_error("listen { }\n", "main.conf: listen: no listener defined");
    expect_error("delivery { relayhost = \"[x]:0\"; }\n",
                 "main.conf:1:24: delivery.relayhost: expected a relay like [smtp.example.com]:587, got \"[x]:0\"");
}

static void test_err_duplicate(void **st)
{
    (void)st;
    expect_error("user = \"a\";\nuser = \"b\";\n",
                 "main.conf:2:1: user: duplicate key (already set at line 1, column 1)");
    /* blocks may repeat; their keys may not */
    expect_error("limits { recipients = 1; }\nlimits { recipients = 2; }\n",
                 "main.conf:2:10: limits.recipients: duplicate key (already set at line 1, column 10)");
    expect_error("listen { a { address = \"127.0.0.1:1\"; } a { address = \"127.0.0.1:2\"; } }\n",
                 "main.conf:1:41: listen.a: duplicate listener");
    expect_error("domain \"x.test\" { }\ndomain \"X.TEST\" { }\n",
                 "main.conf:2:1: domain.X.TEST: duplicate domain block");
}

static void test_err_cross_checks(void **st)
{
    (void)st;
    expect_error("tls { certificate = \"/c.pem\"; }\n",
                 "main.conf:1:7: tls.certificate: tls.certificate is set but tls.key is not: both are needed");
    expect_error("tls { level = encrypt; }\n",
                 "main.conf:1:15: tls.level: level \"encrypt\" needs tls.certificate and tls.key");
    expect_error("listen {\n  sub { address = \"0.0.0.0:587\"; tls = implicit; auth = none; }\n}\n",
                 "main.conf:2:3: listen.sub: tls = \"implicit\" needs tls.certificate and tls.key");
    expect_error("listen {\n  sub { address = \"0.0.0.0:587\"; auth = required; }\n}\n",
                 "main.conf:2:3: listen.sub: auth = \"required\" needs auth.users or a domain's users");
    expect_error("domain \"d.test\" { dkim { key = \"k\"; } }\n",
                 "main.conf:1:26: domain.d.test.dkim.key: dkim.key is set but dkim.selector is not: both are needed");
    expect_error("spool = \"\";\n", "main.conf:1:9: spool: must not be empty");
    expect_error("domain { }\n", "main.conf:1:1: domain: expected domain \"example.com\" { ... }");
    expect_error("local_domains = [\"a.test\", \"\"];\n",
                 "main.conf:1:28: local_domains: empty string in list");
    expect_error("local_domains = [\"a b\"];\n",
                 "main.conf:1:18: local_domains: expected a domain name like mx.example.com, got \"a b\"");
    expect_error("delivery { retry = []; }\n", "main.conf:1:20: delivery.retry: must not be empty");
    expect_error("listen { smtp { address = \"127.0.0.1:25\"; auth = \"maybe\"; } }\n",
                 "main.conf:1:50: listen.smtp.auth: expected one of \"none\", \"optional\", "
                 "\"required\", got \"maybe\"");
}

static void test_errors_collected(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load("limits { recipients = 0; sessions = x; }\n"
                            "user = \"a\"\n"
                            "bogus = 1;\n"
                            "tls { level = \"x\"; }\n", &e);
    assert_null(c);
    assert_int_equal(count_lines(e.data), 5);
    /* in file order */
    assert_string_equal(e.data,
        "main.conf:1:23: limits.recipients: \"0\" is out of range (1..1000000)\n"
        "main.conf:1:37: limits.sessions: expected an integer, got \"x\"\n"
        "main.conf:2:11: user: missing ';' after value\n"
        "main.conf:3:1: bogus: unknown key \"bogus\"\n"
        "main.conf:4:15: tls.level: expected one of \"none\", \"may\", \"encrypt\", got \"x\"\n");
    buf_free(&e);
}

static void test_error_format(void **st)
{
    (void)st;
    struct config_error e = { "f.conf", 3, 7, "limits.sessions", "bad" };
    buf_t b;
    buf_init(&b, 64);
    config_error_format(&b, &e);
    assert_string_equal(b.data, "f.conf:3:7: limits.sessions: bad");
    buf_reset(&b);
    e.key = "";
    config_error_format(&b, &e);
    assert_string_equal(b.data, "f.conf:3:7: bad");
    buf_free(&b);
}

static void test_missing_file(void **st)
{
    (void)st;
    struct config_errors errs = { 0 };
    char *p = path_of("does-not-exist.conf");
    assert_null(config_load(p, &errs));
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.v[0].line, 0);
    assert_non_null(strstr(errs.v[0].msg, "No such file"));
    config_errors_free(&errs);
    assert_null(config_load(p, NULL));      /* errors only logged */
    free(p);
}

static void test_load_buffer(void **st)
{
    (void)st;
    struct config_errors errs = { 0 };
    const char text[] = "spool = \"sp\";\nuser = \"u\";\n";
    struct config *c = config_load_buffer("/etc/x/y.conf", text, sizeof(text) - 1, &errs);
    assert_non_null(c);
    assert_string_equal(c->spool, "/etc/x/sp");
    config_free(c);
    c = config_load_buffer("/etc/x/y.conf", "user = \"a\0b\";", 13, &errs);
    assert_null(c);
    assert_true(errs.n >= 1);
    config_errors_free(&errs);
}

/* ---- includes and relative paths ---------------------------------------- */

static void test_include_glob(void **st)
{
    (void)st;
    write_file("conf.d/10-a.conf", "domain \"a.test\" { users = \"a.users\"; }\n");
    write_file("conf.d/20-b.conf", "domain \"b.test\" { }\nlocal_domains = [\"l.test\"];\n");
    write_file("conf.d/skip.txt", "garbage garbage\n");
    struct config *c = load_ok("include \"conf.d/*.conf\";\ninclude \"none.d/*.conf\";\n");
    assert_int_equal(c->ndomains, 2);
    assert_string_equal(c->domains[0].name, "a.test");
    assert_string_equal(c->domains[1].name, "b.test");
    char *p = path_of("conf.d/a.users");       /* relative to the included file */
    assert_string_equal(c->domains[0].users, p);
    free(p);
    assert_true(config_is_local_domain(c, "l.test"));
    config_free(c);
    /* errors inside an included file name that file */
    write_file("conf.d/30-c.conf", "\n  limits { recipients = none; }\n");
    char *inc = path_of("conf.d/30-c.conf");
    buf_t want;
    buf_init(&want, 64);
    buf_printf(&want, "%s:2:25: limits.recipients: expected an integer, got \"none\"", inc + strlen(tmpdir) + 1);
    expect_error("include \"conf.d/*.conf\";\n", want.data);
    buf_free(&want);
    unlink(inc);
    free(inc);
}

static void test_include_missing(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    assert_null(load("include \"missing.conf\";\n", &e));
    assert_non_null(strstr(e.data, "main.conf:1:9: include: cannot include "));
    assert_non_null(strstr(e.data, "missing.conf: No such file or directory"));
    buf_free(&e);
}

static void test_include_cycle(void **st)
{
    (void)st;
    write_file("cyc/a.conf", "include \"b.conf\";\n");
    write_file("cyc/b.conf", "user = \"x\";\ninclude \"a.conf\";\n");
    buf_t e;
    buf_init(&e, 64);
    assert_null(load("include \"cyc/a.conf\";\n", &e));
    assert_int_equal(count_lines(e.data), 1);
    assert_non_null(strstr(e.data, "cyc/b.conf:2:1: include cycle: "));
    buf_reset(&e);
    assert_null(load("include \"main.conf\";\n", &e));   /* including itself */
    assert_non_null(strstr(e.data, "main.conf:1:1: include cycle: "));
    buf_free(&e);
}

static void test_relative_paths(void **st)
{
    (void)st;
    struct config *c = load_ok(
        "spool = \"../spool/./q\";\n"
        "tls { certificate = \"tls/c.pem\"; key = \"/abs/k.pem\"; }\n"
        "local { maildir = \"~/Mail\"; mbox = \"mb/%u\"; }\n"
        "rules = \"main.rules\";\n");
    char *dir = xstrdup(tmpdir);
    *strrchr(dir, '/') = '\0';                   /* tmpdir's parent */
    buf_t want;
    buf_init(&want, 64);
    buf_printf(&want, "%s/spool/q", dir);
    assert_string_equal(c->spool, want.data);
    buf_reset(&want);
    if (geteuid() == 0)
        buf_append_str(&want, "/run/postern/postern.pid");
    else
        buf_printf(&want, "%s/spool/q/postern.pid", dir);
    assert_string_equal(c->pid_file, want.data);
    buf_reset(&want);
    buf_printf(&want, "%s/tls/c.pem", tmpdir);
    assert_string_equal(c->tls_certificate, want.data);
    assert_string_equal(c->tls_key, "/abs/k.pem");
    assert_string_equal(c->local_maildir, "~/Mail");
    buf_reset(&want);
    buf_printf(&want, "%s/mb/%%u", tmpdir);
    assert_string_equal(c->local_mbox, want.data);
    buf_reset(&want);
    buf_printf(&want, "%s/main.rules", tmpdir);
    assert_string_equal(c->rules, want.data);
    buf_free(&want);
    free(dir);
    config_free(c);
}

/* ---- value parsers ------------------------------------------------------- */

static void test_sizes(void **st)
{
    (void)st;
    int64_t v;
    assert_int_equal(config_parse_size("1024", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(config_parse_size("10k", &v), 0);
    assert_int_equal(v, 10240);
    assert_int_equal(config_parse_size("50M", &v), 0);
    assert_int_equal(v, 50LL << 20);
    assert_int_equal(config_parse_size("1G", &v), 0);
    assert_int_equal(v, 1LL << 30);
    assert_int_equal(config_parse_size("2g", &v), 0);
    assert_int_equal(v, 2LL << 30);
    assert_int_equal(config_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(config_parse_size("", &v), -1);
    assert_int_equal(config_parse_size("M", &v), -1);
    assert_int_equal(config_parse_size("-1", &v), -1);
    assert_int_equal(config_parse_size("5X", &v), -1);
    assert_int_equal(config_parse_size("5 M", &v), -1);
    assert_int_equal(config_parse_size("99999999999999999999", &v), -1);
    assert_int_equal(config_parse_size("9999999999999T", &v), -1);
}

static void test_durations(void **st)
{
    (void)st;
    int64_t v;
    assert_int_equal(config_parse_duration("300", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(config_parse_duration("300s", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(config_parse_duration("5m", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(config_parse_duration("4h", &v), 0);
    assert_int_equal(v, 14400);
    assert_int_equal(config_parse_duration("5d", &v), 0);
    assert_int_equal(v, 432000);
    assert_int_equal(config_parse_duration("1h30m", &v), 0);
    assert_int_equal(v, 5400);
    assert_int_equal(config_parse_duration("", &v), -1);
    assert_int_equal(config_parse_duration("h", &v), -1);
    assert_int_equal(config_parse_duration("5x", &v), -1);
    assert_int_equal(config_parse_duration("1h30", &v), -1);
    assert_int_equal(config_parse_duration("-5s", &v), -1);
    assert_int_equal(config_parse_duration("99999999999999999w", &v), -1);
}

static void sa4(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
}

static void sa6(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
}

static void test_cidr(void **st)
{
    (void)st;
    struct cidr n[4];
    static const unsigned char mapped10[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10 };
    assert_int_equal(cidr_parse("10.0.0.0/8", &n[0]), 0);
    assert_int_equal(n[0].prefix, 104);
    assert_memory_equal(n[0].addr, mapped10, 16);
    assert_int_equal(cidr_parse("[::1]/128", &n[1]), 0);
    assert_int_equal(n[1].prefix, 128);
    assert_int_equal(n[1].addr[15], 1);
    assert_int_equal(cidr_parse("2001:db8::/32", &n[2]), 0);
    assert_int_equal(n[2].prefix, 32);
    assert_int_equal(cidr_parse("192.168.1.7", &n[3]), 0);
    assert_int_equal(n[3].prefix, 128);
    struct cidr x;
    assert_int_equal(cidr_parse("::1/128", &x), 0);
    assert_int_equal(cidr_parse("::1", &x), 0);
    assert_int_equal(cidr_parse("10.1.2.3/8", &x), 0);     /* host bits are masked */
    assert_memory_equal(x.addr, mapped10, 16);
    assert_int_equal(cidr_parse("10.0.0.0/33", &x), -1);
    assert_int_equal(cidr_parse("::/129", &x), -1);
    assert_int_equal(cidr_parse("10.0.0.0/", &x), -1);
    assert_int_equal(cidr_parse("10.0.0.0/-1", &x), -1);
    assert_int_equal(cidr_parse("[10.0.0.0]/8", &x), -1);
    assert_int_equal(cidr_parse("", &x), -1);
    assert_int_equal(cidr_parse("example.com", &x), -1);
    assert_int_equal(cidr_parse("[::1", &x), -1);

    struct cidrlist l = { n, 4 };
    struct sockaddr_storage ss;
    sa4(&ss, "10.200.3.4");
    assert_true(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa4(&ss, "11.0.0.1");
    assert_false(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa4(&ss, "192.168.1.7");
    assert_true(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa4(&ss, "192.168.1.8");
    assert_false(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa6(&ss, "::ffff:10.9.9.9");                 /* v4-mapped from a dual-stack socket */
    assert_true(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa6(&ss, "::1");
    assert_true(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa6(&ss, "::2");
    assert_false(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa6(&ss, "2001:db8:ffff::1");
    assert_true(cidr_match_sa(&l, (struct sockaddr *)&ss));
    sa6(&ss, "2001:db9::1");
    assert_false(cidr_match_sa(&l, (struct sockaddr *)&ss));
    struct cidr odd;
    assert_int_equal(cidr_parse("172.16.0.0/12", &odd), 0);
    struct cidrlist lo = { &odd, 1 };
    sa4(&ss, "172.31.255.255");
    assert_true(cidr_match_sa(&lo, (struct sockaddr *)&ss));
    sa4(&ss, "172.32.0.0");
    assert_false(cidr_match_sa(&lo, (struct sockaddr *)&ss));
    struct cidrlist empty = { NULL, 0 };
    assert_false(cidr_match_sa(&empty, (struct sockaddr *)&ss));
}

static void test_parse_address(void **st)
{
    (void)st;
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(config_parse_address("127.0.0.1:2525", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2525);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(config_parse_address("[::]:25", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(config_parse_address("0.0.0.0:0", NULL, NULL), -1);
    assert_int_equal(config_parse_address("0.0.0.0:65536", NULL, NULL), -1);
    assert_int_equal(config_parse_address("0.0.0.0", NULL, NULL), -1);
    assert_int_equal(config_parse_address("::1:25", NULL, NULL), -1);
    assert_int_equal(config_parse_address("[::1]25", NULL, NULL), -1);
    assert_int_equal(config_parse_address(":25", NULL, NULL), -1);
    assert_int_equal(config_parse_address("host.example:25", NULL, NULL), -1);
}

static void test_default_path(void **st)
{
    (void)st;
    unsetenv("POSTERN_CONFIG");
    assert_string_equal(config_default_path("/x.conf"), "/x.conf");
    char want[4096];
    snprintf(want, sizeof(want), "%s/etc/postern/postern.conf", config_prefix());
    assert_string_equal(config_default_path(NULL), want);
    setenv("POSTERN_CONFIG", "/env.conf", 1);
    assert_string_equal(config_default_path(NULL), "/env.conf");
    assert_string_equal(config_default_path("/x.conf"), "/x.conf");
    unsetenv("POSTERN_CONFIG");
}

static int setup(void **st)
{
    (void)st;
    log_init("test_config", 1, 0, LOG_L_FATAL);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    return tmpdir_remove(tmpdir);
}

static const char *level(const struct config *c, const char *key)
{
    enum tls_policy p;
    return config_tls_policy_lookup(c, key, &p) ? config_tls_policy_name(p) : "-";
}

static void test_tls_policy_map(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load(
        "hostname = \"h.test\";\n"
        "delivery { tls = \"dane\";\n"
        "  tls_policy { \"bank.example\" = \"verify\"; \"[mx.partner.example]\" = \"dane\";\n"
        "               \"[relay.example]:587\" = \"encrypt\"; \".corp.example\" = \"none\";\n"
        "               plain.example = \"may\"; } }\n", &e);
    if (c == NULL)
        print_error("%s", e.data);
    assert_non_null(c);
    assert_int_equal(c->delivery_tls, TLSP_DANE);
    assert_int_equal(c->ntls_policies, 5);
    assert_string_equal(level(c, "bank.example"), "verify");
    assert_string_equal(level(c, "BANK.example."), "verify");
    assert_string_equal(level(c, "sub.bank.example"), "-");        /* no ".bank.example" */
    assert_string_equal(level(c, "[mx.partner.example]"), "dane");
    assert_string_equal(level(c, "[mx.partner.example]:25"), "-");  /* caller tries both */
    assert_string_equal(level(c, "mx.partner.example"), "-");       /* a host is no domain */
    assert_string_equal(level(c, "[relay.example]:587"), "encrypt");
    assert_string_equal(level(c, "[relay.example]"), "-");
    assert_string_equal(level(c, "a.b.corp.example"), "none");      /* parent entry */
    assert_string_equal(level(c, "corp.example"), "-");
    assert_string_equal(level(c, "plain.example"), "may");
    assert_string_equal(config_tls_policy_name(TLSP_ENCRYPT), "encrypt");
    config_free(c);
    buf_free(&e);
}

static void test_tls_policy_default(void **st)
{
    (void)st;
    buf_t e;
    buf_init(&e, 64);
    struct config *c = load("hostname = \"h.test\";\n", &e);
    assert_non_null(c);
    assert_int_equal(c->delivery_tls, TLSP_MAY);
    assert_int_equal(c->ntls_policies, 0);
    assert_string_equal(level(c, "example.com"), "-");
    config_free(c);
    buf_free(&e);
}

static void test_tls_policy_errors(void **st)
{
    (void)st;
    /* the old form: the default policy was called delivery.tls_policy */
    expect_error("delivery { tls_policy = \"may\"; }\n",
                 "main.conf:1:12: delivery.tls_policy: delivery.tls_policy is a map of "
                 "per-destination policies now; set the default policy with delivery.tls = "
                 "\"may\"");
    expect_error("delivery.tls_policy = \"verify\";\n",
                 "main.conf:1:1: delivery.tls_policy: delivery.tls_policy is a map of "
                 "per-destination policies now; set the default policy with delivery.tls = "
                 "\"verify\"");
    expect_error("delivery { tls = \"secure\"; }\n",
                 "main.conf:1:18: delivery.tls: expected one of \"none\", \"may\", \"encrypt\", "
                 "\"dane\", \"verify\", got \"secure\"");
    expect_error("delivery { tls_policy { \"a.example\" = \"strict\"; } }\n",
                 "main.conf:1:39: delivery.tls_policy[\"a.example\"]: expected one of \"none\", "
                 "\"may\", \"encrypt\", \"dane\", \"verify\", got \"strict\"");
    expect_error("delivery { tls_policy { \"bad host\" = \"may\"; } }\n",
                 "main.conf:1:25: delivery.tls_policy[\"bad host\"]: expected a destination like "
                 "\"example.com\", \".example.com\", \"[mx.example.com]\" or "
                 "\"[mx.example.com]:25\", got \"bad host\"");
    expect_error("delivery { tls_policy { \"[x.example]:99999\" = \"may\"; } }\n",
                 "main.conf:1:25: delivery.tls_policy[\"[x.example]:99999\"]: expected a "
                 "destination like \"example.com\", \".example.com\", \"[mx.example.com]\" or "
                 "\"[mx.example.com]:25\", got \"[x.example]:99999\"");
    expect_error("delivery { tls_policy { \"a.example\" = \"may\"; \"A.example\" = \"none\"; } }\n",
                 "main.conf:1:46: delivery.tls_policy[\"A.example\"]: duplicate destination");
    expect_error("delivery { tls_policy { \"a.example\" = [\"may\"]; } }\n",
                 "main.conf:1:39: delivery.tls_policy[\"a.example\"]: expected one of \"none\", "
                 "\"may\", \"encrypt\", \"dane\", \"verify\", got a list");
    /* DANE without DNSSEC could never apply */
    expect_error("dns { dnssec = false; }\ndelivery { tls_policy { \"a.example\" = \"dane\"; } }\n",
                 "main.conf:1:16: dns.dnssec: DANE (delivery.tls or delivery.tls_policy = "
                 "\"dane\") needs DNSSEC: set dns.dnssec = true, or a trust anchor in "
                 "dns.unbound_config");
    /* quoted keys only in the map */
    expect_error("limits { \"message_size\" = 10M; }\n",
                 "main.conf:1:10: limits.message_size: unexpected quoted key (only "
                 "delivery.tls_policy's destinations are quoted)");
}

/* Several dkim blocks in one domain (key rollover) and the authentication keys. */
static void test_dkim_blocks(void **st)
{
    struct config *c = load_ok(
        "hostname = \"mx.a.test\";\n"
        "authentication { dkim = true; }\n"
        "domain \"a.test\" {\n"
        "  dkim { selector = \"s1\"; key = \"/k/a.s1\"; }\n"
        "  dkim { selector = \"s2\"; key = \"/k/a.s2\"; }\n"
        "  dkim { selector = \"s3\"; key = \"/k/a.s3\"; }\n"
        "}\n"
        "domain \"b.test\" { mailboxes = \"/m/%d/%u\"; }\n");
    const struct domain_conf *d = config_domain(c, "a.test");
    assert_non_null(d);
    assert_int_equal(d->ndkim, 3);
    assert_string_equal(d->dkim_selector, "s1");
    assert_string_equal(d->dkim[0].selector, "s1");
    assert_string_equal(d->dkim[1].key, "/k/a.s2");
    assert_string_equal(d->dkim[2].selector, "s3");
    assert_int_equal(config_domain(c, "b.test")->ndkim, 0);
    assert_int_equal(c->authentication_dkim, 1);
    assert_string_equal(c->authserv_id, "mx.a.test");
    assert_non_null(strstr(c->dkim_keys, "/etc/postern/dkim"));
    config_free(c);
    expect_error("domain \"a.test\" { dkim { selector = \"s1\"; key = \"/k/1\"; }\n"
                 "dkim { selector = \"s1\"; key = \"/k/2\"; } }\n",
                 "main.conf:2:1: domain.a.test.dkim: selector \"s1\" appears twice");
    expect_error("domain \"a.test\" { dkim { selector = \"s1\"; key = \"/k/1\"; }\n"
                 "dkim { selector = \"s2\"; } }\n",
                 "main.conf:2:8: domain.a.test.dkim.selector: dkim.selector is set but "
                 "dkim.key is not: both are needed");
    expect_error("authentication { authserv_id = \"a b\"; }\n",
                 "main.conf:1:32: authentication.authserv_id: expected a domain name like "
                 "mx.example.com, got \"a b\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dkim_blocks),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_product_example),
        cmocka_unit_test(test_repo_confs),
        cmocka_unit_test(test_syntax_block_semicolon),
        cmocka_unit_test(test_syntax_ok),
        cmocka_unit_test(test_err_missing_semicolon),
        cmocka_unit_test(test_err_unterminated_string),
        cmocka_unit_test(test_err_braces),
        cmocka_unit_test(test_err_depth),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_err_wrong_type),
        cmocka_unit_test(test_err_range),
        cmocka_unit_test(test_err_enum),
        cmocka_unit_test(test_err_cidr_and_address),
        cmocka_unit_test(test_err_duplicate),
        cmocka_unit_test(test_err_cross_checks),
        cmocka_unit_test(test_errors_collected),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_load_buffer),
        cmocka_unit_test(test_include_glob),
        cmocka_unit_test(test_include_missing),
        cmocka_unit_test(test_include_cycle),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_tls_policy_map),
        cmocka_unit_test(test_tls_policy_default),
        cmocka_unit_test(test_tls_policy_errors),
        cmocka_unit_test(test_metrics_not_on_a_listener_port),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
