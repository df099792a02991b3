/*
 * fdio.c - whole reads and writes on file descriptors, EINTR retried.
 *
 * One home for the write-all and read-all loops that each caller used to
 * spell out; a zero-byte transfer is an error (EIO), never a spin.
 */
#include <errno.h>
#include <unistd.h>

#include "util/fdio.h"

enum { OP_WRITE, OP_PREAD, OP_PWRITE };

/* n bytes at p through op (write ignores off); a transfer of nothing is EIO. */
static int xfer_all(int op, int fd, char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t k = op == OP_WRITE ? write(fd, p, n) :
                    op == OP_PREAD ? pread(fd, p, n, off) : pwrite(fd, p, n, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

int fdio_write_all(int fd, const void *p, size_t n)
{
    return xfer_all(OP_WRITE, fd, (char *)p, n, 0);
}

int fdio_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    return xfer_all(OP_PWRITE, fd, (char *)p, n, off);
}

int fdio_writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0 && iov->iov_len == 0) {
        iov++;
        n--;
    }
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int fdio_pread_all(int fd, void *p, size_t n, off_t off)
{
    return xfer_all(OP_PREAD, fd, p, n, off);
}

int fdio_pread_buf(int fd, off_t off, size_t n, buf_t *out)
{
    buf_reserve(out, n);
    if (fdio_pread_all(fd, out->data + out->len, n, off) < 0) {
        out->data[out->len] = '\0';
        return -1;
    }
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

int fdio_read_file(int fd, buf_t *out, size_t max)
{
    size_t start = out->len;
    for (;;) {
        buf_reserve(out, 65536);
        ssize_t r = read(fd, out->data + out->len, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        out->len += (size_t)r;
        out->data[out->len] = '\0';
        if (out->len - start > max) {
            errno = EFBIG;
            return -1;
        }
    }
}
