/*
 * fdio.h - whole reads and writes on file descriptors, EINTR retried.
 *
 * Used by every process that writes a pipe, socket or file in one go
 * (ipc, delivery, config, queue tools). Every function returns 0 when all
 * bytes moved, -1 with errno otherwise; a file that ends early is EIO, so
 * callers never loop on short counts themselves.
 */
#ifndef POSTERN_FDIO_H
#define POSTERN_FDIO_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/buf.h"

int fdio_write_all(int fd, const void *p, size_t n);
/* iov is consumed (bases and lengths advance) as bytes go out. */
int fdio_writev_all(int fd, struct iovec *iov, int n);
/* Exactly n bytes from p at file offset off (the fd offset stays). */
int fdio_pwrite_all(int fd, const void *p, size_t n, off_t off);
/* Exactly n bytes at off into p; EIO when the file is shorter. */
int fdio_pread_all(int fd, void *p, size_t n, off_t off);
/* Exactly n bytes at off appended to out (out->len grows only on success). */
int fdio_pread_buf(int fd, off_t off, size_t n, buf_t *out);
/* Read fd to its end, appended to out; EFBIG once out would pass max bytes. */
int fdio_read_file(int fd, buf_t *out, size_t max);

#endif
