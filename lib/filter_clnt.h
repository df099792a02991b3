/*
 * filter_clnt.h - a small blocking client for the filter daemon.
 *
 * For callers that can block (a worker thread, qmgr helpers, the CLI): one
 * connection to private/filter, HELLO once, then ask() sends one FILTER_REQ
 * and waits for the FILTER_REPLY with the same id. Event-loop daemons
 * (smtpd, cleanup) multiplex their own connection instead. Not thread-safe:
 * one handle per thread. The reply's strings are copied (bounded) into the
 * caller's struct, so they outlive the next call.
 */
#ifndef POSTERN_FILTER_CLNT_H
#define POSTERN_FILTER_CLNT_H

#include <stdint.h>
#include "ipc.h"
#include "stage.h"

struct filter_clnt;

struct filter_verdict {
    enum verdict status;
    int code;                   /* 0 = the status's default */
    char enhanced[16];
    char text[512];
    char rule[128];
};

/* Connect to path (NULL = private/filter, spool-relative) and say HELLO.
 * NULL on failure (logged). */
struct filter_clnt *filter_clnt_open(const char *path);
/* Ask for a verdict: req->id is assigned here. 0 ok; -1 when the filter
 * could not answer (the handle is then dead: close it; treat as tempfail). */
int  filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, struct filter_verdict *v);
void filter_clnt_close(struct filter_clnt *c);
/* A request with every string "" (fill in what you know). */
void filter_req_init(struct ipc_filter_req *req, enum stage stage);

#endif
