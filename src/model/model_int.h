// Inside the model layer: the table of weight slots (each slot's names in both formats and
// its shape from the configuration) and the configuration readers.
#ifndef TW_MODEL_MODEL_INT_H
#define TW_MODEL_MODEL_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "model/gguf.h"
#include "model/model.h"

enum tw_slot_kind {
    TW_SLOT_TOK_EMBD,  // (V, C)
    TW_SLOT_POS_EMBD,  // encoders: (n_ctx_train, C)
    TW_SLOT_TYPE_EMBD, // encoders: (n_type_vocab, C)
    TW_SLOT_EMBD_NORM, // encoders: (C)
    TW_SLOT_OUT_NORM,  // decoders: (C)
    TW_SLOT_OUTPUT,    // decoders: (V, C), absent when tied
    TW_SLOT_NORM,      // (C), per layer
    TW_SLOT_ENC_NORM,  // (C), per layer, encoders (LayerNorm weight or bias)
    TW_SLOT_WQ,        // (H * hd, C)
    TW_SLOT_WKV,       // (Hkv * hd, C)
    TW_SLOT_WO,        // (C, H * hd)
    TW_SLOT_BQ,        // (H * hd) when attn_bias or an encoder
    TW_SLOT_BKV,       // (Hkv * hd)
    TW_SLOT_BO,        // (C): encoders
    TW_SLOT_QK_NORM,   // (hd) when qk_norm
    TW_SLOT_W_GATE,    // decoders: (F, C)
    TW_SLOT_W_UP,      // (F, C)
    TW_SLOT_W_DOWN,    // (C, F)
    TW_SLOT_B_UP,      // encoders: (F)
    TW_SLOT_B_DOWN,    // encoders: (C)
    TW_SLOT_POOLER,    // encoders: (C, C); required for the classifier
    TW_SLOT_POOLER_B,  // encoders: (C)
    TW_SLOT_CLS,       // classifier: (n_labels, C)
    TW_SLOT_CLS_B,     // classifier: (n_labels)
};

struct tw_slot {
    size_t offset; // of the struct tw_tensor in struct tw_model or struct tw_layer
    bool per_layer;
    enum tw_slot_kind kind;
    // Names ("%d" is the layer): GGUF's (llama.cpp's tensor names) and HF's, for decoders
    // and encoders; NULL where the family has no such tensor.
    const char *gguf_dec, *hf_dec, *gguf_enc, *hf_enc;
};

const struct tw_slot *tw_slots(size_t *n);
// The shape slot kind has under configuration c into shape; returns the number of
// dimensions, 0 when the configuration has no such tensor.
int tw_slot_shape(const struct tw_model_config *c, enum tw_slot_kind kind, int64_t shape[2]);
// Whether a model of configuration c must have the slot (when its shape is not 0).
bool tw_slot_required(const struct tw_model_config *c, const struct tw_slot *s);
// The name of slot s for layer il (or -1) in GGUF or HF spelling; attempt 1 gives HF BERT's
// other prefix ("bert." or none). False when there is no such name.
bool tw_slot_name(const struct tw_model_config *c, const struct tw_slot *s, int il, bool gguf,
                  int attempt, char *buf, size_t cap);

// config.json (+ sentence-transformers' modules.json, 1_Pooling/config.json,
// sentence_bert_config.json) of the folder dir.
int tw_model_config_hf(const char *dir, struct tw_model_config *c);
// GGUF metadata (llama.cpp's keys); path names the file in errors.
int tw_model_config_gguf(const tw_gguf *g, const char *path, struct tw_model_config *c);
// Checks the numbers of a configuration (positive sizes, heads dividing, ...).
int tw_model_config_check(const struct tw_model_config *c, const char *what);

#endif
