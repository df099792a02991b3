/*
 * local_rcpt.h - who is a local recipient (PRODUCT.md "Who is a local
 * recipient"): the answer smtpd gives at RCPT (550 5.1.1 for nobody) and
 * that filter's default policy gives, and the routing names the local
 * agent shares (postmaster and MAILER-DAEMON go to root).
 *
 * A recipient at a domain block with a `mailboxes` template: its `users`
 * file names the allowed local parts, else any local part is a mailbox
 * (catch-all). At the local domains: with a "~" template or mbox in
 * /var/mail, the system users (getpwnam) and the alias names; with any other
 * template every local part (catch-all) unless local.users names
 * the allowed ones (aliases count too). postmaster, MAILER-DAEMON and root
 * are always known.
 * Lookups are local files, except getpwnam, which goes through NSS and may
 * be slow with a network directory (LDAP): callers must bound their wait.
 */
#ifndef POSTERN_LOCAL_RCPT_H
#define POSTERN_LOCAL_RCPT_H

#include <pwd.h>
#include <stddef.h>
#include "config/config.h"
#include "local/aliases.h"

/* Is addr (local@domain, domain local) someone we deliver to? 1 yes, 0 no
 * (550 5.1.1), -1 temporary failure (4xx). db may be NULL (no aliases). */
int local_rcpt_known(const struct config *cfg, struct aliases_db *db, const char *addr);

/* getpwnam_r as a tri-state: 1 found (pw filled, its strings in tmp), 0 no
 * such user, -1 lookup failure (NSS down: a temporary failure). */
int local_getpwnam(const char *name, struct passwd *pw, char *tmp, size_t tmplen);

/* Does a mailbox template name system users ("~/..." or an mbox in
 * /var/mail or /var/spool/mail), rather than a catch-all layout? */
int local_template_is_system(enum mailbox_kind kind, const char *tmpl);
/* The same for mailbox kind `kind` with its configured template
 * (local.mbox or local.maildir). */
int local_kind_is_system(const struct config *cfg, enum mailbox_kind kind);
/* The same for the configured local.mailbox. */
int local_layout_is_system(const struct config *cfg);

/* Is name (lowercase) one that routes to root when it has no alias
 * (postmaster, mailer-daemon)? */
int local_is_root_alias(const char *name);

/* Does the users file at path list local (or local@domain)? 1, 0, -1
 * (cannot read: logged). Lines: "name" or "name:anything"; '#' comments. */
int local_users_file_has(const char *path, const char *local, const char *domain);

#endif
