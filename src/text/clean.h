// Cleaning: the text of a document made ready for chunking and training, by category
// (article, post, repository, other). Owns the document categories, NFC normalisation
// (utf8proc), the per-category rules for characters, line breaks and whitespace, and the
// character count the chunkers measure sizes in.
#ifndef TW_TEXT_CLEAN_H
#define TW_TEXT_CLEAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/str.h"

// The warehouse's document categories (REFERENCE.md: articles, posts, repositories) and a
// default for anything else.
enum tw_category {
    TW_CATEGORY_ARTICLE,
    TW_CATEGORY_POST,
    TW_CATEGORY_REPOSITORY,
    TW_CATEGORY_OTHER,
};

// "article"/"articles", "post"/"posts", "repository"/"repositories"/"repo"/"code" (ASCII case
// ignored) to a category; anything else, NULL included, is TW_CATEGORY_OTHER.
enum tw_category tw_category_parse(const char *name);
// The singular name: "article", "post", "repository", "other".
const char *tw_category_name(enum tw_category cat);

// Appends the cleaned text of text[0, len) to out (which the caller initialised and owns).
// The result is valid UTF-8 in NFC. Returns 0, TW_ENOMEM, or TW_EOVERFLOW (len too large);
// on failure out is as it was.
//
// Steps, in order, for every category:
//  1. Decoding: each maximal invalid UTF-8 subpart (overlong, surrogate, above U+10FFFF,
//     truncated, stray continuation byte) becomes one U+FFFD, as Python's errors="replace"
//     does (tw_utf8_decode); U+FFFD is kept by every later step.
//  2. Line breaks: CR LF and lone CR become LF. Prose (article, post, other) also turns VT,
//     FF, NEL (U+0085) and LINE SEPARATOR (U+2028) into LF, and PARAGRAPH SEPARATOR (U+2029)
//     into a blank line.
//  3. Removed without a trace (no space left behind): C0 and C1 control characters except TAB
//     and LF, DEL, private-use characters, noncharacters (U+FDD0..U+FDEF, U+xxFFFE/F), and
//     format characters (Cf: soft hyphen, ZERO WIDTH SPACE, WORD JOINER, BOM, bidi marks and
//     embeddings, ...) with three exceptions decided by context:
//     - ZWJ (U+200D) is kept between two emoji (Extended_Pictographic) when the first one
//       was kept, so 👩‍💻 stays one sequence where emoji are kept;
//     - ZWJ and ZWNJ (U+200C) are kept inside a word (a kept letter or mark before, a letter
//       or mark after): they are spelling in Persian and the Indic scripts;
//     - tag characters (U+E0020..U+E007F, U+E0001) are kept only inside a kept emoji
//       sequence (subdivision flags); elsewhere they are invisible text and are removed.
//  4. NFC (canonical composition, utf8proc): e + U+0301 becomes é.
//
// Then, articles and posts (the reference keeps only [\w\s.,!?]; twin keeps what is prose):
//  - kept: letters (L*) and numbers (N*) of every script; connector punctuation (_);
//    dashes (Pd); brackets (Ps, Pe); quotes (Pi, Pf, ' and "); other punctuation (Po:
//    . , ! ? : ; % & / # @ ¡ ¿ … · § ¶ 。 、 ...) except * \ • ‣ ⁃ † ‡; currency (Sc);
//    the maths signs + ± × ÷ − only; the degree sign °; U+FFFD;
//  - posts also keep emoji: Extended_Pictographic characters (which include © ® ™) and
//    regional indicators (flags), with their modifiers, variation selectors and ZWJ;
//  - combining marks, variation selectors and emoji modifiers (grapheme extenders) follow
//    their base: kept after a kept character, removed after noise, space or line start;
//  - everything else is noise and becomes a space: markup symbols (< > = | ~ ^ ` * \),
//    other maths and modifier symbols, other symbols (So: arrows, box drawing, dingbats,
//    © ® ™ and emoji in articles), bullets and daggers, unassigned code points.
// Other categories keep every character that survives steps 1-4.
//
// Whitespace in prose (article, post, other): spaces (Zs, NBSP included) and tabs become
// one space; spaces at the start and end of every line are removed; one LF stays a line
// break; two or more LFs with only whitespace between them become one blank line ("\n\n");
// the text starts and ends with a character that is not whitespace (no final newline).
//
// Repositories (code): every character that survives steps 1-4 is kept, indentation and
// spaces inside lines exactly (tabs included); trailing spaces and tabs of every line are
// removed; blank lines inside the text are kept (as empty lines); blank lines at the start
// and the end are removed; a text that is not empty ends with exactly one LF.
int tw_text_clean(enum tw_category cat, const char *text, size_t len, tw_str *out);

// The number of code points in text[0, len), the measure of the chunkers' sizes, counted as
// tw_utf8_decode (text/utf8.h) reads them: each maximal invalid subpart counts one.
size_t tw_clean_count_chars(const char *text, size_t len);

#endif
