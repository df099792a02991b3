/*
 * test_fdio.c - whole reads and writes (lib/util/fdio.c) and the monotonic
 * clock (lib/util/clock.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/fdio.h"
#include "util/log.h"

static int tmpfile_fd(void)
{
    char path[] = "/tmp/test_fdio.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_write_pread(void **state)
{
    (void)state;
    int fd = tmpfile_fd();
    char big[200000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(fdio_write_all(fd, big, sizeof(big)), 0);
    char back[10];
    assert_int_equal(fdio_pread_all(fd, back, sizeof(back), 26), 0);
    assert_memory_equal(back, "abcdefghij", 10);
    errno = 0;
    assert_int_equal(fdio_pread_all(fd, back, sizeof(back), sizeof(big) - 5), -1);
    assert_int_equal(errno, EIO);          /* the file is shorter */
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "x");
    assert_int_equal(fdio_pread_buf(fd, 1, 3, &b), 0);
    assert_string_equal(b.data, "xbcd");
    assert_int_equal(fdio_pread_buf(fd, sizeof(big), 3, &b), -1);
    assert_string_equal(b.data, "xbcd");  /* unchanged on failure */
    assert_int_equal(fdio_pwrite_all(fd, "ZZ", 2, 1), 0);
    buf_reset(&b);
    assert_int_equal(fdio_pread_buf(fd, 0, 4, &b), 0);
    assert_string_equal(b.data, "aZZd");
    buf_free(&b);
    close(fd);
}

static void test_writev_and_read_file(void **state)
{
    (void)state;
    int fd = tmpfile_fd();
    struct iovec iov[3] = { { "", 0 }, { "head:", 5 }, { "body", 4 } };
    assert_int_equal(fdio_writev_all(fd, iov, 3), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    buf_t b;
    buf_init(&b, 0);
    assert_int_equal(fdio_read_file(fd, &b, 100), 0);
    assert_string_equal(b.data, "head:body");
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    buf_reset(&b);
    errno = 0;
    assert_int_equal(fdio_read_file(fd, &b, 8), -1);
    assert_int_equal(errno, EFBIG);
    buf_free(&b);
    close(fd);
}

static void test_clock(void **state)
{
    (void)state;
    int64_t a = clock_now_ms();
    usleep(20000);
    int64_t d = clock_now_ms() - a;
    assert_true(d >= 15 && d < 2000);
}

int main(void)
{
    log_init("test_fdio", 1, 0, LOG_L_PANIC);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_pread),
        cmocka_unit_test(test_writev_and_read_file),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
