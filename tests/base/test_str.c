// Tests tw_str: appends, formatting, embedded NUL bytes, detach, and allocation failures.
#include "base/mem.h"
#include "base/str.h"
#include "check.h"

int main(void)
{
    tw_str s;
    tw_str_init(&s);
    CHECK_EQ_STR(tw_str_cstr(&s), "");
    CHECK_OK(tw_str_puts(&s, "hello"));
    CHECK_OK(tw_str_putc(&s, ' '));
    CHECK_OK(tw_str_printf(&s, "%s %d %.2f", "world", 42, 1.5));
    CHECK_EQ_STR(tw_str_cstr(&s), "hello world 42 1.50");
    CHECK_EQ_INT(tw_str_len(&s), 19);
    CHECK_OK(tw_str_append(&s, "a\0b", 3));
    CHECK_EQ_INT(tw_str_len(&s), 22);
    CHECK(memcmp(tw_str_cstr(&s) + 19, "a\0b\0", 4) == 0);
    tw_str_truncate(&s, 5);
    CHECK_EQ_STR(tw_str_cstr(&s), "hello");

    // A long formatted string crosses several growths.
    tw_str_clear(&s);
    for (int i = 0; i < 1000; i++)
        CHECK_OK(tw_str_printf(&s, "%04d,", i));
    CHECK_EQ_INT(tw_str_len(&s), 5000);
    CHECK(strncmp(tw_str_cstr(&s) + 4995, "0999,", 5) == 0);

    char *buf;
    size_t len;
    CHECK_OK(tw_str_detach(&s, &buf, &len));
    CHECK_EQ_INT(len, 5000);
    CHECK_EQ_INT(buf[5000], '\0');
    CHECK_EQ_STR(tw_str_cstr(&s), "");
    tw_free(buf);

    // Failed growth: the string keeps its text; nothing leaks.
    long base = tw_mem_live();
    for (long k = 1; k < 20; k++) {
        tw_str t;
        tw_str_init(&t);
        tw_mem_fail_after(k);
        int failed = 0;
        for (int i = 0; i < 200 && !failed; i++) {
            size_t before = tw_str_len(&t);
            if (tw_str_printf(&t, "%d;", i) != 0) {
                failed = 1;
                CHECK_EQ_INT(tw_error_code(), TW_ENOMEM);
                CHECK_EQ_INT(tw_str_len(&t), before);
                CHECK(before == 0 || tw_str_cstr(&t)[before - 1] == ';');
            }
        }
        tw_mem_fail_after(0);
        tw_str_free(&t);
        CHECK_EQ_INT(tw_mem_live(), base);
        if (!failed)
            break;
    }
    tw_str_free(&s);
    return check_report("str");
}
