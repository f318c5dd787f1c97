// What the text verbs share: option values, reading a file or stdin, opening the tokenizer
// that --tokenizer PATH names, one-line escapes, and the final flush of stdout
// (text_args.h).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "base/str.h"
#include "cli/cli.h"
#include "cli/text_args.h"

bool tw_cli_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return false;
    if (a[n] == '=') {
        *value = a + n + 1;
        return true;
    }
    if (a[n] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static int read_stdin(size_t limit, char **out, size_t *len)
{
    tw_str s;
    tw_str_init(&s);
    char buf[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (n > limit - tw_str_len(&s))
            rc = tw_error_set(TW_ELIMIT, "stdin: more than the limit of %zu bytes", limit);
        else
            rc = tw_str_append(&s, buf, n);
    }
    if (!rc && ferror(stdin))
        rc = tw_error_set(TW_EIO, "stdin: cannot read: %s", strerror(errno));
    if (!rc)
        rc = tw_str_detach(&s, out, len);
    tw_str_free(&s);
    return rc;
}

int tw_cli_read_input(const char *path, size_t limit, char **out, size_t *len)
{
    if (strcmp(path, "-") == 0)
        return read_stdin(limit, out, len);
    return tw_file_read(path, limit, out, len);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int open_folder(const char *dir, tw_tokenizer **out)
{
    char p[4096];
    int rc = tw_path_join(p, sizeof p, dir, "tokenizer.json");
    if (!rc && tw_file_exists(p))
        return tw_tokenizer_load_dir(dir, out);
    if (!rc)
        rc = tw_path_join(p, sizeof p, dir, "vocab.txt");
    if (!rc && tw_file_exists(p))
        return tw_tokenizer_load_wordpiece_vocab(p, out);
    if (rc)
        return rc;
    return tw_error_set(TW_ENOENT,
                        "%s: no tokenizer in this folder (neither tokenizer.json nor "
                        "vocab.txt)",
                        dir);
}

int tw_cli_tokenizer_open(const char *path, tw_tokenizer **out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_error_set(errno == ENOENT ? TW_ENOENT : TW_EIO, "%s: no tokenizer there: %s",
                            path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return open_folder(path, out);
    if (ends_with(path, ".txt"))
        return tw_tokenizer_load_wordpiece_vocab(path, out);
    if (!ends_with(path, "/tokenizer.json") && strcmp(path, "tokenizer.json") != 0)
        return tw_tokenizer_load(path, NULL, out);
    // The config beside a tokenizer.json: path minus "tokenizer.json" plus the config's name.
    char cfg[4096];
    size_t dir_len = strlen(path) - strlen("tokenizer.json");
    if (dir_len + sizeof "tokenizer_config.json" > sizeof cfg)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", path);
    memcpy(cfg, path, dir_len);
    memcpy(cfg + dir_len, "tokenizer_config.json", sizeof "tokenizer_config.json");
    return tw_tokenizer_load(path, tw_file_exists(cfg) ? cfg : NULL, out);
}

void tw_cli_put_escaped(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02X", c);
        else
            fputc(c, f);
    }
}

int tw_cli_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return tw_error_set(TW_EIO, "stdout: cannot write: %s", strerror(errno));
    return 0;
}

bool tw_cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool tw_cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int tw_cli_opt_long(const struct tw_verb *v, const char *opt, const char *val, long lo, long hi,
                    long *out)
{
    if (tw_cli_parse_long(val, lo, hi, out))
        return 0;
    return tw_cli_usage_error(v, "%s needs a whole number >= %ld", opt, lo);
}

bool tw_cli_snippet(const char *text, size_t max, char *buf)
{
    size_t n = strlen(text), len = n < max ? n : max;
    while (len > 0 && len < n && ((unsigned char)text[len] & 0xC0) == 0x80)
        len--; // whole characters only
    memcpy(buf, text, len);
    buf[len] = 0;
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return len < n;
}

int tw_cli_print_json(json_t *v, size_t flags)
{
    char *text = v ? json_dumps(v, flags ? flags : JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return tw_error_set(TW_ENOMEM, "out of memory");
    printf("%s\n", text);
    free(text);
    return 0;
}
