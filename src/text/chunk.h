// Chunkers: a cleaned document cut into the pieces that are embedded, indexed and turned
// into training extracts. Owns struct tw_chunk (byte range + stable id), token windows with
// overlap, sentence-aware chunks for prose, blank-line and definition-aware chunks for code,
// the sentence splitter they use, and the choice of chunker by document category.
#ifndef TW_TEXT_CHUNK_H
#define TW_TEXT_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/vec.h"
#include "text/clean.h"
#include "text/tokenizer.h"

// One chunk of a text: text[start, end), never empty. Sentence chunks start and end with a
// character that is not whitespace; code chunks start at the beginning of a line (its
// indentation included), or inside a line longer than the maximum at a character that is
// not blank, and end with a character that is not whitespace; token windows run from their
// first token's first byte to their last token's last byte.
struct tw_chunk {
    size_t start, end;         // byte offsets in the chunked (cleaned) text
    size_t n_chars;            // code points in [start, end) (tw_clean_count_chars)
    size_t tok_start, tok_end; // token windows: tokens [tok_start, tok_end); 0, 0 otherwise
    char id[65];               // sha256 of the chunk's bytes, 64 lower-case hex digits
};

// A byte range [start, end) of a text.
struct tw_text_range {
    size_t start, end;
};

// Parameters of tw_chunk_document; tw_chunk_opts_init sets the defaults (REFERENCE.md).
struct tw_chunk_opts {
    size_t post_window, post_overlap; // posts: token windows, 250 / 25
    size_t repo_window, repo_overlap; // repositories with repo_tokens: 1500 / 100
    size_t min_chars, max_chars;      // articles and other: sentence chunks, 1000 / 2000
    size_t code_max_chars;            // repositories: code chunks, at most 2000 code points
    bool repo_tokens;                 // repositories: token windows instead of code chunks
};
// Sets every field of *o to its default (above).
void tw_chunk_opts_init(struct tw_chunk_opts *o);

// Chunks one document by its category, appending struct tw_chunk elements to out (which the
// caller initialised with tw_vec_init(out, sizeof(struct tw_chunk)) and owns):
//  - post: token windows of opts->post_window tokens, overlap opts->post_overlap; the token
//    spans are required (spans == NULL with a non-empty text is TW_EINVAL);
//  - repository: code chunks of at most opts->code_max_chars; or, when opts->repo_tokens is
//    set and spans is not NULL, token windows of opts->repo_window / opts->repo_overlap;
//  - article, other: sentence chunks of opts->min_chars to opts->max_chars code points.
// spans, n_spans: the tokens of text[0, len) (tw_tokenizer_encode without special tokens);
// ignored by the character-based chunkers, may be NULL. opts may be NULL (the defaults).
// Returns 0 or a TW_E* code (the errors of the chunker chosen); on failure out is as it was.
int tw_chunk_document(enum tw_category cat, const char *text, size_t len,
                      const struct tw_span *spans, size_t n_spans,
                      const struct tw_chunk_opts *opts, tw_vec *out);

// Token windows: chunk k covers tokens [k*(window-overlap), k*(window-overlap) + window),
// cut at n_spans: the last chunk ends at the last token and may be shorter, and no chunk
// lies wholly inside the one before it (the windows stop at the first that reaches the last
// token), so consecutive chunks share exactly `overlap` tokens. A text of at most `window`
// tokens is one chunk.
// A chunk's bytes run from the smallest start to the largest end of its tokens' spans;
// empty spans (special tokens) count as tokens but give no bytes, and a window of empty
// spans only gives no chunk. n_spans == 0 gives no chunk.
// Errors: TW_EINVAL when window == 0 or window <= overlap (usage), when a span ends past len
// or starts after it ends, or when the starts of the non-empty spans go backwards (the
// message names the span's index).
int tw_chunk_tokens(const char *text, size_t len, const struct tw_span *spans, size_t n_spans,
                    size_t window, size_t overlap, tw_vec *out);

// Sentences of prose, as tw_chunk_sentences sees them: appends struct tw_text_range elements
// (trimmed of whitespace, never empty) to out. A sentence ends
//  - after a run of . ! ? and any closing quotes or brackets (" ' ” ’ » › ) ]) that is
//    followed by the end of the text, or by whitespace, then any opening quotes or brackets
//    (" ' “ ‘ « ‹ ( [), then an upper-case letter (Lu or Lt, any script);
//    but not after a single "." that ends an abbreviation: one of (ASCII case ignored)
//      Mr Mrs Ms Mx Dr Prof St Sr Jr Mt Ft Rt Gen Gov Sen Rep Rev Hon Pres Capt Col Lt Sgt
//      Maj Adm Cmdr Messrs Mme Mlle vs cf viz al approx ca
//    or an initial or a dotted initialism: a single letter, or single letters joined by
//    dots (J. Smith, U.S., e.g., i.e., U.S.A., a.m.); such a word never ends a sentence,
//    even where it does in fact ("... in the U.S. The ..."): the price of the rule;
//  - at a paragraph break (a line feed, optional spaces, another line feed), always.
// A single line feed is whitespace inside a sentence. Text without any boundary is one
// sentence. Returns 0 or TW_ENOMEM.
int tw_sentence_split(const char *text, size_t len, tw_vec *out);

// Sentence-aware chunks of min_chars to max_chars code points (articles: 1000 to 2000):
//  1. the text is split into sentences (tw_sentence_split); a sentence longer than max_chars
//     is split into words (at whitespace), and a word longer than max_chars into the fewest
//     pieces of at most max_chars code points, of equal sizes (never inside a UTF-8
//     sequence);
//  2. the sentences (and the words of the over-long ones) are packed in order into chunks
//     of at most max_chars, measured from a chunk's first character to its last, the
//     whitespace between sentences included. Packing is greedy with look-ahead: of all the
//     packings, the one with the fewest chunks under min_chars, then the fewest chunk
//     boundaries inside a sentence, then the fewest chunks; among equals, the one whose
//     chunks are the fullest from the start (so where nothing is short it is the greedy
//     packing: a chunk takes sentences until the next one would pass max_chars). Plain
//     greedy packing leaves a short chunk before every sentence too long to join it; this
//     one moves the boundaries of the chunks before it instead, as far back as it takes, so
//     the short chunk's sentences are merged into its neighbours (dynamic programming).
// Every chunk has at most max_chars code points, and a chunk has fewer than min_chars only
// where no packing avoids it: the whole text is shorter than min_chars, or a sentence of
// nearly max_chars leaves too little room beside it (over the State of the Union corpus:
// one chunk in 5,837). Chunks are in text order, do not overlap, start and end at sentence
// boundaries (inside an over-long sentence: between words, or inside a word longer than
// max_chars), and only whitespace lies between them. The same text always gives the same
// chunks. Errors: TW_EINVAL when max_chars == 0 or min_chars > max_chars; TW_ENOMEM.
// Time: O(units * units per chunk), units being sentences and the words of over-long ones.
int tw_chunk_sentences(const char *text, size_t len, size_t min_chars, size_t max_chars,
                       tw_vec *out);

// Whether a line of code starts a top-level definition (the heuristic of tw_chunk_code):
// the line is not indented and
//  - starts with "#define", or
//  - after modifiers (pub, pub(...), export, default, async, static, inline, extern, public,
//    private, protected, internal, abstract, final, sealed, unsafe, const, open, override,
//    data, partial) starts with a keyword: def class fn fun func function struct enum union
//    impl trait interface type typedef module mod namespace object sub proc template
//    macro_rules!, followed by a blank, "<", "!", "*", "{" or the end of the line; or
//  - looks like a C-family function signature: it starts with an identifier, has "(", has
//    no "=" or ";" before the "(", does not end with ";", its first word is not a statement
//    keyword (if else for while do switch case return goto sizeof), and either the text
//    before "(" has at least two words (type and name: "static int f(void)", "char *f(x)")
//    or next_line (the next non-blank line, NULL if none) starts with "{".
bool tw_code_is_definition(const char *line, size_t len, const char *next_line, size_t next_len);

// Code chunks of at most max_chars code points (repositories: 2000):
//  1. lines are grouped into sections: a section starts at the first non-blank line and
//     at every definition (tw_code_is_definition), moved up over the comment, decorator and
//     attribute lines right above it (lines starting, after indentation, with // /* * #
//     @ -- ;) and over a C return-type line ("static int" above "f(void)"), up to a blank
//     line, another definition or another section's start; blank lines separate blocks
//     inside a section;
//  2. sections are packed greedily: a chunk takes the next section while it stays within
//     max_chars, so chunks start at sections;
//  3. a section longer than max_chars starts a new chunk and is packed block by block, a
//     block longer than max_chars line by line, and only a line longer than max_chars is
//     cut, into the fewest pieces of at most max_chars code points, of equal sizes (never
//     inside a UTF-8 sequence).
// A chunk starts at the beginning of a line (indentation included) and ends at a line's
// last non-blank character, except where a line longer than max_chars is cut; chunks are in
// order, do not overlap, and only whitespace lies between them. Time: O(len).
// Errors: TW_EINVAL when max_chars == 0; TW_ENOMEM.
int tw_chunk_code(const char *text, size_t len, size_t max_chars, tw_vec *out);

#endif
