// Self-query and query expansion, the first two steps of RAG inference (the reference's
// SelfQuery and QueryExpansion): the prompts twin sends to the LLM, the validation of what
// comes back, and the deterministic fallback that finds the warehouse's authors named in a
// question without an LLM. Nothing here runs a model: the caller generates, these functions
// build prompts and read answers, so every rule is testable on plain strings.
#ifndef TW_RAG_SELFQUERY_H
#define TW_RAG_SELFQUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/str.h"

// ---- authors named in a question

// The matcher over a set of author full names ("Franklin D. Roosevelt", "George W. Bush").
// Each author is known by the forms of its name, strongest first:
//   3  the full name ("Franklin D. Roosevelt"; also without the periods: "Franklin D Roosevelt")
//   2  first and last name ("Franklin Roosevelt"), initials before the last name
//      ("F. D. Roosevelt", "F.D. Roosevelt"), title + last name ("President Roosevelt")
//   2  the acronym of three or more name words ("FDR", "JFK", "LBJ")
//   1  the last name alone ("Roosevelt"), also as a possessive ("Roosevelt's")
// Matching ignores ASCII case and punctuation between words, and only whole words count
// ("Grant" matches "President Grant said", not "Granted"). A question's strongest level
// decides: every author matched at that level is returned (a last name two authors share
// returns both; "John Adams" is John Adams's full name, level 3, and John Quincy Adams's
// first + last name, level 2: only John Adams is returned).
typedef struct tw_authors tw_authors;

// Builds the matcher (names copied). Returns 0 or TW_ENOMEM.
int tw_authors_new(const char *const *full_names, size_t n, tw_authors **out);
void tw_authors_free(tw_authors *a);

// The authors a question names: out (tw_malloc'd array of indexes into the names given to
// tw_authors_new, ascending) gets the authors matched at the strongest level found, *n their
// number (0: none, out NULL). A form of one author that is part of a longer matched form of
// another at a higher level does not count (in "John Quincy Adams", John Adams's last name
// "Adams" is inside John Quincy Adams's full name: only John Quincy Adams is returned).
// Returns 0 or TW_ENOMEM.
int tw_authors_match(const tw_authors *a, const char *question, size_t **out, size_t *n);

// The index of the author whose full name (or a level-3 or level-2 form) equals name
// exactly (ASCII case ignored, surrounding space trimmed); -1 when none or more than one.
// Used to validate an LLM's answer and a --author option.
long tw_authors_find(const tw_authors *a, const char *name);

// ---- self-query through the LLM

// The categories the self-query knows (etl/source.h's TW_DOC_*): index 0, 1, 2.
#define TW_SELFQUERY_CATEGORIES "article", "post", "repository"

// Appends the self-query instruction for question to *out: the model is asked to answer
// with one JSON object {"author": NAME or null, "category": "article" | "post" |
// "repository" or null} and nothing else. authors (n names, may be 0) are listed in the
// prompt when n <= 64, so that a small model can copy a name. Returns 0 or TW_ENOMEM.
int tw_selfquery_prompt(const char *question, const char *const *authors, size_t n, tw_str *out);

struct tw_selfquery {
    long author;     // index into the matcher's names, -1: none
    int category;    // 0 article, 1 post, 2 repository, -1: none
    bool valid;      // the answer was a JSON object of the asked shape
    char error[160]; // why not, when !valid (for the trace)
};

// Reads the LLM's answer: the first JSON object in it (text before and after, and a
// Markdown code fence around it, are tolerated), parsed with the JSON library, keys "author"
// and "category" only (others ignored), each a string or null. The author must be one
// tw_authors_find knows and the category one of the three (a plural "articles" is
// accepted); anything else makes the answer invalid (valid false, error says what), and the
// caller falls back to tw_authors_match.
// Returns 0 (the verdict is in *out) or TW_ENOMEM.
int tw_selfquery_parse(const tw_authors *a, const char *answer, size_t len,
                       struct tw_selfquery *out);

// The category a question names without the LLM: the words "article(s)", "post(s)",
// "repository" / "repositories" / "repo(s)" as whole words (ASCII case ignored) -> 0, 1, 2;
// -1 when none or more than one category is named.
int tw_selfquery_category(const char *question);

// ---- query expansion

#define TW_EXPAND_SEPARATOR "#next-question#"

// Appends the expansion instruction to *out: n - 1 (n >= 2) other versions of question, to
// help a distance-based search, separated by TW_EXPAND_SEPARATOR (the reference's
// template, in twin's words). Returns 0, TW_EINVAL (n < 2), TW_ENOMEM.
int tw_expand_prompt(const char *question, int n, tw_str *out);

// Splits the LLM's answer into at most max queries (tw_malloc'd strings in *out, *n_out of
// them): split at TW_EXPAND_SEPARATOR, or, when the answer has none, at line breaks; each
// piece trimmed of space, list markers ("1.", "2)", "-", "*") and surrounding quotes;
// empty pieces, pieces longer than 1000 bytes, invalid UTF-8 and pieces equal (ASCII case
// and space ignored) to the question or to an earlier piece are dropped. Returns 0 or
// TW_ENOMEM; *n_out may be 0 (the caller searches with the question alone).
int tw_expand_parse(const char *question, const char *answer, size_t len, size_t max, char ***out,
                    size_t *n_out);
void tw_expand_free(char **queries, size_t n);

#endif
