/*
 * buf.h - length-carrying growable byte buffers (the only string builder).
 *
 * Used by every process. A buf always keeps a NUL after its last byte so
 * data can be handed to C string APIs, but its length is authoritative:
 * content may hold NUL bytes. Allocation failure is fatal (log_fatal), so
 * callers never check for NULL. Never use strcpy/strcat/sprintf: use these.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

typedef struct buf {
    char  *data;   /* NUL-terminated, never NULL after buf_init */
    size_t len;    /* bytes in use, not counting the NUL */
    size_t cap;    /* allocated bytes, including room for the NUL */
} buf_t;

void  buf_init(buf_t *b, size_t hint);
void  buf_free(buf_t *b);
void  buf_reset(buf_t *b);                         /* len = 0, keeps memory */
void  buf_reserve(buf_t *b, size_t extra);         /* room for extra more bytes */
void  buf_append(buf_t *b, const void *p, size_t n);
void  buf_append_str(buf_t *b, const char *s);
void  buf_append_char(buf_t *b, char c);
void  buf_printf(buf_t *b, const char *fmt, ...) PRINTF_LIKE(2, 3); /* appends */
void  buf_vprintf(buf_t *b, const char *fmt, va_list ap);
void  buf_consume(buf_t *b, size_t n);             /* drop n bytes from the front */
void  buf_truncate(buf_t *b, size_t len);
void  buf_set(buf_t *b, const void *p, size_t n);  /* replace content */
char *buf_steal(buf_t *b);                         /* caller frees; b re-initialised */
/* Append bytes with CR, LF, NUL, DEL, other controls and backslash escaped as
 * \xHH (for log lines and headers built from wire data); UTF-8 passes. */
void  buf_append_printable(buf_t *b, const void *p, size_t n);

/* Allocation helpers: fatal on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Bounded copy: copies at most size-1 bytes and NUL-terminates.
 * Returns 0, or -1 when src did not fit (dst then holds the truncated prefix). */
int   str_copy(char *dst, size_t size, const char *src);
/* Bounded formatted write into a fixed array; -1 on truncation. */
int   str_format(char *dst, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* djb2 hash of a C string, for the small chained tables keyed by name or IP
 * (take it modulo the bucket count). */
unsigned str_hash(const char *s);
/* Is s[0..n) a host name: dot-separated labels of 1..63 letters, digits,
 * '-', '_' (and bytes >= 0x80 when utf8), 253 octets at most, no final
 * dot? (A syntax check only: no leading/trailing hyphen rules.) */
int   str_hostname_ok(const char *s, size_t n, int utf8);

#endif
