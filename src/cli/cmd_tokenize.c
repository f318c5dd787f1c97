// twin tokenize: encodes a text with a tokenizer (ids; pieces with their byte spans; JSON)
// or, with --decode, turns ids back into text. Reads the argument or stdin; needs no home.
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

enum format { FORMAT_IDS, FORMAT_PIECES, FORMAT_JSON };

struct args {
    const char *tokenizer;
    const char *input; // the TEXT argument, or "-" for stdin
    bool from_stdin;
    const char *format_flag; // --ids, --pieces or --json as written; NULL: the default
    enum format format;
    bool special, decode, skip_special;
};

static int parse_args(int argc, char **argv, struct args *a)
{
    const struct tw_verb *v = &tw_verb_tokenize;
    bool only_text = false, have_text = false;
    a->input = "-";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val;
        if (only_text || s[0] != '-' || strcmp(s, "-") == 0) {
            if (have_text)
                return tw_cli_usage_error(v,
                                          "unexpected argument '%s' (quote a TEXT that "
                                          "has spaces)",
                                          s);
            have_text = true;
            a->input = s;
            a->from_stdin = !only_text && strcmp(s, "-") == 0;
        } else if (strcmp(s, "--") == 0) {
            only_text = true;
        } else if (tw_cli_opt(argc, argv, &i, "--tokenizer", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--tokenizer needs a PATH");
            a->tokenizer = val;
        } else if (!strcmp(s, "--ids") || !strcmp(s, "--pieces") || !strcmp(s, "--json")) {
            if (a->format_flag && strcmp(a->format_flag, s) != 0)
                return tw_cli_usage_error(v, "%s and %s exclude each other", a->format_flag, s);
            a->format_flag = s;
            a->format = s[2] == 'i' ? FORMAT_IDS : s[2] == 'p' ? FORMAT_PIECES : FORMAT_JSON;
        } else if (strcmp(s, "--special") == 0) {
            a->special = true;
        } else if (strcmp(s, "--decode") == 0) {
            a->decode = true;
        } else if (strcmp(s, "--skip-special") == 0) {
            a->skip_special = true;
        } else {
            return tw_cli_usage_error(v, "unknown option '%s'", s);
        }
    }
    if (!have_text)
        a->from_stdin = true;
    if (!a->tokenizer)
        return tw_cli_usage_error(v, "--tokenizer PATH is required");
    if (a->decode && (a->format_flag || a->special))
        return tw_cli_usage_error(v, "--decode prints text: %s does not go with it",
                                  a->format_flag ? a->format_flag : "--special");
    if (a->skip_special && !a->decode)
        return tw_cli_usage_error(v, "--skip-special goes with --decode");
    return TW_EXIT_OK;
}

// ---- encoding

static void print_ids(const tw_vec *ids)
{
    for (size_t i = 0; i < ids->len; i++)
        printf("%s%" PRId32, i ? " " : "", TW_VEC_AT(ids, int32_t, i));
    printf("\n");
}

static void print_pieces(const tw_tokenizer *t, const tw_vec *ids, const tw_vec *spans)
{
    for (size_t i = 0; i < ids->len; i++) {
        int32_t id = TW_VEC_AT(ids, int32_t, i);
        const struct tw_span *sp = &TW_VEC_AT(spans, struct tw_span, i);
        const char *piece = tw_tokenizer_id_to_piece(t, id);
        printf("%" PRId32 "\t", id);
        if (piece)
            tw_cli_put_escaped(stdout, piece, strlen(piece));
        printf("\t%" PRIu32 "-%" PRIu32 "\n", sp->start, sp->end);
    }
}

// A JSON string of a piece; a piece that is not UTF-8 (none of the supported vocabularies
// has one, but a vocabulary file may) gets U+FFFD for its invalid bytes.
static json_t *piece_json(const char *piece)
{
    size_t n = piece ? strlen(piece) : 0;
    if (!piece || tw_utf8_valid(piece, n))
        return json_stringn(piece ? piece : "", n);
    tw_str s;
    tw_str_init(&s);
    json_t *j = NULL;
    if (tw_utf8_sanitize(piece, n, &s) == 0)
        j = json_stringn(tw_str_cstr(&s), tw_str_len(&s));
    tw_str_free(&s);
    return j;
}

// {"ids":[...],"tokens":[...],"spans":[[s,e],...]} on one line.
static int print_json(const tw_tokenizer *t, const tw_vec *ids, const tw_vec *spans)
{
    tw_json_init();
    json_t *root = json_object(), *jids = json_array(), *jtok = json_array();
    json_t *jspans = json_array();
    bool bad = !root || !jids || !jtok || !jspans;
    for (size_t i = 0; i < ids->len && !bad; i++) {
        int32_t id = TW_VEC_AT(ids, int32_t, i);
        const struct tw_span *sp = &TW_VEC_AT(spans, struct tw_span, i);
        json_t *pair = json_pack("[II]", (json_int_t)sp->start, (json_int_t)sp->end);
        bad = json_array_append_new(jids, json_integer(id)) != 0 ||
              json_array_append_new(jtok, piece_json(tw_tokenizer_id_to_piece(t, id))) != 0 ||
              json_array_append_new(jspans, pair) != 0;
    }
    if (!bad)
        bad = json_object_set(root, "ids", jids) != 0 ||
              json_object_set(root, "tokens", jtok) != 0 ||
              json_object_set(root, "spans", jspans) != 0;
    char *out = NULL;
    int rc = bad ? tw_error_set(TW_ENOMEM, "tokenize: out of memory building the JSON")
                 : tw_json_dump(root, JSON_COMPACT, &out);
    if (!rc)
        printf("%s\n", out);
    tw_free(out);
    json_decref(jids);
    json_decref(jtok);
    json_decref(jspans);
    json_decref(root);
    return rc;
}

static int encode(const tw_tokenizer *t, const struct args *a, const char *text, size_t len)
{
    tw_vec ids, spans;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&spans, sizeof(struct tw_span));
    int flags = a->special ? TW_TOK_ADD_SPECIAL : 0;
    int rc = tw_tokenizer_encode(t, text, len, flags, &ids, &spans);
    if (!rc && a->format == FORMAT_IDS)
        print_ids(&ids);
    else if (!rc && a->format == FORMAT_PIECES)
        print_pieces(t, &ids, &spans);
    else if (!rc)
        rc = print_json(t, &ids, &spans);
    tw_vec_free(&ids);
    tw_vec_free(&spans);
    tw_tokenizer_thread_cleanup();
    return rc;
}

// ---- decoding

static bool is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

// The id that tok[0, n), the pos-th (from 1) of the input `what`, spells.
static int parse_id(const tw_tokenizer *t, const char *tok, size_t n, size_t pos, const char *what,
                    int32_t *out)
{
    int shown = n > 40 ? 40 : (int)n;
    const char *more = n > 40 ? "..." : "";
    size_t digits = tok[0] == '-' ? 1 : 0;
    while (digits < n && tok[digits] >= '0' && tok[digits] <= '9')
        digits++;
    if (digits != n || n == (tok[0] == '-' ? 1u : 0u))
        return tw_error_set(TW_EINVAL, "--decode: %s: token %zu '%.*s%s': not an id (an integer)",
                            what, pos, shown, tok, more);
    long long id = -1;
    if (n <= 11) {
        char buf[12];
        memcpy(buf, tok, n);
        buf[n] = '\0';
        id = strtoll(buf, NULL, 10);
    }
    int32_t vocab = tw_tokenizer_vocab_size(t);
    if (id < 0 || id >= vocab || !tw_tokenizer_id_to_piece(t, (int32_t)id))
        return tw_error_set(TW_EINVAL,
                            "--decode: %s: token %zu '%.*s%s': no such id in the vocabulary "
                            "(ids 0 to %" PRId32 ")",
                            what, pos, shown, tok, more, vocab - 1);
    *out = (int32_t)id;
    return 0;
}

static int decode(const tw_tokenizer *t, const struct args *a, const char *in, size_t len)
{
    const char *what = a->from_stdin ? "stdin" : "the argument";
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = 0;
    size_t pos = 0;
    for (size_t i = 0; i < len && !rc;) {
        while (i < len && is_space(in[i]))
            i++;
        size_t s = i;
        while (i < len && !is_space(in[i]))
            i++;
        int32_t id;
        if (i > s && !(rc = parse_id(t, in + s, i - s, ++pos, what, &id)))
            rc = tw_vec_push(&ids, &id);
    }
    tw_str out;
    tw_str_init(&out);
    if (!rc)
        rc = tw_tokenizer_decode(t, ids.data, ids.len, a->skip_special ? TW_TOK_SKIP_SPECIAL : 0,
                                 &out);
    if (!rc) {
        fwrite(tw_str_cstr(&out), 1, tw_str_len(&out), stdout);
        printf("\n");
    }
    tw_str_free(&out);
    tw_vec_free(&ids);
    return rc;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    (void)cli;
    struct args a = { 0 };
    int ec = parse_args(argc, argv, &a);
    if (ec != TW_EXIT_OK)
        return ec;
    tw_tokenizer *t;
    if (tw_cli_tokenizer_open(a.tokenizer, &t) != 0)
        return tw_cli_fail();
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;
    if (a.from_stdin)
        rc = tw_cli_read_input("-", TW_CLI_INPUT_LIMIT, &buf, &len);
    const char *text = a.from_stdin ? buf : a.input;
    if (!a.from_stdin)
        len = strlen(text);
    if (!rc)
        rc = a.decode ? decode(t, &a, text, len) : encode(t, &a, text, len);
    if (!rc)
        rc = tw_cli_flush_stdout();
    tw_free(buf);
    tw_tokenizer_free(t);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_tokenize = {
    .name = "tokenize",
    .summary = "encode text to token ids with a tokenizer, or decode ids",
    .usage =
        "usage: twin tokenize --tokenizer PATH [--ids|--pieces|--json] [--special]"
        " [TEXT | -]\n"
        "       twin tokenize --tokenizer PATH --decode [--skip-special] [IDS | -]\n\n"
        "Encodes TEXT (or stdin, when TEXT is - or absent, read as it is: a final newline\n"
        "is part of the text) with the tokenizer at PATH: a folder holding tokenizer.json\n"
        "(and tokenizer_config.json) or a WordPiece vocab.txt, a tokenizer.json file, or a\n"
        "vocab.txt file. Needs no home.\n\n"
        "  --ids           the ids on one line, separated by spaces (the default)\n"
        "  --pieces        one line per token: id<TAB>piece<TAB>start-end, the piece as the\n"
        "                  vocabulary spells it (\\ \\n \\r \\t and \\xHH escaped), start-end\n"
        "                  its bytes in the text ([start, end); empty for added specials)\n"
        "  --json          {\"ids\":[...],\"tokens\":[...],\"spans\":[[start,end],...]}\n"
        "  --special       add the post-processor's special tokens (BOS, [CLS] ... [SEP])\n"
        "  --decode        read ids (integers separated by spaces or newlines) and print\n"
        "                  the text they decode to, followed by a newline\n"
        "  --skip-special  with --decode: leave special tokens out\n"
        "  --              what follows is TEXT, even if it starts with -\n\n"
        "Exit codes: 0 ok; 1 the tokenizer or the input is bad (an id that is not an\n"
        "integer or not in the vocabulary is named with its position); 2 usage.\n",
    .run = run,
};
