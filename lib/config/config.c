/*
 * config.c - postern.conf: loading and validation.
 *
 * Used by every process (server_init) and by `postern check`. The syntax is
 * parsed by config_parse.c into a tree; this file walks the tree against
 * the parameter tables of config_table.c (one row per parameter), so
 * defaults, bounds and messages live in one place. Every problem is
 * collected (never the first only); config_load() returns NULL if there was
 * any. It never touches the files the config names (certificates,
 * users...): `postern check` and the daemons do.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/config_private.h"

struct loadctx {
    struct config *c;
    struct config_errors *errs;
    const struct cnode *seen[CFG_TABLE_MAX];   /* main table: where each was set */
    int listen_seen;
};

/* ---- walking the tree -------------------------------------------------- */

static void join(char *out, size_t size, const char *a, const char *b)
{
    if (a && *a)
        snprintf(out, size, "%s.%s", a, b);
    else
        snprintf(out, size, "%s", b);
}

static int find_param(const struct table *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0)
            return i;
    return -1;
}

/* Is name a block inside the table ("limits" for "limits.x")? */
static int is_block(const struct table *t, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < t->n; i++)
        if (strncmp(t->p[i].name, name, n) == 0 && t->p[i].name[n] == '.')
            return 1;
    return 0;
}

/* "unknown key" with the nearest valid key at the same level, or the full
 * dotted name when the key belongs in a block ("message_size"). */
static void unknown_key(struct loadctx *lc, const struct table *t, const char *level,
                        const struct cnode *e, const char *ekey)
{
    const char *best = NULL;
    char bestbuf[128] = "";
    int bestd = 3;
    size_t ll = strlen(level), kl = strlen(e->key);
    int cap = kl >= 5 ? 2 : 1;
    int next = 0;
    for (int i = 0; i < t->n || (!*level && t->extra && t->extra[next]); i++) {
        char cand[128];
        if (i < t->n) {
            const char *nm = t->p[i].name;
            if (ll && (strncmp(nm, level, ll) != 0 || nm[ll] != '.'))
                continue;
            const char *rest = nm + (ll ? ll + 1 : 0);
            size_t cl = strcspn(rest, ".");
            snprintf(cand, sizeof(cand), "%.*s", (int)cl, rest);
        } else {
            snprintf(cand, sizeof(cand), "%s", t->extra[next++]);
        }
        int d = cfg_edit_distance(e->key, cand, cap);
        if (d <= cap && d < bestd) {
            bestd = d;
            str_copy(bestbuf, sizeof(bestbuf), cand);
            best = bestbuf;
        }
    }
    if (best == NULL) {
        for (int i = 0; i < t->n; i++) {
            const char *dot = strrchr(t->p[i].name, '.');
            if (dot && strcmp(dot + 1, e->key) == 0) {
                snprintf(bestbuf, sizeof(bestbuf), "%s", t->p[i].name);
                if (*t->prefix)
                    snprintf(bestbuf, sizeof(bestbuf), "%s.%s", t->prefix, t->p[i].name);
                best = bestbuf;
                break;
            }
        }
    }
    if (best)
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "unknown key \"%s\" (did you mean \"%s\"?)", e->key, best);
    else
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "unknown key \"%s\"", e->key);
}

static void duplicate(struct loadctx *lc, const struct cnode *e, const struct cnode *first,
                      const char *ekey)
{
    if (strcmp(e->file, first->file) == 0)
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "duplicate key (already set at line %d, column %d)", first->kline,
                      first->kcol);
    else
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "duplicate key (already set at %s:%d:%d)", first->file, first->kline,
                      first->kcol);
}

static void apply_listen(struct loadctx *lc, const struct cnode *blk);
static void apply_domain(struct loadctx *lc, const struct cnode *e);

/* Walk one block of a table; level is the table-relative dotted prefix. */
static void apply_block(struct loadctx *lc, const struct table *t, void *base,
                        const struct cnode **seen, const struct cnode *blk, const char *level)
{
    for (int i = 0; i < blk->nkids; i++) {
        const struct cnode *e = blk->kids[i];
        char name[256], ekey[512];
        join(name, sizeof(name), level, e->key);
        join(ekey, sizeof(ekey), t->prefix, name);
        if (t->p == cfg_params && !*level && strcmp(e->key, "domain") == 0) {
            apply_domain(lc, e);
            continue;
        }
        if (t->p == cfg_params && !*level && strcmp(e->key, "transport") == 0) {
            cfg_apply_transport(lc->c, lc->errs, e);
            continue;
        }
        if (e->label) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "unexpected label \"%.60s\" (only domain and transport blocks "
                          "take one)", e->label);
            continue;
        }
        if (t->p == cfg_params && !*level && strcmp(e->key, "listen") == 0) {
            if (e->kind != CN_BLOCK)
                cfg_error_add(lc->errs, e->file, e->line, e->col, ekey,
                              "expected a block: listen { smtp { address = [...]; } }");
            else
                apply_listen(lc, e);
            continue;
        }
        int r = find_param(t, name);
        if (r >= 0) {
            if (seen[r])
                duplicate(lc, e, seen[r], ekey);
            else {
                seen[r] = e;
                cfg_apply_value(lc->errs, &t->p[r], base, e, ekey);
            }
        } else if (is_block(t, name)) {
            if (e->kind != CN_BLOCK)
                cfg_error_add(lc->errs, e->file, e->line, e->col, ekey,
                              "expected a block { ... }, got a %s",
                              e->kind == CN_LIST ? "list" : "value");
            else
                apply_block(lc, t, base, seen, e, name);
        } else {
            unknown_key(lc, t, level, e, ekey);
        }
    }
}

static const struct cnode *seen_of(const struct cnode **seen, const struct table *t,
                                   const char *name)
{
    int r = find_param(t, name);
    return r >= 0 ? seen[r] : NULL;
}

/* certificate and key come as a pair; report against the one that is set. */
static void check_pair(struct loadctx *lc, const struct table *t, const struct cnode **seen,
                       const char *a, const void *va, const char *b, const void *vb)
{
    if ((va == NULL) == (vb == NULL))
        return;
    const char *set = va ? a : b, *unset = va ? b : a;
    const struct cnode *n = seen_of(seen, t, set);
    char ekey[256];
    join(ekey, sizeof(ekey), t->prefix, set);
    cfg_error_add(lc->errs, n ? n->file : lc->c->path, n ? n->kline : 0, n ? n->kcol : 0, ekey,
                  "%s is set but %s is not: both are needed", set, unset);
}

static void apply_listen(struct loadctx *lc, const struct cnode *blk)
{
    struct config *c = lc->c;
    lc->listen_seen = 1;
    for (int i = 0; i < blk->nkids; i++) {
        const struct cnode *e = blk->kids[i];
        char ekey[256];
        buf_t msg;
        join(ekey, sizeof(ekey), "listen", e->key);
        buf_init(&msg, 64);
        if (cfg_check_identifier(e->key, &msg) < 0 || e->label || e->kind != CN_BLOCK) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "expected a listener block: NAME { address = [\"0.0.0.0:25\"]; }");
            buf_free(&msg);
            continue;
        }
        buf_free(&msg);
        int dup = 0;
        for (int k = 0; k < c->nlisteners; k++)
            dup |= strcmp(c->listeners[k].name, e->key) == 0;
        if (dup) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "duplicate listener");
            continue;
        }
        if (c->nlisteners >= CFG_LISTENERS_MAX) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "too many listeners (limit %d)", CFG_LISTENERS_MAX);
            return;
        }
        c->listeners = xrealloc(c->listeners, (size_t)(c->nlisteners + 1) * sizeof(*c->listeners));
        struct listener *l = &c->listeners[c->nlisteners++];
        memset(l, 0, sizeof(*l));
        l->name = xstrdup(e->key);
        cfg_apply_defaults(cfg_listener_params, cfg_nlistener, l);
        const struct cnode *seen[CFG_TABLE_MAX] = { 0 };
        struct table t = { cfg_listener_params, cfg_nlistener, ekey, NULL };
        apply_block(lc, &t, l, seen, e, "");
        int auth = l->auth_required;
        l->auth_offered = auth != AUTH_NONE;
        l->auth_required = auth == AUTH_REQUIRED;
        if (seen[0] == NULL)
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                          "missing address = [\"host:port\", ...]");
    }
}

static void apply_domain(struct loadctx *lc, const struct cnode *e)
{
    struct config *c = lc->c;
    buf_t msg;
    if (e->label == NULL || e->kind != CN_BLOCK) {
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, "domain",
                      "expected domain \"example.com\" { ... }");
        return;
    }
    char ekey[320];
    join(ekey, sizeof(ekey), "domain", e->label);
    buf_init(&msg, 64);
    if (cfg_check_hostname(e->label, &msg) < 0) {
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, "domain", "%s", msg.data);
        buf_free(&msg);
        return;
    }
    buf_free(&msg);
    for (int k = 0; k < c->ndomains; k++) {
        if (strcasecmp(c->domains[k].name, e->label) == 0) {
            cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey, "duplicate domain block");
            return;
        }
    }
    if (c->ndomains >= CFG_DOMAINS_MAX) {
        cfg_error_add(lc->errs, e->file, e->kline, e->kcol, ekey,
                      "too many domain blocks (limit %d)", CFG_DOMAINS_MAX);
        return;
    }
    c->domains = xrealloc(c->domains, (size_t)(c->ndomains + 1) * sizeof(*c->domains));
    struct domain_conf *d = &c->domains[c->ndomains++];
    memset(d, 0, sizeof(*d));
    d->name = xstrdup(e->label);
    cfg_apply_defaults(cfg_domain_params, cfg_ndomain, d);
    const struct cnode *seen[CFG_TABLE_MAX] = { 0 };
    struct table t = { cfg_domain_params, cfg_ndomain, ekey, NULL };
    apply_block(lc, &t, d, seen, e, "");
    check_pair(lc, &t, seen, "dkim.selector", d->dkim_selector, "dkim.key", d->dkim_key);
    check_pair(lc, &t, seen, "tls.certificate", d->tls_certificate, "tls.key", d->tls_key);
}

/* ---- whole-config checks and computed defaults ------------------------- */

static const char *const main_extra[] = { "listen", "domain", "transport", "include", NULL };

static void finish(struct loadctx *lc, const struct table *t, const struct cnode *root)
{
    struct config *c = lc->c;
    const struct cnode **seen = lc->seen;
    if (c->hostname == NULL) {
        char h[256];
        if (gethostname(h, sizeof(h)) < 0 || h[0] == '\0')
            str_copy(h, sizeof(h), "localhost");
        h[sizeof(h) - 1] = '\0';
        c->hostname = xstrdup(h);
    }
    if (c->run_dir == NULL)   /* root-owned; unprivileged (dev) runs: the spool */
        c->run_dir = xstrdup(geteuid() == 0 ? "/run/postern" : c->spool);
    if (c->pid_file == NULL) {
        buf_t b;
        buf_init(&b, 64);
        buf_printf(&b, "%s/postern.pid", c->run_dir);
        c->pid_file = buf_steal(&b);
        buf_free(&b);
    }
    if (c->smtpd_processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->smtpd_processes = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    if (!lc->listen_seen) {
        c->listeners = xcalloc(1, sizeof(*c->listeners));
        c->nlisteners = 1;
        struct listener *l = &c->listeners[0];
        l->name = xstrdup("smtp");
        cfg_apply_defaults(cfg_listener_params, cfg_nlistener, l);
        cfg_free_strlist(&l->address);
        l->address.v = xcalloc(1, sizeof(char *));
        l->address.v[l->address.n++] = xstrdup("0.0.0.0:25");
        l->auth_offered = 1;
        l->auth_required = 0;
    } else if (c->nlisteners == 0) {
        cfg_error_add(lc->errs, root->file, 0, 0, "listen", "no listener defined");
    }
    check_pair(lc, t, seen, "tls.certificate", c->tls_certificate, "tls.key", c->tls_key);
    if (c->tls_level == TLSL_ENCRYPT && c->tls_certificate == NULL) {
        const struct cnode *n = seen_of(seen, t, "tls.level");
        cfg_error_add(lc->errs, n ? n->file : root->file, n ? n->line : 0, n ? n->col : 0,
                      "tls.level", "level \"encrypt\" needs tls.certificate and tls.key");
    }
    for (int i = 0; i < c->nlisteners; i++) {
        struct listener *l = &c->listeners[i];
        char ekey[256];
        if ((l->tls == TLSM_REQUIRED || l->tls == TLSM_IMPLICIT) && c->tls_certificate == NULL) {
            join(ekey, sizeof(ekey), "listen", l->name);
            cfg_error_add(lc->errs, root->file, 0, 0, ekey,
                          "tls = \"%s\" needs tls.certificate and tls.key",
                          l->tls == TLSM_REQUIRED ? "required" : "implicit");
        }
        if (l->auth_required && c->auth_users == NULL) {
            join(ekey, sizeof(ekey), "listen", l->name);
            cfg_error_add(lc->errs, root->file, 0, 0, ekey,
                          "auth = \"required\" needs auth.users");
        }
    }
}

/* The listener checks above run without positions; give them the
 * listener's own place in the file when there is one. */
static void place_listener_errors(struct config_errors *errs, int from, const struct cnode *root)
{
    for (int i = from; i < errs->n; i++) {
        struct config_error *e = &errs->v[i];
        if (e->line != 0 || strncmp(e->key, "listen.", 7) != 0)
            continue;
        for (int k = 0; k < root->nkids; k++) {
            const struct cnode *lb = root->kids[k];
            if (strcmp(lb->key, "listen") != 0 || lb->kind != CN_BLOCK)
                continue;
            for (int j = 0; j < lb->nkids; j++) {
                const struct cnode *x = lb->kids[j];
                if (strcmp(x->key, e->key + 7) != 0)
                    continue;
                free(e->file);
                e->file = xstrdup(x->file);
                e->line = x->kline;
                e->col = x->kcol;
            }
        }
    }
}

/* ---- public ------------------------------------------------------------ */

static struct config *load_tree(struct cfg_tree *tree, const char *path,
                                struct config_errors *errs)
{
    struct config *c = xcalloc(1, sizeof(*c));
    struct loadctx lc = { .c = c, .errs = errs };
    if (path[0] == '/') {
        c->path = cfg_path_resolve("/", path);
    } else {
        char cwd[PATH_MAX];
        c->path = cfg_path_resolve(getcwd(cwd, sizeof(cwd)) ? cwd : "/", path);
    }
    cfg_apply_defaults(cfg_params, cfg_nparams, c);
    struct table t = { cfg_params, cfg_nparams, "", main_extra };
    apply_block(&lc, &t, c, lc.seen, tree->root, "");
    int before = errs->n;
    finish(&lc, &t, tree->root);
    place_listener_errors(errs, before, tree->root);
    return c;
}

/* Report in file order: insertion sort (stable; at most CFG_ERRORS_MAX). */
static void sort_errors(struct config_errors *errs, int from)
{
    for (int i = from + 1; i < errs->n; i++) {
        struct config_error x = errs->v[i];
        int j = i - 1;
        while (j >= from) {
            const struct config_error *y = &errs->v[j];
            int fc = strcmp(y->file, x.file);
            if (fc < 0 || (fc == 0 && (y->line < x.line ||
                                       (y->line == x.line && y->col <= x.col))))
                break;
            errs->v[j + 1] = errs->v[j];
            j--;
        }
        errs->v[j + 1] = x;
    }
}

static struct config *load_common(const char *path, const char *data, size_t len,
                                  struct config_errors *errs_r)
{
    struct config_errors local = { 0 };
    struct config_errors *errs = errs_r ? errs_r : &local;
    struct cfg_tree tree;
    int before = errs->n;
    cfg_tree_parse(&tree, path, data, len, errs);
    struct config *c = load_tree(&tree, path, errs);
    cfg_tree_free(&tree);
    sort_errors(errs, before);
    int failed = errs->n > before;
    if (errs == &local) {
        config_errors_log(&local, "");
        config_errors_free(&local);
    }
    if (failed) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    return load_common(path, NULL, 0, errs);
}

struct config *config_load_buffer(const char *name, const char *data, size_t len,
                                  struct config_errors *errs)
{
    return load_common(name, data ? data : "", data ? len : 0, errs);
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    cfg_free_fields(cfg_params, cfg_nparams, c);
    for (int i = 0; i < c->nlisteners; i++) {
        free(c->listeners[i].name);
        cfg_free_fields(cfg_listener_params, cfg_nlistener, &c->listeners[i]);
    }
    free(c->listeners);
    for (int i = 0; i < c->ndomains; i++) {
        free(c->domains[i].name);
        cfg_free_fields(cfg_domain_params, cfg_ndomain, &c->domains[i]);
    }
    free(c->domains);
    cfg_transports_free(c);
    free(c->path);
    free(c);
}

void config_errors_free(struct config_errors *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->n; i++) {
        free(e->v[i].file);
        free(e->v[i].key);
        free(e->v[i].msg);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

void config_error_format(buf_t *out, const struct config_error *e)
{
    buf_append_str(out, e->file && *e->file ? e->file : "-");
    if (e->line > 0)
        buf_printf(out, ":%d:%d", e->line, e->col);
    buf_append_str(out, ": ");
    if (e->key && *e->key)
        buf_printf(out, "%s: ", e->key);
    buf_append_str(out, e->msg ? e->msg : "");
}

void config_errors_each(const struct config_errors *e, config_error_fn *fn, void *arg)
{
    buf_t b;
    buf_init(&b, 128);
    for (int i = 0; i < e->n; i++) {
        buf_reset(&b);
        config_error_format(&b, &e->v[i]);
        fn(b.data, arg);
    }
    buf_free(&b);
}

static void log_line(const char *line, void *prefix)
{
    log_error("%s%s", (const char *)prefix, line);
}

void config_errors_log(const struct config_errors *e, const char *prefix)
{
    config_errors_each(e, log_line, (void *)prefix);
}

static int domain_eq(const char *a, const char *d, size_t dl)
{
    return strlen(a) == dl && strncasecmp(a, d, dl) == 0;
}

const struct domain_conf *config_domain(const struct config *c, const char *d)
{
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.')
        dl--;
    for (int i = 0; i < c->ndomains; i++)
        if (domain_eq(c->domains[i].name, d, dl))
            return &c->domains[i];
    return NULL;
}

int config_is_local_domain(const struct config *c, const char *d)
{
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.')
        dl--;
    if (dl == 0)
        return 0;
    for (int i = 0; i < c->local_domains.n; i++)
        if (domain_eq(c->local_domains.v[i], d, dl))
            return 1;
    return config_domain(c, d) != NULL;
}

const char *config_default_path(const char *opt_c)
{
    if (opt_c && *opt_c)
        return opt_c;
    const char *env = getenv("POSTERN_CONFIG");
    if (env && *env)
        return env;
    return POSTERN_PREFIX "/etc/postern/postern.conf";
}
