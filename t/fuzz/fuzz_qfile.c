/*
 * fuzz_qfile.c - libFuzzer target for the queue file reader (qf_parse).
 * Any input must be refused cleanly or parse into an envelope that the
 * writer can write back and qf_read can read to the same envelope, and
 * whose in-place updates keep the file valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "util/buf.h"
#include "util/log.h"
#include "mail/qfile.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz_qfile", 1, 0, LOG_L_PANIC);
    return 0;
}

static int str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void check_same(const struct qf_env *a, const struct qf_env *b)
{
    CHECK(b->version == QF_FORMAT_VERSION);    /* the writer always writes the current format */
    CHECK(str_eq(a->queue_id, b->queue_id));
    CHECK(a->arrival == b->arrival);
    CHECK(str_eq(a->sender, b->sender));
    CHECK(str_eq(a->client_ip, b->client_ip));
    CHECK(a->client_port == b->client_port);
    CHECK(str_eq(a->client_ptr, b->client_ptr));
    CHECK(str_eq(a->helo, b->helo));
    CHECK(str_eq(a->protocol, b->protocol));
    CHECK(str_eq(a->auth_user, b->auth_user));
    CHECK(str_eq(a->tls, b->tls));
    CHECK(str_eq(a->listener, b->listener));
    CHECK(str_eq(a->envid, b->envid));
    CHECK(a->ret == b->ret);
    CHECK(a->flags == b->flags);
    CHECK(str_eq(a->quarantine, b->quarantine));
    CHECK(a->nrcpts == b->nrcpts);
    CHECK(a->content_len == b->content_len);
    for (int i = 0; i < a->nrcpts; i++) {
        const struct qf_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
        CHECK(str_eq(x->addr, y->addr));
        CHECK(str_eq(x->orig, y->orig));
        CHECK(x->notify == y->notify && x->status == y->status);
        CHECK(x->attempts == y->attempts && x->last_try == y->last_try);
        CHECK(strcmp(x->reason, y->reason) == 0 && strcmp(x->dsn, y->dsn) == 0);
    }
}

/* Accessors on a parsed envelope: everything in bounds and terminated. */
static void check_env(const struct qf_env *e, const uint8_t *data, size_t size)
{
    CHECK(e->version >= QF_FORMAT_VERSION_MIN && e->version <= QF_FORMAT_VERSION);   /* old files are still read */
    CHECK(e->nrcpts >= 1 && e->nrcpts <= QF_MAX_RCPTS);
    CHECK((uint64_t)e->content_off <= size && e->content_len <= size - (uint64_t)e->content_off);
    CHECK(strlen(e->queue_id) > 0 && strlen(e->sender) <= QF_MAX_FIELD);
    CHECK(e->quarantine == NULL || strlen(e->quarantine) > 0);
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        CHECK(strcmp(dstatus_name((enum dstatus)r->status), "unknown") != 0);
        CHECK(strlen(r->addr) > 0 && strlen(r->reason) <= QF_REASON_MAX);
        CHECK(strlen(r->dsn) < sizeof(r->dsn) && strchr(r->addr, '\n') == NULL);
        CHECK(r->rec_off > 0 && (uint64_t)r->rec_off < size && data[r->rec_off] == 0x11);
    }
}

/* Write e back with the writer, read it with qf_read, compare; then update
 * the first recipient in place and read again. */
static void check_rewrite(const struct qf_env *e, const uint8_t *data)
{
    int fd = memfd_create("fuzz_qfile", MFD_CLOEXEC);
    CHECK(fd >= 0);
    struct qf_writer *w = qf_write_begin(fd, e);
    CHECK(w != NULL);
    CHECK(qf_write_content(w, data + e->content_off, (size_t)e->content_len) == 0);
    CHECK(qf_write_size(w) == e->content_len);
    CHECK(qf_write_end(w) == 0);
    struct qf_env r;
    char err[256];
    if (qf_read(fd, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "re-read failed: %s\n", err);
        abort();
    }
    check_same(e, &r);
    if (e->content_len > 0) {
        unsigned char *c = malloc((size_t)e->content_len);
        CHECK(c != NULL);
        CHECK(pread(fd, c, (size_t)e->content_len, r.content_off) == (ssize_t)e->content_len);
        CHECK(memcmp(c, data + e->content_off, (size_t)e->content_len) == 0);
        free(c);
    }
    struct qf_rcpt *x = &r.rcpts[r.nrcpts - 1];
    x->status = DS_DEFERRED;
    x->attempts++;
    str_copy(x->reason, sizeof(x->reason), "4.2.2 mailbox\r\nfull");
    CHECK(qf_update_rcpt(fd, x) == 0);
    struct qf_env u;
    CHECK(qf_read(fd, &u, err, sizeof(err)) == 0);
    CHECK(u.rcpts[u.nrcpts - 1].status == DS_DEFERRED);
    CHECK(strcmp(u.rcpts[u.nrcpts - 1].reason, "4.2.2 mailbox  full") == 0);
    qf_env_free(&u);
    qf_env_free(&r);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qf_env e;
    char err[256];
    if (qf_parse(data, size, &e, err, sizeof(err)) == 0) {
        check_env(&e, data, size);
        check_rewrite(&e, data);
    } else {
        CHECK(err[0] != '\0');
        CHECK(e.nrcpts == 0 && e.rcpts == NULL);
    }
    qf_env_free(&e);
    return 0;
}
