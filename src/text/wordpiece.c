// The WordPiece model (BERT): greedy longest-match-first over each word, continuation pieces
// prefixed with "##", a word longer than max_input_chars_per_word or with no match anywhere
// becomes one unknown token (HF tokenizers' wordpiece.rs behaviour).
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

int wordpiece_parse(const json_t *j, const char *path, struct model *m)
{
    m->type = MODEL_WORDPIECE;
    const json_t *vocab = json_object_get(j, "vocab");
    if (!json_is_object(vocab))
        return tw_error_set(TW_EFORMAT, "%s.vocab: expected an object", path);
    const char *prefix = json_string_value(json_object_get(j, "continuing_subword_prefix"));
    m->wp_prefix = tw_strdup(prefix ? prefix : "##");
    const json_t *max = json_object_get(j, "max_input_chars_per_word");
    m->wp_max_chars = json_is_integer(max) ? (size_t)json_integer_value(max) : 100;
    if (!m->wp_prefix)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    int rc = model_parse_vocab(vocab, path, m, NULL);
    if (rc)
        return rc;
    const char *unk = json_string_value(json_object_get(j, "unk_token"));
    uint64_t id;
    m->unk_id = -1;
    if (unk && tw_map_get_str(&m->vocab, unk, strlen(unk), &id))
        m->unk_id = (int32_t)id;
    else
        return tw_error_set(TW_EFORMAT, "%s.unk_token: \"%s\" is not in vocab", path,
                            unk ? unk : "(none)");
    return 0;
}

int wordpiece_encode(const struct model *m, const char *w, size_t n, tw_vec *out)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)w[i] & 0xC0) != 0x80;
    size_t first = out->len;
    if (chars <= m->wp_max_chars) {
        tw_str key;
        tw_str_init(&key);
        size_t plen = strlen(m->wp_prefix);
        int rc = 0;
        size_t start = 0;
        while (start < n && !rc) {
            size_t end = n;
            int32_t found = -1;
            while (end > start) {
                tw_str_clear(&key);
                if (start > 0)
                    rc = tw_str_append(&key, m->wp_prefix, plen);
                if (!rc)
                    rc = tw_str_append(&key, w + start, end - start);
                if (rc)
                    break;
                uint64_t v;
                if (tw_map_get_str(&m->vocab, tw_str_cstr(&key), tw_str_len(&key), &v)) {
                    found = (int32_t)v;
                    break;
                }
                do // back to the previous character boundary
                    end--;
                while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
            }
            if (rc || found < 0)
                break;
            rc = tw_vec_push(out, &(struct tok){ found, (uint32_t)start, (uint32_t)end });
            start = end;
        }
        tw_str_free(&key);
        if (rc)
            return rc;
        if (start == n)
            return 0;
    }
    out->len = first; // the whole word is unknown
    return tw_vec_push(out, &(struct tok){ m->unk_id, 0, (uint32_t)n });
}
