/*
 * local_rcpt.c - who is a local recipient (see local_rcpt.h).
 * Must never call a recipient known on a lookup error (that is -1: 4xx),
 * never let an unchecked local part reach a path or the password database.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "local/local_rcpt.h"
#include "mail/mbox_path.h"
#include "util/log.h"

#define USERS_LINE_MAX 4096

int local_is_root_alias(const char *name)
{
    return strcmp(name, "postmaster") == 0 || strcmp(name, "mailer-daemon") == 0;
}

int local_template_is_system(enum mailbox_kind kind, const char *tmpl)
{
    if (tmpl == NULL || kind == MBOX_DISCARD)
        return 0;
    if (mbox_template_wants_home(tmpl))
        return 1;
    return kind == MBOX_MBOX &&
           (strncmp(tmpl, "/var/mail/", 10) == 0 || strncmp(tmpl, "/var/spool/mail/", 16) == 0);
}

int local_kind_is_system(const struct config *cfg, enum mailbox_kind kind)
{
    return local_template_is_system(kind, kind == MBOX_MBOX ? cfg->local_mbox : cfg->local_maildir);
}

int local_layout_is_system(const struct config *cfg)
{
    return local_kind_is_system(cfg, cfg->local_mailbox);
}

/* Does one users-file line name local (or local@domain)? */
static int line_names(const char *line, const char *local, const char *domain)
{
    size_t n = strcspn(line, ":\r\n \t");
    if (n == 0 || line[0] == '#')
        return 0;
    size_t ll = strlen(local);
    if (n == ll && strncasecmp(line, local, ll) == 0)
        return 1;
    return domain != NULL && n == ll + 1 + strlen(domain) && strncasecmp(line, local, ll) == 0 &&
           line[ll] == '@' && strncasecmp(line + ll + 1, domain, strlen(domain)) == 0;
}

int local_users_file_has(const char *path, const char *local, const char *domain)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        log_error("users file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[USERS_LINE_MAX];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = line_names(line, local, domain);
    int err = ferror(f);
    fclose(f);
    if (err) {
        log_error("users file %s: read error", path);
        return -1;
    }
    return found;
}

int local_getpwnam(const char *name, struct passwd *pw, char *tmp, size_t tmplen)
{
    struct passwd *res = NULL;
    int e = getpwnam_r(name, pw, tmp, tmplen, &res);
    if (res != NULL)
        return 1;
    /* getpwnam_r(3): these all mean "not found" */
    if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
        return 0;
    log_error("user lookup \"%s\": %s", name, strerror(e));
    return -1;
}

/* A system user named local? 1, 0, -1 (lookup failure). */
static int system_user(const char *local)
{
    struct passwd pw;
    char tmp[4096];
    return local_getpwnam(local, &pw, tmp, sizeof(tmp));
}

static int alias_known(struct aliases_db *db, const char *local)
{
    struct alias_list l;
    alias_list_init(&l);
    int r = aliases_lookup(db, local, &l);
    alias_list_free(&l);
    return r;
}

/* The answer for a local part at the local domains (not a domain block). */
static int known_local(const struct config *cfg, struct aliases_db *db, const char *local)
{
    if (local_is_root_alias(local) || strcmp(local, "root") == 0)
        return 1;
    int r = alias_known(db, local);
    if (r != 0)
        return r;
    if (cfg->local_users != NULL && cfg->local_users[0] != '\0')
        return local_users_file_has(cfg->local_users, local, NULL);
    if (!local_layout_is_system(cfg))
        return 1;                   /* catch-all template */
    return system_user(local);
}

int local_rcpt_known(const struct config *cfg, struct aliases_db *db, const char *addr)
{
    buf_t local, domain;
    buf_init(&local, 64);
    buf_init(&domain, 64);
    mbox_addr_split(addr, &local, &domain);
    int r;
    const struct domain_conf *d = domain.len ? config_domain(cfg, domain.data) : NULL;
    if (!mbox_local_ok(local.data))
        r = 0;                      /* no mailbox could be named after it */
    else if (d != NULL && d->mailboxes != NULL && d->mailboxes[0] != '\0')
        r = d->users != NULL && d->users[0] != '\0'
                ? local_users_file_has(d->users, local.data, domain.data)
                : 1;
    else
        r = known_local(cfg, db, local.data);
    buf_free(&local);
    buf_free(&domain);
    return r;
}
