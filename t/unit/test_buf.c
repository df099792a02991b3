/*
 * test_buf.c - growable buffers, printable escaping and bounded string
 * copies (lib/util/buf.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/log.h"

static void test_append_growth(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 0);
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    for (int i = 0; i < 100000; i++)
        buf_append_char(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 100000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[26 * 1000 + 3], 'd');
    buf_append(&b, "x\0y", 3);       /* NUL inside: the length is authoritative */
    assert_int_equal(b.len, 100003);
    assert_memory_equal(b.data + 100000, "x\0y", 4);
    buf_append(&b, NULL, 0);
    assert_int_equal(b.len, 100003);
    buf_append_str(&b, "tail");
    assert_string_equal(b.data + 100003, "tail");
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
    assert_null(b.data);
}

static void test_printf_growth(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4);
    buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_printf(&b, "[%s]%05u", big, 7u);
    assert_int_equal(b.len, 4 + 1 + 4999 + 1 + 5);
    assert_int_equal(b.data[5], 'z');
    assert_string_equal(b.data + b.len - 6, "]00007");
    /* exactly filling the room left */
    buf_t c;
    buf_init(&c, 16);
    size_t room = c.cap - 1;
    buf_printf(&c, "%0*d", (int)room, 1);
    assert_int_equal(c.len, room);
    buf_printf(&c, "%s", "");
    assert_int_equal(c.len, room);
    buf_printf(&c, "+");
    assert_int_equal(c.len, room + 1);
    assert_int_equal(c.data[room], '+');
    assert_int_equal(c.data[room + 1], '\0');
    buf_free(&c);
    buf_free(&b);
}

static void test_consume_truncate_set_steal(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 16);
    buf_append_str(&b, "0123456789");
    buf_consume(&b, 3);
    assert_string_equal(b.data, "3456789");
    assert_int_equal(b.len, 7);
    buf_consume(&b, 0);
    assert_string_equal(b.data, "3456789");
    buf_consume(&b, 7);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_append_str(&b, "abc");
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);

    buf_append_str(&b, "hello world");
    buf_truncate(&b, 5);
    assert_string_equal(b.data, "hello");
    buf_truncate(&b, 50);            /* longer: no change */
    assert_int_equal(b.len, 5);
    buf_truncate(&b, 0);
    assert_string_equal(b.data, "");

    buf_set(&b, "new", 3);
    assert_string_equal(b.data, "new");
    buf_set(&b, "", 0);
    assert_int_equal(b.len, 0);
    buf_set(&b, "stolen", 6);
    char *s = buf_steal(&b);
    assert_string_equal(s, "stolen");
    free(s);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_append_str(&b, "again");
    assert_string_equal(b.data, "again");
    buf_free(&b);
}

static void test_printable(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4);
    static const char in[] = "a\r\nb\\\0\x7f\x01 caf\xc3\xa9~";
    buf_append_printable(&b, in, sizeof(in) - 1);
    assert_string_equal(b.data, "a\\x0d\\x0ab\\x5c\\x00\\x7f\\x01 caf\xc3\xa9~");
    buf_reset(&b);
    buf_append_printable(&b, "", 0);
    assert_int_equal(b.len, 0);
    /* every byte value: nothing below 0x20, no DEL or backslash survives */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    buf_append_printable(&b, all, sizeof(all));
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        assert_true(c >= 0x20 && c != 0x7f);
        if (c == '\\')
            assert_int_equal(b.data[i + 1], 'x');
    }
    assert_int_equal(b.len, (0x20 + 2) * 4 + (256 - 0x20 - 2));
    buf_free(&b);
}

static void test_str_copy_format(void **state)
{
    (void)state;
    char d[6];
    assert_int_equal(str_copy(d, sizeof(d), "abc"), 0);
    assert_string_equal(d, "abc");
    assert_int_equal(str_copy(d, sizeof(d), "abcde"), 0);
    assert_string_equal(d, "abcde");
    assert_int_equal(str_copy(d, sizeof(d), "abcdef"), -1);
    assert_string_equal(d, "abcde");
    assert_int_equal(str_copy(d, sizeof(d), ""), 0);
    assert_string_equal(d, "");
    d[0] = 'q';
    assert_int_equal(str_copy(d, 0, "x"), -1);
    assert_int_equal(d[0], 'q');
    assert_int_equal(str_copy(d, 1, "x"), -1);
    assert_string_equal(d, "");

    assert_int_equal(str_format(d, sizeof(d), "%d%s", 12, "ab"), 0);
    assert_string_equal(d, "12ab");
    assert_int_equal(str_format(d, sizeof(d), "%d", 12345), 0);
    assert_int_equal(str_format(d, sizeof(d), "%d", 123456), -1);
    assert_string_equal(d, "12345");

    char *p = xstrndup("hello", 3);
    assert_string_equal(p, "hel");
    free(p);
    p = xstrdup("");
    assert_string_equal(p, "");
    free(p);
    int *z = xcalloc(4, sizeof(int));
    assert_int_equal(z[0] | z[1] | z[2] | z[3], 0);
    z = xrealloc(z, 0);
    free(z);
}

static jmp_buf fatal_jmp;
static enum log_level fatal_lvl;

static void fatal_hook(enum log_level lvl, const char *msg)
{
    (void)msg;
    fatal_lvl = lvl;
    longjmp(fatal_jmp, 1);
}

static void test_overflow_is_fatal(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 16);
    buf_append_str(&b, "x");
    log_set_fatal_hook(fatal_hook);
    if (setjmp(fatal_jmp) == 0) {
        buf_reserve(&b, SIZE_MAX - 4);
        fail_msg("buf_reserve(SIZE_MAX) returned");
    }
    log_set_fatal_hook(NULL);
    assert_int_equal(fatal_lvl, LOG_L_FATAL);
    assert_string_equal(b.data, "x");
    buf_free(&b);
}

int main(void)
{
    log_init("test_buf", 1, 0, LOG_L_PANIC);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_growth),
        cmocka_unit_test(test_printf_growth),
        cmocka_unit_test(test_consume_truncate_set_steal),
        cmocka_unit_test(test_printable),
        cmocka_unit_test(test_str_copy_format),
        cmocka_unit_test(test_overflow_is_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
