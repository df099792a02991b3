/*
 * filter_mut.h - the mutations and verdicts filter sends (FILTER_REPLY then
 * FILTER_REPLY.nmut FILTER_MUT), held once for every process that keeps
 * them: smtpd (until cleanup hears them), cleanup (header and envelope
 * changes), qmgr (postq/deliver), the filter client (filter_clnt.h) and the
 * rule language (lib/rules/rules.h includes this, never the other way round:
 * the processes that only hear verdicts link no part of the rule compiler).
 *
 * Every string is owned (malloc'd). What comes from a peer goes through
 * filter_verdict_start/_add: statuses and kinds are range-checked, codes
 * outside 200..599 become 0 (the status's default), and text is copied
 * bounded with control bytes turned into '?'. Must never keep a pointer
 * into a received frame.
 */
#ifndef POSTERN_FILTER_MUT_H
#define POSTERN_FILTER_MUT_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"
#include "ipc/ipc.h"
#include "mail/stage.h"

/* The mutation kinds (FILTER_MUT.kind), from filter_muts.def. */
enum filter_mut_kind {
#define FILTER_MUT(id, name) FILTER_M_##id,
#include "filter/filter_muts.def"
#undef FILTER_MUT
    FILTER_M__COUNT
};
/* "add_rcpt", ...; "?" for a kind out of range. */
const char *filter_mut_name(enum filter_mut_kind k);

#define FILTER_MAX_REPLY_MUTS 10000  /* more announced in one reply: protocol error */

/* Caps on what mutations carry (man postern.rules(5), "Limits"). Values come
 * from mail through the rules, so every process holds them to these:
 *  - a header field a rule adds (add_header, set_header) is at most
 *    FILTER_HDR_FIELD_MAX octets, name, ": " and value, before folding (the
 *    value is cut at whitespace near the cap, else hard at a UTF-8 character
 *    boundary), and written folded at whitespace into lines of at most
 *    FILTER_HDR_FOLD octets where the value allows (never above 998);
 *  - an address or other argument longer than FILTER_MUT_ARG_MAX: the
 *    mutation is refused (it cannot be valid);
 *  - at most FILTER_MUTS_MAX mutations and FILTER_MUTS_MAX_BYTES octets of
 *    their strings per message: one evaluation that makes more fails with a
 *    temporary error (like the instruction budget); header mutations over
 *    the total that several stages made together are dropped (logged). */
#define FILTER_HDR_FIELD_MAX  998
#define FILTER_HDR_FOLD       78
#define FILTER_MUT_ARG_MAX    998
#define FILTER_MUTS_MAX       256
#define FILTER_MUTS_MAX_BYTES 65536
#define FILTER_MUT_RULE_MAX   127        /* rule names are cut to this */

/* How many bytes of value (vlen of them) to keep so that "name: value" fits
 * FILTER_HDR_FIELD_MAX; trailing whitespace of the kept part is dropped. */
size_t filter_hdr_value_cap(size_t namelen, const char *value, size_t vlen);
/* Append the field "name: value\n" to out: value capped as above, control
 * bytes as spaces, folded at whitespace (a line break inserted before a
 * blank, so unfolding gives the value back) into lines of at most
 * FILTER_HDR_FOLD octets where possible. */
void filter_hdr_fold(buf_t *out, const char *name, const char *value);
/* The octets one mutation counts against FILTER_MUTS_MAX_BYTES. */
size_t filter_mut_bytes(const char *rcpt, const char *arg, const char *arg2);

/* One mutation (FILTER_MUT / CLEANUP_MUT), strings owned. */
struct filter_mut {
    uint32_t kind;              /* enum filter_mut_kind */
    char *rcpt;                 /* address, "" = all recipients / unused */
    char *arg;                  /* header name, new sender, quarantine name, host.. */
    char *arg2;                 /* header value */
    char *rule;                 /* rule or action that made it */
};

/* A growable list of mutations kept across verdicts. */
struct filter_muts {
    struct filter_mut *v;
    int n, cap;
    size_t bytes;               /* filter_mut_bytes of the entries */
};

/* One verdict as received. */
struct filter_verdict {
    enum verdict status;
    int code;                   /* 0 = the status's default */
    char enhanced[16];
    char text[512];
    char rule[128];
    struct filter_mut *muts;    /* in the order the rules made them */
    int nmuts;
};

/* Append copies (NULL = ""): 0, or -1 (nothing added) when the list already
 * holds max entries, or when it is a header mutation (add/set_header) that
 * would take the list's bytes over FILTER_MUTS_MAX_BYTES. */
int  filter_muts_add(struct filter_muts *l, int max, uint32_t kind, const char *rcpt,
                     const char *arg, const char *arg2, const char *rule);
void filter_muts_free(struct filter_muts *l);          /* l is empty and usable after */
void filter_mut_clear(struct filter_mut *m);           /* frees the strings */

/* Bounded copy of peer text with control bytes (and DEL) as '?'. */
void filter_text_copy(char *dst, size_t size, const char *src);
char *filter_text_dup(const char *src);                /* at most 4096 bytes kept */

/* A FILTER_REPLY begins a verdict: v is overwritten, room for r->nmut
 * mutations is made (the caller checked nmut against FILTER_MAX_REPLY_MUTS). */
void filter_verdict_start(struct filter_verdict *v, const struct ipc_filter_reply *r);
/* One FILTER_MUT of it (at most the announced nmut: the caller counts);
 * -1 = unknown kind. */
int  filter_verdict_add(struct filter_verdict *v, const struct ipc_filter_mut *m);
void filter_verdict_free(struct filter_verdict *v);    /* frees muts; v stays usable */

/* ---- receiving verdicts on an event-loop connection ----------------------
 * filter answers a FILTER_REQ with FILTER_REPLY and, at once, its nmut
 * FILTER_MUT; FILTER_STAGES may come between replies. One filter_rx per
 * connection assembles the verdict; the caller matches rx->id to its
 * request when the verdict is complete. */
struct filter_rx {
    int active;                 /* a reply's mutations are still arriving */
    uint64_t id;                /* the request the reply answers */
    uint32_t want;              /* mutations announced */
    struct filter_verdict v;
};

enum filter_rx_result {
    FILTER_RX_BAD = -1,         /* protocol error: drop the connection */
    FILTER_RX_MORE = 0,         /* part of a verdict taken */
    FILTER_RX_DONE = 1,         /* rx->v is complete: take it (filter_rx_take) */
    FILTER_RX_STAGES = 2,       /* a FILTER_STAGES: m->filter_stages is the caller's */
};

/* One message from filter after its HELLO. */
enum filter_rx_result filter_rx_feed(struct filter_rx *rx, enum ipc_type t,
                                     const union ipc_msg *m);
/* Move the complete verdict to v_r (the caller frees it); rx is idle again. */
void filter_rx_take(struct filter_rx *rx, struct filter_verdict *v_r);
/* Forget a half-received verdict (the connection is gone). */
void filter_rx_reset(struct filter_rx *rx);

#endif
