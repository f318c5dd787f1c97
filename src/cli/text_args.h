// What the text verbs (tokenize, chunk) share: option values ("--name VALUE" or
// "--name=VALUE"), the input file or standard input, the tokenizer that --tokenizer PATH
// names, text printed on one line with its controls escaped, and the final flush of stdout.
#ifndef TW_CLI_TEXT_ARGS_H
#define TW_CLI_TEXT_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "text/tokenizer.h"

// The most bytes a text verb reads from a file or standard input.
#define TW_CLI_INPUT_LIMIT ((size_t)64 << 20)

// When argv[*i] is the option `name` ("--window"), written "--window VALUE" or
// "--window=VALUE": sets *value (NULL when the value is missing), moves *i to the option's
// last element and returns true. Otherwise returns false and changes nothing.
bool tw_cli_opt(int argc, char **argv, int *i, const char *name, const char **value);

// Reads the whole file at path, or standard input when path is "-", into *out (followed by a
// NUL not counted in *len; the caller frees it with tw_free). More than limit bytes is
// TW_ELIMIT. Errors name the path ("stdin" for "-").
int tw_cli_read_input(const char *path, size_t limit, char **out, size_t *len);

// Opens the tokenizer at path, which is one of
//  - a folder holding tokenizer.json (with tokenizer_config.json when present) or, failing
//    that, a WordPiece vocab.txt;
//  - a file whose name ends in ".txt": a WordPiece vocabulary (one token a line);
//  - any other file: a tokenizer.json; when it is named tokenizer.json, the
//    tokenizer_config.json beside it is read too when present.
// Returns 0 and *out (the caller frees it with tw_tokenizer_free), or a TW_E* code with a
// message that names path.
int tw_cli_tokenizer_open(const char *path, tw_tokenizer **out);

// Writes s[0, len) to f on one line: \ as \\, LF as \n, CR as \r, TAB as \t, and the other
// C0 controls and DEL as \xHH; every other byte as it is.
void tw_cli_put_escaped(FILE *f, const char *s, size_t len);

struct tw_verb;

// s as a decimal whole number in [lo, hi] into *out (nothing else in s, no overflow); false
// otherwise, *out unchanged.
bool tw_cli_parse_long(const char *s, long lo, long hi, long *out);
// s as a finite decimal number in [lo, hi] into *out, the same way.
bool tw_cli_parse_double(const char *s, double lo, double hi, double *out);
// The same for the value of option opt of verb v: 0, or the usage error ("--k needs a whole
// number >= 1") that the verb returns.
int tw_cli_opt_long(const struct tw_verb *v, const char *opt, const char *val, long lo, long hi,
                    long *out);

// The first max bytes of text (whole UTF-8 characters; newlines as spaces) into buf (room
// for max + 1); returns true when text was cut.
bool tw_cli_snippet(const char *text, size_t max, char *buf);

// Prints v (taken: freed here) as JSON on one line of stdout (flags: json_dumps's, 0 for
// compact); NULL v is TW_ENOMEM (a json_pack that failed).
int tw_cli_print_json(json_t *v, size_t flags);

// Flushes stdout; TW_EIO ("stdout: <reason>") when a write failed.
int tw_cli_flush_stdout(void);

#endif
