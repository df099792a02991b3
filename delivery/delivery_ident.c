/*
 * delivery_ident.c - whose rights a delivery runs with: looking identities
 * up (recipients, local.default_user, local.vmail_user), becoming one in a
 * child (setgroups/setresgid/setresuid, then every capability dropped), and
 * reading a user's file with the user's file-system rights (setfsuid) in
 * the agent itself.
 *
 * The agent runs as `user` with CAP_SETUID and CAP_SETGID only
 * (SERVER_F_KEEP_SETID); without them (started unprivileged) everything
 * runs as the agent itself. Must never let a pipe or file delivery run as
 * root, and never leave a child with a capability once it switched.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include "delivery.h"
#include "daemon/server.h"
#include "local/local_rcpt.h"
#include "util/log.h"

int dlv_can_switch(void)
{
    static int known = -1;
    if (known < 0) {
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof(d));
        known = syscall(SYS_capget, &h, d) == 0 &&
                (d[0].effective & (1u << CAP_SETUID)) && (d[0].effective & (1u << CAP_SETGID));
    }
    return known;
}

/* The process's own identity: its effective ids change only in
 * dlv_ident_become (a child, for good), so they are asked once; its
 * name and home, read from the password database, are kept for
 * SELF_CACHE_SECS (as delivery_path.c's home cache): a discard or a
 * template mailbox otherwise costs a password lookup (open + read
 * /etc/passwd) per recipient. */
#define SELF_CACHE_SECS 30

static struct {
    int ids;                    /* uid, gid known */
    int named;                  /* user, home known (at) */
    time_t at;                  /* CLOCK_MONOTONIC_COARSE seconds */
    struct dlv_ident id;
} self;

static void self_ids(void)
{
    if (!self.ids) {
        self.id.uid = geteuid();
        self.id.gid = getegid();
        self.ids = 1;
    }
}

void dlv_ident_self(struct dlv_ident *id)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    self_ids();
    if (!self.named || now.tv_sec - self.at >= SELF_CACHE_SECS) {
        struct passwd *pw = getpwuid(self.id.uid);
        str_copy(self.id.user, sizeof(self.id.user), pw ? pw->pw_name : "");
        str_copy(self.id.home, sizeof(self.id.home), pw && pw->pw_dir ? pw->pw_dir : "/");
        self.named = 1;
        self.at = now.tv_sec;
    }
    *id = self.id;
}

static void ident_of(const struct passwd *pw, struct dlv_ident *id)
{
    id->uid = pw->pw_uid;
    id->gid = pw->pw_gid;
    str_copy(id->user, sizeof(id->user), pw->pw_name);
    str_copy(id->home, sizeof(id->home), pw->pw_dir ? pw->pw_dir : "/");
}

int dlv_ident_lookup(const char *name, struct dlv_ident *id)
{
    struct passwd pw;
    char tmp[4096];
    memset(id, 0, sizeof(*id));
    int r = local_getpwnam(name, &pw, tmp, sizeof(tmp));
    if (r == 1)
        ident_of(&pw, id);
    return r;
}

int dlv_ident_of_uid(uid_t uid, struct dlv_ident *id)
{
    struct passwd pw, *res = NULL;
    char tmp[4096];
    memset(id, 0, sizeof(*id));
    if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) != 0 || res == NULL)
        return -1;
    ident_of(&pw, id);
    return 0;
}

int dlv_ident_same(const struct dlv_ident *a, const struct dlv_ident *b)
{
    return a->uid == b->uid && a->gid == b->gid && a->mail_group == b->mail_group;
}

int dlv_ident_is_self(const struct dlv_ident *id)
{
    self_ids();
    return !dlv_can_switch() ||
           (id->uid == self.id.uid && id->gid == self.id.gid && !id->mail_group);
}

/* The gid of Debian's "mail" group (owner of /var/mail), or -1. */
static gid_t mail_gid(void)
{
    struct group *g = getgrnam("mail");
    return g ? g->gr_gid : (gid_t)-1;
}

int dlv_ident_become(const struct dlv_ident *id)
{
    if (!dlv_can_switch())
        return 0;
    gid_t groups[2] = { id->gid, 0 };
    int n = 1;
    gid_t mg = id->mail_group ? mail_gid() : (gid_t)-1;
    if (mg != (gid_t)-1 && mg != id->gid)
        groups[n++] = mg;
    if (setgroups((size_t)n, groups) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
        setresuid(id->uid, id->uid, id->uid) < 0) {
        log_error("cannot become %s (%u:%u): %m", id->user, (unsigned)id->uid, (unsigned)id->gid);
        return -1;
    }
    if (server_set_caps(0) < 0) {
        log_error("cannot drop capabilities: %m");
        return -1;
    }
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) < 0 || r != id->uid || e != id->uid || s != id->uid)
        return -1;
    self.ids = self.named = 0;   /* another process now: ask again */
    return 0;
}

void dlv_fs_as(const struct dlv_ident *id)
{
    if (!dlv_can_switch())
        return;
    setfsgid(id->gid);
    setfsuid(id->uid);
}

void dlv_fs_restore(void)
{
    if (!dlv_can_switch())
        return;
    self_ids();
    setfsuid(self.id.uid);
    setfsgid(self.id.gid);
}
