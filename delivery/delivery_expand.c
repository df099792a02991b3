/*
 * delivery_expand.c - a local recipient becomes delivery targets: aliases
 * (local.aliases, compiled by newaliases), :include: files, ~/.forward
 * (local.forward), postmaster/MAILER-DAEMON to root, then a mailbox, a
 * file, a command or a remote address, each with the identity it is
 * written with (delivery_ident.c).
 *
 * Rules (as Postfix local(8)): an alias naming itself, or "\user", is the
 * user's own mailbox; a name met again on the way down is a loop and the
 * recipient is refused (5.4.6); depth is bounded; targets are
 * deduplicated. Commands and files from the aliases run as the aliases
 * file's owner, or local.default_user when root owns it; from an :include:
 * file as its owner (same rule); from a .forward as the user; never as
 * root. A .forward or :include: file is read with the owner's file rights
 * and ignored (logged) unless it and its directory belong to the user (or
 * root) and are not group or world writable. Domain blocks with a
 * `mailboxes` template and catch-all templates are written as
 * local.vmail_user. Must never expand without bound, never read a user's
 * file with the agent's own rights.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "delivery.h"
#include "local/aliases.h"
#include "local/local_rcpt.h"
#include "mail/mbox_path.h"
#include "util/log.h"

#define EXPAND_DEPTH_MAX   20
#define EXPAND_TARGETS_MAX 1000

static struct aliases_db *adb;

void delivery_expand_init(struct aliases_db *db)
{
    adb = db;
}

struct exp {
    const struct config *cfg;
    struct dlv_targets *out;
    struct dlv_result *r;
    int kind;                       /* rule-chosen mailbox kind, -1 = config */
    uint32_t slot;
    const char *stack[EXPAND_DEPTH_MAX];
    int depth;
};

void dlv_targets_free(struct dlv_targets *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].value);
        free(t->v[i].rcpt);
        free(t->v[i].sender);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* Add a target unless the same one is there already: for this recipient
 * nothing is added (NULL), for another recipient of the message a T_DUP
 * that shares its outcome (a mailbox gets one copy per message). */
static struct dlv_target *add(struct exp *e, enum dlv_tkind kind, const char *value,
                              const char *rcpt, const char *sender, const struct dlv_ident *id)
{
    struct dlv_targets *t = e->out;
    size_t dup = (size_t)-1;
    for (size_t i = 0; i < t->n && dup == (size_t)-1; i++)
        if (t->v[i].kind == kind && kind != T_ERROR && strcmp(t->v[i].value, value) == 0 &&
            (kind == T_REMOTE || kind == T_MAILBOX || dlv_ident_same(&t->v[i].id, id))) {
            if (t->v[i].slot == e->slot)
                return NULL;
            if (kind != T_REMOTE)
                dup = i;
        }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    struct dlv_target *x = &t->v[t->n++];
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    x->value = xstrdup(value);
    x->rcpt = xstrdup(rcpt);
    x->sender = sender ? xstrdup(sender) : NULL;
    x->slot = e->slot;
    if (id)
        x->id = *id;
    dlv_result_set(&x->res, DS_DEFERRED, "4.3.0", "not attempted");
    if (dup != (size_t)-1) {
        x->kind = T_DUP;
        x->dup_of = dup;
        return NULL;
    }
    return x;
}

/* A failed member: its own result, the others still delivered. */
static void add_error(struct exp *e, const char *rcpt, const struct dlv_result *r)
{
    struct dlv_target *x = add(e, T_ERROR, "", rcpt, NULL, NULL);
    if (x)
        x->res = *r;
}

static int too_many(struct exp *e)
{
    if (e->out->n < EXPAND_TARGETS_MAX)
        return 0;
    dlv_result_set(e->r, DS_BOUNCED, "5.4.6", "alias expansion gives more than %d targets",
                   EXPAND_TARGETS_MAX);
    return 1;
}

/* The identity of template mailboxes: local.vmail_user, "" = the agent. */
static int vmail_ident(const struct config *cfg, struct dlv_ident *id, struct dlv_result *r)
{
    const char *u = cfg->local_vmail_user;
    if (u == NULL || u[0] == '\0') {
        dlv_ident_self(id);
        return 0;
    }
    if (dlv_ident_lookup(u, id) == 1)
        return 0;
    dlv_result_set(r, DS_DEFERRED, "4.3.5", "local.vmail_user \"%s\" does not exist", u);
    return -1;
}

/* Commands and files never run as root: root's become local.default_user. */
static int unprivileged(const struct config *cfg, uid_t owner, struct dlv_ident *id,
                        struct dlv_result *r)
{
    if (owner != 0 && dlv_ident_of_uid(owner, id) == 0)
        return 0;
    if (dlv_ident_lookup(cfg->local_default_user, id) == 1 && id->uid != 0)
        return 0;
    dlv_result_set(r, DS_DEFERRED, "4.3.5", "local.default_user \"%s\" does not exist or is root",
                   cfg->local_default_user);
    return -1;
}

/* The user's own mailbox (no further expansion). */
static int mailbox(struct exp *e, const char *local, const char *domain, const char *sender)
{
    buf_t addr, path;
    buf_init(&addr, 64);
    buf_init(&path, 128);
    buf_printf(&addr, "%s%s%s", local, domain[0] ? "@" : "", domain);
    enum mailbox_kind mk;
    struct dlv_result r;
    struct dlv_ident id;
    int rc = delivery_path_resolve(e->cfg, addr.data, e->kind, &mk, &path, &r);
    if (rc == 0 && mk != MBOX_DISCARD) {
        if (local_kind_is_system(e->cfg, mk)) {
            int f = dlv_ident_lookup(local, &id);
            if (f <= 0) {
                dlv_result_set(&r, f < 0 ? DS_DEFERRED : DS_BOUNCED, f < 0 ? "4.3.0" : "5.1.1",
                               f < 0 ? "user lookup \"%s\" failed" : "unknown user: \"%s\"", local);
                rc = -1;
            }
            id.mail_group = mk == MBOX_MBOX;   /* /var/mail is root:mail 2775 */
        } else {
            rc = vmail_ident(e->cfg, &id, &r);
        }
    } else if (rc == 0) {
        dlv_ident_self(&id);
    }
    if (rc < 0) {
        add_error(e, addr.data, &r);
    } else {
        struct dlv_target *x = add(e, T_MAILBOX, mk == MBOX_DISCARD ? "" : path.data, addr.data,
                                   sender, &id);
        if (x)
            x->mkind = mk;
    }
    buf_free(&addr);
    buf_free(&path);
    return 0;
}

/* The domain block of a virtual domain (one with a mailboxes template). */
static const struct domain_conf *virtual_domain(const struct config *cfg, const char *domain)
{
    const struct domain_conf *d = domain[0] ? config_domain(cfg, domain) : NULL;
    return d != NULL && d->mailboxes != NULL && d->mailboxes[0] != '\0' ? d : NULL;
}

/* A virtual domain's mailbox: its template, written as local.vmail_user;
 * no aliases there (as Postfix's virtual domains). */
static int virtual_mailbox(struct exp *e, const struct domain_conf *d, const char *local,
                           const char *domain, const char *sender)
{
    struct dlv_ident id;
    buf_t path, addr;
    buf_init(&path, 128);
    buf_init(&addr, 64);
    buf_printf(&addr, "%s@%s", local, domain);
    int rc = vmail_ident(e->cfg, &id, e->r);
    if (rc == 0 && mbox_path_expand(d->mailboxes, local, domain, NULL, &path) != MBP_OK) {
        dlv_result_set(e->r, DS_BOUNCED, "5.1.3", "no mailbox of %s for \"%s\"", d->name, local);
        rc = -1;
    }
    struct dlv_target *x = rc == 0 ? add(e, T_MAILBOX, path.data, addr.data, sender, &id) : NULL;
    if (x)
        x->mkind = MBOX_MAILDIR;
    buf_free(&path);
    buf_free(&addr);
    return rc;
}

/* Read a .forward (owned: it and its directory must be id's or root's) or
 * :include: file as id; neither may be group or world writable. The
 * directory is opened once (O_PATH) and the file under it (openat,
 * O_NOFOLLOW), and every check and *owner (who the file's commands run as
 * for :include:) come from those descriptors: a path whose directory is
 * swapped between two lookups (a symlink flipped by the includer) cannot
 * lend one file's owner to another's content.
 * 1 = items in out, 0 = no usable file (logged when refused), -1 = try later. */
static int read_list(const char *path, const struct dlv_ident *id, int owned,
                     struct alias_list *out, uid_t *owner)
{
    const char *slash = strrchr(path, '/');
    buf_t dir, text, err;
    buf_init(&dir, 64);
    buf_init(&text, 1024);
    buf_init(&err, 128);
    buf_set(&dir, path, slash && slash != path ? (size_t)(slash - path) : 1);
    const char *base = slash ? slash + 1 : path;
    int rc = 0, fd = -1, dfd = -1;
    struct stat sd, sf;
    dlv_fs_as(id);
    if (*base == '\0' ||
        (dfd = open(dir.data, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(dfd, &sd) < 0 ||
        (fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
                                O_NOCTTY)) < 0) {
        if (*base != '\0' && errno != ENOENT && errno != ENOTDIR)
            log_warn("%s: %s: ignored", path, strerror(errno));
    } else if (fstat(fd, &sf) < 0 || !S_ISREG(sf.st_mode)) {
        log_warn("%s: not a regular file: ignored", path);
    } else if ((owned && sd.st_uid != id->uid && sd.st_uid != 0) || (sd.st_mode & 022) ||
               (owned && sf.st_uid != id->uid && sf.st_uid != 0) || (sf.st_mode & 022)) {
        log_warn("%s: it or its directory is %sgroup or world writable: ignored", path,
                 owned ? "not owned by the user or root, or is " : "");
    } else if ((uint64_t)sf.st_size > ALIAS_LIST_FILE_MAX) {
        log_warn("%s: larger than %u bytes: ignored", path, ALIAS_LIST_FILE_MAX);
    } else {
        buf_reserve(&text, (size_t)sf.st_size + 1);
        if (fdio_pread_all(fd, text.data, (size_t)sf.st_size, 0) < 0) {
            log_warn("%s: read: %s", path, strerror(errno));
            rc = -1;
        } else if (aliases_parse_list(path, text.data, (size_t)sf.st_size, out, &err) > 0) {
            log_warn("%s: ignored: %s", path, err.data);
            alias_list_free(out);
        } else {
            rc = out->n > 0;
            if (owner)
                *owner = sf.st_uid;
        }
    }
    dlv_fs_restore();
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    buf_free(&dir);
    buf_free(&text);
    buf_free(&err);
    return rc;
}

static int expand_local(struct exp *e, const char *local, const char *domain,
                        const char *sender);

/* One item of an alias, :include: or .forward of `name`; pipes and files
 * run as id. */
static int item(struct exp *e, const struct alias_item *it, const char *name,
                const char *domain, const char *sender, const struct dlv_ident *id)
{
    buf_t rcpt, l, d;
    buf_init(&rcpt, 64);
    buf_init(&l, 64);
    buf_init(&d, 64);
    buf_printf(&rcpt, "%s%s%s", name, domain[0] ? "@" : "", domain);
    int rc = 0;
    switch (it->kind) {
    case AK_PIPE:
    case AK_FILE:
        add(e, it->kind == AK_PIPE ? T_PIPE : T_FILE, it->value, rcpt.data, sender, id);
        break;
    case AK_LOCAL:
        mbox_addr_split(it->value, &l, &d);
        rc = mailbox(e, l.data, domain, sender);
        break;
    case AK_INCLUDE: {
        struct alias_list inc;
        struct dlv_ident iid = *id;
        uid_t owner = 0;
        alias_list_init(&inc);
        /* its commands and files run as the owner of the file read (root's:
         * as the includer's identity) */
        int r = read_list(it->value, id, 0, &inc, &owner);
        if (r > 0 && owner != 0 && dlv_ident_of_uid(owner, &iid) < 0)
            iid = *id;
        if (r < 0)
            dlv_result_set(e->r, DS_DEFERRED, "4.3.0", "cannot read %s", it->value);
        for (size_t i = 0; r > 0 && rc == 0 && i < inc.n; i++)
            rc = item(e, &inc.v[i], name, domain, sender, &iid);
        alias_list_free(&inc);
        rc = r < 0 ? -1 : rc;
        break;
    }
    case AK_ADDR:
        mbox_addr_split(it->value, &l, &d);
        if (d.len > 0 && !config_is_local_domain(e->cfg, d.data)) {
            add(e, T_REMOTE, it->value, rcpt.data, sender, NULL);
        } else if (d.len > 0 && virtual_domain(e->cfg, d.data) != NULL) {
            rc = virtual_mailbox(e, virtual_domain(e->cfg, d.data), l.data, d.data, sender);
        } else {
            const char *dom = d.len ? d.data : domain;
            if (strcmp(l.data, name) == 0)
                rc = mailbox(e, l.data, dom, sender);    /* "user: user, ..." */
            else
                rc = expand_local(e, l.data, dom, sender);
        }
        break;
    }
    buf_free(&rcpt);
    buf_free(&l);
    buf_free(&d);
    return rc;
}

/* Expand alias `local` whose items are in items. */
static int expand_alias(struct exp *e, const char *local, const char *domain,
                        const struct alias_list *items, const char *sender)
{
    struct dlv_ident id;
    if (unprivileged(e->cfg, aliases_db_owner(adb), &id, e->r) < 0)
        return -1;
    /* owner-NAME: the list's envelope sender, so its bounces go there */
    buf_t owner, osender;
    buf_init(&owner, 64);
    buf_init(&osender, 64);
    buf_printf(&owner, "owner-%s", local);
    struct alias_list ol;
    alias_list_init(&ol);
    if (aliases_lookup(adb, owner.data, &ol) == 1) {
        buf_printf(&osender, "%s@%s", owner.data, domain[0] ? domain : e->cfg->hostname);
        sender = osender.data;
    }
    alias_list_free(&ol);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < items->n && !too_many(e); i++)
        rc = item(e, &items->v[i], local, domain, sender, &id);
    if (rc == 0 && e->out->n >= EXPAND_TARGETS_MAX)
        rc = -1;
    buf_free(&owner);
    buf_free(&osender);
    return rc;
}

/* A system user's ~/.forward: 1 = expanded from it, 0 = none, -1 = error. */
static int forward(struct exp *e, const char *local, const char *domain, const char *sender)
{
    struct dlv_ident id;
    /* only where local parts are system users: a catch-all layout costs no
     * password lookup per recipient */
    enum mailbox_kind k = e->kind >= 0 ? (enum mailbox_kind)e->kind : e->cfg->local_mailbox;
    if (!e->cfg->local_forward ||
        !local_kind_is_system(e->cfg, k) ||
        dlv_ident_lookup(local, &id) != 1 || id.home[0] != '/')
        return 0;
    buf_t path;
    buf_init(&path, 128);
    buf_printf(&path, "%s/.forward", strcmp(id.home, "/") == 0 ? "" : id.home);
    struct alias_list l;
    alias_list_init(&l);
    int r = read_list(path.data, &id, 1, &l, NULL);
    if (r < 0)
        dlv_result_set(e->r, DS_DEFERRED, "4.3.0", "cannot read %s", path.data);
    struct dlv_ident run = id;
    if (r > 0 && id.uid == 0 && unprivileged(e->cfg, 0, &run, e->r) < 0)
        r = -1;
    for (size_t i = 0; r > 0 && i < l.n; i++)
        if (item(e, &l.v[i], local, domain, sender, &run) < 0)
            r = -1;
    alias_list_free(&l);
    buf_free(&path);
    return r;
}

static int expand_local(struct exp *e, const char *local, const char *domain,
                        const char *sender)
{
    for (int i = 0; i < e->depth; i++)
        if (strcmp(e->stack[i], local) == 0) {
            dlv_result_set(e->r, DS_BOUNCED, "5.4.6", "alias loop: \"%s\" expands to itself "
                           "through \"%s\"", local, e->stack[e->depth - 1]);
            return -1;
        }
    if (e->depth >= EXPAND_DEPTH_MAX) {
        dlv_result_set(e->r, DS_BOUNCED, "5.4.6", "alias expansion deeper than %d",
                       EXPAND_DEPTH_MAX);
        return -1;
    }
    struct alias_list items;
    alias_list_init(&items);
    int found = aliases_lookup(adb, local, &items), rc = 0;
    e->stack[e->depth++] = local;
    if (found < 0) {
        dlv_result_set(e->r, DS_DEFERRED, "4.3.0", "alias lookup \"%s\" failed", local);
        rc = -1;
    } else if (found > 0) {
        rc = expand_alias(e, local, domain, &items, sender);
    } else if (local_is_root_alias(local)) {
        rc = expand_local(e, "root", domain, sender);
    } else {
        int f = forward(e, local, domain, sender);
        rc = f < 0 ? -1 : f > 0 ? 0 : mailbox(e, local, domain, sender);
    }
    e->depth--;
    alias_list_free(&items);
    return rc;
}

int delivery_expand(const struct config *cfg, const char *addr, int kind, uint32_t slot,
                    struct dlv_targets *out, struct dlv_result *r)
{
    struct exp e = { .cfg = cfg, .out = out, .r = r, .kind = kind, .slot = slot };
    size_t first = out->n;
    buf_t local, domain;
    buf_init(&local, 64);
    buf_init(&domain, 64);
    mbox_addr_split(addr, &local, &domain);
    int rc;
    if (!mbox_local_ok(local.data)) {
        dlv_result_set(r, DS_BOUNCED, "5.1.3", "bad address syntax for a local mailbox");
        rc = -1;
    } else if (virtual_domain(cfg, domain.data) != NULL) {
        rc = virtual_mailbox(&e, virtual_domain(cfg, domain.data), local.data, domain.data, NULL);
    } else {
        rc = expand_local(&e, local.data, domain.data, NULL);
    }
    if (rc < 0) {                   /* the whole recipient fails: drop its targets */
        for (size_t i = first; i < out->n; i++) {
            free(out->v[i].value);
            free(out->v[i].rcpt);
            free(out->v[i].sender);
        }
        out->n = first;
    }
    buf_free(&local);
    buf_free(&domain);
    return rc;
}
