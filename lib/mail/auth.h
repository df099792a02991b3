/*
 * auth.h - SMTP AUTH credentials: the auth.users file and password checks.
 *
 * The file holds `user:crypt-hash` lines (yescrypt "$y$", sha512-crypt
 * "$6$", bcrypt "$2b$", anything libcrypt's crypt_rn knows); blank lines and
 * `#` comments are skipped. auth_users_refresh() re-reads it when its
 * mtime, size or inode changed and keeps the old table when the new one
 * cannot be read. A check is crypt_rn() plus a constant-time comparison;
 * unknown users are checked against a dummy hash so timing does not tell
 * them apart. Hashing costs 10-100 ms, so event loops use an auth_pool:
 * worker threads run the checks and completions come back to the loop
 * through an eventfd. Passwords are wiped from memory after use.
 */
#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

#include <stddef.h>
#include "util/buf.h"

struct event_base;
struct auth_users;
struct auth_pool;
struct auth_job;

#define AUTH_FIELD_MAX 512      /* bytes of a decoded user name or password */

/* Load a users file; NULL (and why in err) when it cannot be read. Lines
 * that are not user:hash are logged with their line number and skipped. */
struct auth_users *auth_users_load(const char *path, buf_t *err);
/* A domain block's users file: `local:hash` or `local@domain:hash` lines
 * (names without regard to case, kept in lower case without the domain);
 * lines without a hash list recipients only and are no logins. */
struct auth_users *auth_users_load_domain(const char *path, const char *domain, buf_t *err);
/* The domain of a table from auth_users_load_domain, else NULL. */
const char *auth_users_domain(const struct auth_users *u);
void auth_users_free(struct auth_users *u);
/* Re-read *u's file if it changed since it was loaded. 1 re-read, 0
 * unchanged, -1 the new file could not be read (*u kept, warning logged). */
int  auth_users_refresh(struct auth_users **u);
int  auth_users_count(const struct auth_users *u);
/* The stored hash for a user, or NULL. */
const char *auth_users_hash(const struct auth_users *u, const char *user);

/* Blocking check: 1 when crypt(pass, hash) == hash, else 0. hash NULL =
 * unknown user: the same work is done against a dummy hash, result 0. */
int  auth_check(const char *hash, const char *pass, size_t passlen);

/* Completion: ok = 1 when the password matched. Runs in the loop thread. */
typedef void auth_done_fn(void *arg, int ok);

struct auth_pool *auth_pool_new(struct event_base *base, int nthreads);
void auth_pool_free(struct auth_pool *p);      /* joins the workers */
/* Queue a check (hash copied, NULL = unknown user; pass copied and wiped
 * after use). The returned job is valid until done runs or it is cancelled. */
struct auth_job *auth_pool_submit(struct auth_pool *p, const char *hash, const char *pass,
                                  size_t passlen, auth_done_fn *done, void *arg);
/* The requester went away: done will not be called; memory is reclaimed. */
void auth_job_cancel(struct auth_job *j);

#endif
