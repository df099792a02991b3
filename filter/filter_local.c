/*
 * filter_local.c - the default policy's local-recipient check in filter
 * (policy_set_local_check): a recipient at a local domain for which the
 * rules said `next` is answered from lib/local/local_rcpt.c directly
 * (filter is not jailed). Evaluations run in worker threads, so the one
 * alias reader is used under a mutex; it follows local.aliases across
 * reloads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "filter/filter_policy.h"
#include "local/local_rcpt.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const struct config *cur;
static struct aliases_db *db;
static char *db_src;

static int check(const char *addr)
{
    pthread_mutex_lock(&mu);
    const char *src = cur->local_aliases ? cur->local_aliases : "";
    if (db == NULL || strcmp(db_src, src) != 0) {
        aliases_db_free(db);
        free(db_src);
        db = aliases_db_new(src);
        db_src = xstrdup(src);
    }
    int r = local_rcpt_known(cur, db, addr);
    pthread_mutex_unlock(&mu);
    return r;
}

void filter_local_init(const struct config *cfg)
{
    pthread_mutex_lock(&mu);
    cur = cfg;
    pthread_mutex_unlock(&mu);
    policy_set_local_check(check);
}
