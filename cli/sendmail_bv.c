/*
 * sendmail_bv.c - sendmail -bv: say how each recipient would be delivered,
 * without sending anything and without asking DNS. One line per
 * recipient: "addr: deliverable: how" or "addr: undeliverable: why".
 * Exit 0 when every recipient is deliverable, else EX_NOUSER (EX_DATAERR
 * for a syntax error). An alias shows its items (one level: what the
 * local agent would expand next); postmaster and MAILER-DAEMON without an
 * alias go to root.
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sendmail.h"
#include "mail/addr.h"
#include "local/aliases.h"
#include "local/local_rcpt.h"

/* A mailbox template with %u (local part) and %d (domain) filled in. */
static void expand(buf_t *out, const char *tpl, const char *lp, const char *dom)
{
    for (const char *p = tpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'u') {
            buf_append_str(out, lp);
            p++;
        } else if (p[0] == '%' && p[1] == 'd') {
            buf_append_str(out, dom);
            p++;
        } else {
            buf_append_char(out, *p);
        }
    }
}

/* The alias name (lowercase) of local.aliases, as "alias NAME: items" in
 * how: 1 found, 0 not, -1 the index cannot be read. */
static int verify_alias(const struct config *cfg, struct aliases_db *db, const char *name,
                        buf_t *how)
{
    if (cfg->local_aliases == NULL || cfg->local_aliases[0] == '\0')
        return 0;
    struct alias_list l;
    alias_list_init(&l);
    int r = aliases_lookup(db, name, &l);
    if (r > 0) {
        buf_printf(how, "alias %s:", name);
        for (size_t i = 0; i < l.n; i++) {
            const struct alias_item *it = &l.v[i];
            buf_append_str(how, i ? ", " : " ");
            buf_append_str(how, it->kind == AK_PIPE ? "|" : it->kind == AK_INCLUDE ? ":include:"
                                : it->kind == AK_LOCAL ? "\\" : "");
            buf_append_str(how, it->value);
        }
    } else if (r < 0) {
        buf_printf(how, "the aliases index of %s cannot be read", cfg->local_aliases);
    }
    alias_list_free(&l);
    return r;
}

/* A local domain's recipient; 1 = deliverable. */
static int verify_local(const struct config *cfg, struct aliases_db *db, const char *lp,
                        const char *dom, buf_t *how)
{
    if (cfg->local_mailbox == MBOX_DISCARD) {
        buf_append_str(how, "local, discarded (local.mailbox = discard)");
        return 1;
    }
    char name[ALIAS_NAME_MAX];
    size_t i = 0;
    for (; lp[i] && i + 1 < sizeof(name); i++)
        name[i] = (char)(lp[i] >= 'A' && lp[i] <= 'Z' ? lp[i] + 32 : lp[i]);
    name[i] = '\0';
    int a = verify_alias(cfg, db, name, how);
    if (a != 0)
        return a > 0;
    if (local_is_root_alias(name) && getpwnam(lp) == NULL)
        lp = "root";   /* postmaster, MAILER-DAEMON: root's mailbox (local_rcpt.h) */
    int mbox = cfg->local_mailbox == MBOX_MBOX;
    const char *tpl = mbox ? (cfg->local_mbox ? cfg->local_mbox : "/var/mail/%u") :
                             (cfg->local_maildir ? cfg->local_maildir : "~/Maildir");
    if (tpl[0] != '~' && !mbox) {
        buf_append_str(how, "local mailbox ");
        expand(how, tpl, lp, dom);
        return 1;
    }
    struct passwd *pw = getpwnam(lp);
    if (pw == NULL) {
        buf_printf(how, "no local user or alias \"%s\"", lp);
        return 0;
    }
    buf_printf(how, "local user %s (uid %lu), %s ", pw->pw_name, (unsigned long)pw->pw_uid,
               mbox ? "mbox" : "Maildir");
    if (tpl[0] == '~') {
        buf_append_str(how, pw->pw_dir);
        expand(how, tpl + 1, lp, dom);
    } else {
        expand(how, tpl, lp, dom);
    }
    return 1;
}

/* One recipient; 1 = deliverable, 0 = not, -1 = bad syntax. */
static int verify_one(const struct config *cfg, struct aliases_db *db, const char *raw,
                      buf_t *how)
{
    char *a = sm_qualify(raw, sm_origin(cfg));
    if (a == NULL) {
        buf_append_str(how, "bad address syntax");
        return -1;
    }
    const char *dom = addr_domain(a);
    buf_t lp;
    buf_init(&lp, 64);
    addr_local_part(a, &lp);
    int ok = 1;
    const struct domain_conf *dc = config_domain(cfg, dom);
    if (dc && dc->mailboxes) {
        buf_printf(how, "virtual domain %s, mailbox ", dc->name);
        expand(how, dc->mailboxes, lp.data, dom);
    } else if (config_is_local_domain(cfg, dom)) {
        ok = verify_local(cfg, db, lp.data, dom, how);
    } else if (cfg->relayhost && *cfg->relayhost) {
        buf_printf(how, "remote, through the relayhost %s", cfg->relayhost);
    } else {
        buf_printf(how, "remote, to the MX hosts of %s (not looked up by -bv)", dom);
    }
    buf_free(&lp);
    free(a);
    return ok;
}

int sm_verify(const struct config *cfg, const struct sm_list *rcpts)
{
    int rc = 0;
    buf_t how;
    buf_init(&how, 256);
    struct aliases_db *db = aliases_db_new(cfg->local_aliases);   /* opened once, lazily */
    for (int i = 0; i < rcpts->n; i++) {
        buf_reset(&how);
        int r = verify_one(cfg, db, rcpts->v[i], &how);
        printf("%s: %s: %s\n", rcpts->v[i], r > 0 ? "deliverable" : "undeliverable", how.data);
        if (r < 0)
            rc = EX_DATAERR;
        else if (r == 0 && rc == 0)
            rc = EX_NOUSER;
    }
    aliases_db_free(db);
    buf_free(&how);
    return rc;
}
