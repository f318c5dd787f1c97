// Tests text/clean.h: UTF-8 decoding (maximal subparts), NFC, removals, the joiners and
// tags decided by context, the prose character rule of articles and posts, the whitespace
// layout of prose and of code, allocation failures, and the State of the Union corpus.
// Bytes are written as hex escapes, or octal ones ("\275b") where the next character is a hex
// digit that a hex escape would swallow.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "sotu.h"
#include "text/clean.h"
#include "text/utf8.h"

// The cleaned text of a C string (a static buffer: valid until the next call).
static const char *clean_n(enum tw_category cat, const char *in, size_t n)
{
    static char buf[1 << 16];
    tw_str s;
    tw_str_init(&s);
    int rc = tw_text_clean(cat, in, n, &s);
    if (rc) {
        fprintf(stderr, "tw_text_clean: %s\n", tw_error_msg());
        snprintf(buf, sizeof buf, "<error %d>", rc);
    } else {
        REQUIRE(tw_str_len(&s) < sizeof buf);
        memcpy(buf, tw_str_cstr(&s), tw_str_len(&s) + 1);
    }
    tw_str_free(&s);
    return buf;
}

static const char *clean(enum tw_category cat, const char *in)
{
    return clean_n(cat, in, strlen(in));
}

static const enum tw_category all_cats[] = { TW_CATEGORY_ARTICLE, TW_CATEGORY_POST,
                                             TW_CATEGORY_REPOSITORY, TW_CATEGORY_OTHER };

static void test_categories(void)
{
    CHECK_EQ_INT(tw_category_parse("article"), TW_CATEGORY_ARTICLE);
    CHECK_EQ_INT(tw_category_parse("Articles"), TW_CATEGORY_ARTICLE);
    CHECK_EQ_INT(tw_category_parse("posts"), TW_CATEGORY_POST);
    CHECK_EQ_INT(tw_category_parse("repositories"), TW_CATEGORY_REPOSITORY);
    CHECK_EQ_INT(tw_category_parse("REPO"), TW_CATEGORY_REPOSITORY);
    CHECK_EQ_INT(tw_category_parse("code"), TW_CATEGORY_REPOSITORY);
    CHECK_EQ_INT(tw_category_parse("postsx"), TW_CATEGORY_OTHER);
    CHECK_EQ_INT(tw_category_parse("pos"), TW_CATEGORY_OTHER);
    CHECK_EQ_INT(tw_category_parse(""), TW_CATEGORY_OTHER);
    CHECK_EQ_INT(tw_category_parse(NULL), TW_CATEGORY_OTHER);
    CHECK_EQ_STR(tw_category_name(TW_CATEGORY_REPOSITORY), "repository");
    CHECK_EQ_STR(tw_category_name(TW_CATEGORY_OTHER), "other");
    CHECK_EQ_STR(tw_category_name(tw_category_parse("post")), "post");
}

// The code points of the cleaned text of s[0, n) (category other), as "%X " each.
static const char *cleaned_cps(const char *s, size_t n)
{
    static char out[512];
    const char *t = clean_n(TW_CATEGORY_OTHER, s, n);
    size_t o = 0, tl = strlen(t);
    out[0] = 0;
    for (size_t i = 0; i < tl;) {
        uint32_t c;
        i += tw_utf8_decode(t + i, tl - i, &c);
        o += (size_t)snprintf(out + o, sizeof out - o, "%X ", (unsigned)c);
    }
    return out;
}

static void test_decode(void)
{
    // One U+FFFD per maximal invalid subpart: the expected values are Python's
    // bytes.decode("utf-8", "replace").
    CHECK_EQ_STR(cleaned_cps("\xF0\x80\x80\x80", 4), "FFFD FFFD FFFD FFFD ");
    CHECK_EQ_STR(cleaned_cps("\xED\xA0\x80", 3), "FFFD FFFD FFFD ");
    CHECK_EQ_STR(cleaned_cps("x\342\202y", 4), "78 FFFD 79 ");
    CHECK_EQ_STR(cleaned_cps("\xF4\x90\x80\x80", 4), "FFFD FFFD FFFD FFFD ");
    CHECK_EQ_STR(cleaned_cps("\xC0\xAF", 2), "FFFD FFFD ");
    CHECK_EQ_STR(cleaned_cps("\xE0\x80\xAF", 3), "FFFD FFFD FFFD ");
    CHECK_EQ_STR(cleaned_cps("\xF1\x80\x80", 3), "FFFD ");
    // Unicode 15, table 3-8.
    CHECK_EQ_STR(cleaned_cps("\341\200\342\360\221\222\361\277A", 9), "FFFD FFFD FFFD FFFD 41 ");
    // Valid characters pass; U+10FFFF, a noncharacter, is removed.
    CHECK_EQ_STR(cleaned_cps("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF", 13),
                 "E9 20AC 1F600 ");
    CHECK_EQ_INT(tw_clean_count_chars("h\303\251llo \xF0\x9F\x98\x80", 11), 7);
    CHECK_EQ_INT(tw_clean_count_chars("a\xE2\x82", 3), 2);
    CHECK_EQ_INT(tw_clean_count_chars("\xF0\x80\x80\x80", 4), 4);
    CHECK_EQ_INT(tw_clean_count_chars("", 0), 0);
}

static void test_invalid_utf8(void)
{
    for (size_t k = 0; k < 4; k++) {
        const char *want =
            all_cats[k] == TW_CATEGORY_REPOSITORY ? "a\xEF\xBF\275b\n" : "a\xEF\xBF\275b";
        CHECK_EQ_STR(clean_n(all_cats[k], "a\377b", 3), want);
    }
    CHECK_EQ_STR(clean_n(TW_CATEGORY_ARTICLE, "x\xE2\x82y", 4), "x\xEF\xBF\xBDy");
    CHECK_EQ_STR(clean_n(TW_CATEGORY_POST, "\xED\xA0\x80!", 4),
                 "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!");
    CHECK_EQ_STR(clean_n(TW_CATEGORY_REPOSITORY, "s = \"\xC0\"", 7), "s = \"\xEF\xBF\xBD\"\n");
    // A truncated sequence at the very end.
    CHECK_EQ_STR(clean_n(TW_CATEGORY_OTHER, "end\xF0\x9F\x98", 6), "end\xEF\xBF\xBD");
}

static void test_whitespace_prose(void)
{
    const char *in =
        "  Hello   world.\t\tAgain.  \n\n\n   Next \t paragraph here.   \nline two  \n";
    const char *want = "Hello world. Again.\n\nNext paragraph here.\nline two";
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, in), want);
    CHECK_EQ_STR(clean(TW_CATEGORY_POST, in), want);
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, in), want);
    // Line endings; a blank line made of spaces is still a blank line.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\r\n \t \r\nb\rc\r\n"), "a\n\nb\nc");
    // Non-breaking and other Unicode spaces, the Unicode line and paragraph separators.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\xC2\xA0\xC2\240b\xE3\x80\200c"), "a b c");
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\xE2\x80\250b\xE2\x80\251c"), "a\nb\n\nc");
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, "a\fb\vc"), "a\nb\nc");
    // Nothing but whitespace, and nothing.
    for (size_t k = 0; k < 4; k++) {
        CHECK_EQ_STR(clean(all_cats[k], " \t\n\r\n  \xC2\xA0\n"), "");
        CHECK_EQ_STR(clean(all_cats[k], ""), "");
    }
}

static void test_nfc(void)
{
    // e + COMBINING ACUTE ACCENT -> é (U+00E9), in every category.
    for (size_t k = 0; k < 4; k++) {
        const char *want = all_cats[k] == TW_CATEGORY_REPOSITORY ? "caf\xC3\xA9\n" : "caf\xC3\xA9";
        CHECK_EQ_STR(clean(all_cats[k], "cafe\xCC\x81"), want);
    }
    // Canonical reordering, then composition: a + dot below (220) + acute (230) = U+1EA1 +
    // U+0301 whichever order the marks came in.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\xCC\x81\xCC\xA3"), "\xE1\xBA\xA1\xCC\x81");
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\xCC\xA3\xCC\x81"), "\xE1\xBA\xA1\xCC\x81");
    // Hangul jamo compose to a syllable.
    CHECK_EQ_STR(clean(TW_CATEGORY_POST, "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");
    // A control character between a letter and its mark goes first, then they compose.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "e\x01\xCC\x81"), "\xC3\xA9");
    // NFC does not fold compatibility characters (that would be NFKC): the ligature stays.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "\xEF\xAC\x81ne"), "\xEF\xAC\x81ne");
}

static void test_removals(void)
{
    // C0, DEL, C1 controls vanish without leaving a space.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "a\001b\x7F c\xC2\200d\x1B[0m"), "ab cd[0m");
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, "x\x00y\x07z"), "x\n");
    CHECK_EQ_STR(clean_n(TW_CATEGORY_REPOSITORY, "x\x00y\x07z", 5), "xyz\n");
    CHECK_EQ_STR(clean_n(TW_CATEGORY_REPOSITORY, "a\fb\013c", 5), "abc\n");
    // Zero-width space, BOM, word joiner, soft hyphen, bidi marks and isolates.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "\xEF\xBB\xBFzero\xE2\x80\x8Bwidth\xE2\x81\xA0join"
                                            "\xC2\255ed \xE2\x80\x8Fx\xE2\x81\xA6y\xE2\x81\xA9"),
                 "zerowidthjoined xy");
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, "\xEF\xBB\xBFint x;"), "int x;\n");
    // Private use and noncharacters.
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, "a\xEE\x80\200b\xEF\xB7\220c\xEF\xBF\277d"), "abcd");
    // Tag characters outside an emoji: invisible text, removed ("ASCII smuggling").
    for (size_t k = 0; k < 4; k++) {
        const char *want = all_cats[k] == TW_CATEGORY_REPOSITORY ? "hi there\n" : "hi there";
        CHECK_EQ_STR(clean(all_cats[k], "hi\xF3\xA0\x81\x81\xF3\xA0\x81\x82 there"), want);
    }
}

#define WOMAN_TECH "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB" // 👩 ZWJ 💻
#define THUMB_MED  "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD"             // 👍 + skin tone
#define FLAG_ENG                                                                       \
    "\xF0\x9F\x8F\xB4\xF3\xA0\x81\xA7\xF3\xA0\x81\xA2\xF3\xA0\x81\xA5\xF3\xA0\x81\xAE" \
    "\xF3\xA0\x81\xA7\xF3\xA0\x81\xBF"             // 🏴 + tags g b e n g + cancel tag
#define FLAG_FR "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7" // regional indicators F R

static void test_emoji_and_joiners(void)
{
    const char *in = "I code " WOMAN_TECH " daily " THUMB_MED " " FLAG_ENG " " FLAG_FR "!";
    // Posts keep whole emoji sequences (ZWJ, modifiers, tags included).
    CHECK_EQ_STR(clean(TW_CATEGORY_POST, in), in);
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, in), in);
    // Articles drop them, with their ZWJ, modifiers and tags.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, in), "I code daily !");
    // A ZWJ that joins nothing goes.
    CHECK_EQ_STR(
        clean(TW_CATEGORY_POST, "a\xE2\x80\x8D b \xE2\x80\215c \xF0\x9F\x98\x80\xE2\x80\x8D"),
        "a b c \xF0\x9F\x98\x80");
    // ZWNJ and ZWJ inside words of Persian and Devanagari are spelling: kept.
    const char *fa = "\xD9\x85\xDB\x8C\xE2\x80\x8C\xD8\xAE\xD9\x88\xD8\xA7\xD9\x87\xD9\x85";
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, fa), fa);
    const char *hi = "\xE0\xA4\x95\xE0\xA5\x8D\xE2\x80\x8D\xE0\xA4\xB7"; // क ् ZWJ ष
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, hi), hi);
    // Emoji in code (a string literal) are kept as they are.
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, "s = \"" WOMAN_TECH "\""),
                 "s = \"" WOMAN_TECH "\"\n");
}

static void test_prose_rule(void)
{
    const char *in = "Price: $5 (50%) \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D it's; "
                     "x<b>y | z*w \xC2\xA9 2024 \xE2\x84\xA2 \xE2\x86\x92 g \xE2\x80\xA2 h "
                     "\xC2\2611 \xC2\260C \xE2\x82\2543 [a] {b} #1 a@b.c 1/2 A&B "
                     "x^2 `k` ~n a=b c\\d e_f \xC2\xBFQu\xC3\xA9?";
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, in),
                 "Price: $5 (50%) \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D it's; "
                 "x b y z w 2024 g h \xC2\2611 \xC2\260C \xE2\x82\2543 [a] {b} #1 a@b.c "
                 "1/2 A&B x 2 k n a b c d e_f \xC2\xBFQu\xC3\xA9?");
    // Posts also keep © and ™ (Extended_Pictographic); the arrow is a symbol, not an emoji.
    CHECK_EQ_STR(clean(TW_CATEGORY_POST, "\xC2\xA9 2024 \xE2\x84\xA2 \xE2\x86\x92 g"),
                 "\xC2\xA9 2024 \xE2\x84\xA2 g");
    // Other and code keep every symbol.
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, "x<b>y | z*w \xC2\xA9 \xE2\x86\x92 a=b"),
                 "x<b>y | z*w \xC2\xA9 \xE2\x86\x92 a=b");
    // Letters of every script, digits of other scripts, CJK punctuation.
    const char *scripts =
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "                         // Привет
        "\xCE\xB3\xCE\xB5\xCE\xB9\xCE\xB1 "                                         // γεια
        "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D "                                         // שלום
        "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82 "                                     // 你好。
        "\xD9\xA1\xD9\xA2\xD9\xA3 "                                                 // ١٢٣
        "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87"; // नमस्ते
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, scripts), scripts);
    // Marks follow their base: an orphan mark at the start of a line or after noise goes.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "\xCC\201abc \xE2\x86\x92\xCC\201d"), "abc d");
    CHECK_EQ_STR(clean(TW_CATEGORY_OTHER, "\xCC\201abc"), "\xCC\201abc");
    // Markdown leftovers: bullets and emphasis go, the words stay.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "* one\n* **two**\n\xE2\x80\xA2 three"),
                 "one\ntwo\nthree");
    // The reference's rule would have dropped these; twin keeps them.
    CHECK_EQ_STR(clean(TW_CATEGORY_ARTICLE, "\"Don't\" -- she said: (yes); 100%."),
                 "\"Don't\" -- she said: (yes); 100%.");
}

static void test_code(void)
{
    const char *in = "\n\n  \ndef f(x):\r\n\tif x:   \r\n        return x->y * 2 | 3\t\n\n\n\n"
                     "class A:\n    pass   \n\n\n";
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, in),
                 "def f(x):\n\tif x:\n        return x->y * 2 | 3\n\n\n\nclass A:\n    pass\n");
    // Indentation of the first line is kept even after leading blank lines.
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, "\n\n    x = 1  \n  \n"), "    x = 1\n");
    // Spaces inside a line (alignment) are kept exactly; printable ASCII all kept.
    const char *ascii = "a  =  1;   // <tag> {x} [y] `z` ~w ^v |u \\t @s #r $q %p &o *n";
    tw_str want;
    tw_str_init(&want);
    CHECK_OK(tw_str_printf(&want, "%s\n", ascii));
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, ascii), tw_str_cstr(&want));
    tw_str_free(&want);
    // Every printable ASCII character survives.
    char all[96];
    for (int c = 0x21; c < 0x7F; c++)
        all[c - 0x21] = (char)c;
    all[0x7F - 0x21] = 0;
    const char *got = clean(TW_CATEGORY_REPOSITORY, all);
    CHECK(strncmp(got, all, strlen(all)) == 0 && got[strlen(all)] == '\n');
    // Unicode line separators in code are characters, not line breaks.
    CHECK_EQ_STR(clean(TW_CATEGORY_REPOSITORY, "a\xE2\x80\250b"), "a\xE2\x80\250b\n");
}

static void test_appends_and_failures(void)
{
    long base = tw_mem_live();
    tw_str s;
    tw_str_init(&s);
    CHECK_OK(tw_str_puts(&s, "X|"));
    CHECK_OK(tw_text_clean(TW_CATEGORY_ARTICLE, "  a  b ", 7, &s));
    CHECK_EQ_STR(tw_str_cstr(&s), "X|a b");

    // A failed allocation anywhere leaves out as it was and leaks nothing.
    const char *in = "Caf\x65\xCC\x81  \xF0\x9F\x98\x80 and some more text.\n\n\n"
                     "A second paragraph, long enough to make the buffers grow a few times.";
    int failures = 0;
    for (long k = 1; k < 60; k++) {
        tw_mem_fail_after(k);
        int rc = tw_text_clean(TW_CATEGORY_POST, in, strlen(in), &s);
        tw_mem_fail_after(0);
        if (rc) {
            failures++;
            CHECK_EQ_INT(rc, TW_ENOMEM);
            CHECK_EQ_STR(tw_str_cstr(&s), "X|a b");
            CHECK(strstr(tw_error_msg(), "clean: post") != NULL);
        } else {
            CHECK(strncmp(tw_str_cstr(&s), "X|a b", 5) == 0);
            tw_str_truncate(&s, 5);
        }
    }
    CHECK(failures > 0);
    tw_str_free(&s);
    CHECK_EQ_INT(tw_mem_live(), base);
}

// ---- the corpus

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t count_alnum(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9');
    return k;
}

static void test_sotu(void)
{
    const char *root = test_source_dir();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/.cache/data/sotu", root);
    DIR *d = opendir(dir);
    if (!d) {
        printf("test_clean: %s missing, corpus checks skipped\n", dir);
        return;
    }
    char *names[512];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 512) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0)
            names[n++] = tw_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    CHECK(n >= 200);
    size_t paragraphs_in = 0, paragraphs_out = 0, dashes = 0, degrees = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *raw = test_read_file(path, &len);
        REQUIRE(raw);
        // The files lost their line breaks; a double space is where a paragraph ended (in
        // the few files that have them).
        for (size_t k = 0; k + 1 < len; k++) {
            if (raw[k] == ' ' && raw[k + 1] == ' ' && k > 0 && raw[k - 1] != ' ') {
                raw[k] = raw[k + 1] = '\n';
                paragraphs_in++;
            }
        }
        tw_str a, b;
        tw_str_init(&a);
        tw_str_init(&b);
        CHECK_OK(tw_text_clean(TW_CATEGORY_ARTICLE, raw, len, &a));
        const char *t = tw_str_cstr(&a);
        size_t tl = tw_str_len(&a);
        CHECK(tw_utf8_valid(t, tl));
        CHECK(strstr(t, "  ") == NULL && strstr(t, " \n") == NULL && strstr(t, "\n ") == NULL);
        CHECK(strstr(t, "\n\n\n") == NULL);
        CHECK(tl > 0 && t[0] != ' ' && t[0] != '\n' && t[tl - 1] != ' ' && t[tl - 1] != '\n');
        // No letter or digit is lost (the corpus is plain ASCII prose plus dashes and °).
        CHECK_EQ_INT(count_alnum(t, tl), count_alnum(raw, len));
        for (const char *p = t; (p = strstr(p, "\n\n")) != NULL; p += 2)
            paragraphs_out++;
        for (const char *p = t; (p = strstr(p, "\xE2\x80\x94")) != NULL; p += 3)
            dashes++;
        for (const char *p = t; (p = strstr(p, "\xC2\xB0")) != NULL; p += 2)
            degrees++;
        // Cleaning is idempotent.
        CHECK_OK(tw_text_clean(TW_CATEGORY_ARTICLE, t, tl, &b));
        CHECK(tw_str_len(&b) == tl && memcmp(tw_str_cstr(&b), t, tl) == 0);
        tw_str_free(&a);
        tw_str_free(&b);
        tw_free(raw);
        tw_free(names[i]);
    }
    CHECK(paragraphs_in > 100);
    CHECK(paragraphs_out > 0 && paragraphs_out <= paragraphs_in);
    CHECK(dashes > 0);
    CHECK(degrees > 0);
}

int main(void)
{
    test_categories();
    test_decode();
    test_invalid_utf8();
    test_whitespace_prose();
    test_nfc();
    test_removals();
    test_emoji_and_joiners();
    test_prose_rule();
    test_code();
    test_appends_and_failures();
    test_sotu();
    return check_report("test_clean");
}
