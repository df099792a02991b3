/*
 * delivery_path.c - which mailbox a local recipient gets: the kind a rule
 * chose at the deliver stage (DELIVER_RCPT.nexthop), else local.mailbox
 * (maildir | mbox | discard), and the template expanded by lib/mail/mbox_path.c,
 * with "~" looked up in the password database (found entries cached for
 * PW_CACHE_SECS).
 * Must never build a path from a local part that mbox_path refused.
 */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delivery.h"
#include "local/local_rcpt.h"
#include "mail/mbox_path.h"

/* Found home directories are cached for a while (like nscd's positive
 * cache): a "~/" template otherwise costs a password-database lookup per
 * recipient (open + read /etc/passwd with NSS files). Misses are never
 * cached, so a user just added is seen at once. */
#define PW_CACHE_MAX  32
#define PW_CACHE_SECS 30

struct pw_ent {
    char name[MBOX_LOCAL_MAX + 1];
    char *home;                 /* NULL = free slot */
    time_t at;                  /* CLOCK_MONOTONIC_COARSE seconds */
};
static struct pw_ent pw_cache[PW_CACHE_MAX];

static time_t pw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
}

/* Home directory of the user named by local (already checked safe). */
static int home_of(const char *local, buf_t *home, struct dlv_result *r)
{
    time_t now = pw_now();
    struct pw_ent *slot = &pw_cache[0];
    for (int i = 0; i < PW_CACHE_MAX; i++) {
        struct pw_ent *c = &pw_cache[i];
        if (c->home != NULL && strcmp(c->name, local) == 0) {
            if (now - c->at < PW_CACHE_SECS) {
                buf_set(home, c->home, strlen(c->home));
                return 0;
            }
            slot = c;
            break;
        }
        if (slot->home != NULL && (c->home == NULL || c->at < slot->at))
            slot = c;
    }
    struct passwd pw, *res = &pw;
    char tmp[4096];
    int found = local_getpwnam(local, &pw, tmp, sizeof(tmp));
    if (found < 0) {
        dlv_result_set(r, DS_DEFERRED, "4.3.0", "user lookup %s failed", local);
        return -1;
    }
    if (found == 0 || res->pw_dir == NULL || res->pw_dir[0] != '/') {
        if (slot->home != NULL && strcmp(slot->name, local) == 0) {
            free(slot->home);   /* gone: forget it */
            slot->home = NULL;
        }
        dlv_result_set(r, DS_BOUNCED, "5.1.1", "unknown user: \"%s\"", local);
        return -1;
    }
    buf_set(home, res->pw_dir, strlen(res->pw_dir));
    if (strlen(local) < sizeof(slot->name)) {
        free(slot->home);
        str_copy(slot->name, sizeof(slot->name), local);
        slot->home = xstrdup(res->pw_dir);
        slot->at = now;
    }
    return 0;
}

int delivery_path_resolve(const struct config *cfg, const char *addr, int kind,
                          enum mailbox_kind *kind_r, buf_t *path_r, struct dlv_result *r)
{
    *kind_r = kind >= 0 ? (enum mailbox_kind)kind : cfg->local_mailbox;
    if (*kind_r == MBOX_DISCARD)
        return 0;
    const char *tmpl = *kind_r == MBOX_MBOX ? cfg->local_mbox : cfg->local_maildir;
    if (tmpl == NULL || tmpl[0] == '\0') {
        dlv_result_set(r, DS_DEFERRED, "4.3.5", "no mailbox template configured");
        return -1;
    }
    buf_t local, domain, home;
    buf_init(&local, 64);
    buf_init(&domain, 64);
    buf_init(&home, 64);
    mbox_addr_split(addr, &local, &domain);
    int rc = -1;
    if (!mbox_local_ok(local.data)) {
        dlv_result_set(r, DS_BOUNCED, "5.1.3", "bad address syntax for a local mailbox");
        goto out;
    }
    if (mbox_template_wants_home(tmpl) && home_of(local.data, &home, r) < 0)
        goto out;
    if (domain.len == 0 && cfg->hostname)
        buf_set(&domain, cfg->hostname, strlen(cfg->hostname));
    switch (mbox_path_expand(tmpl, local.data, domain.data, home.len ? home.data : NULL, path_r)) {
    case MBP_OK:
        rc = 0;
        break;
    case MBP_BAD_ADDR:
        dlv_result_set(r, DS_BOUNCED, "5.1.3", "bad address syntax for a local mailbox");
        break;
    case MBP_NO_USER:
        dlv_result_set(r, DS_BOUNCED, "5.1.1", "unknown user: \"%s\"", local.data);
        break;
    case MBP_BAD_TEMPLATE:
        dlv_result_set(r, DS_DEFERRED, "4.3.5", "bad mailbox template \"%s\"", tmpl);
        break;
    }
out:
    buf_free(&local);
    buf_free(&domain);
    buf_free(&home);
    return rc;
}
