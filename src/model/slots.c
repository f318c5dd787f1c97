// The weight slots of every architecture: where each tensor goes in struct tw_model /
// struct tw_layer, its names in Hugging Face checkpoints (transformers' module paths) and in
// GGUF (llama.cpp's tensor names, gguf-py's constants.py), and its shape.
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "model/model_int.h"

#define M(f) offsetof(struct tw_model, f), false
#define L(f) offsetof(struct tw_layer, f), true
#define HL   "model.layers.%d."
#define EL   "encoder.layer.%d."

static const struct tw_slot slots[] = {
    { M(tok_embd), TW_SLOT_TOK_EMBD, "token_embd.weight", "model.embed_tokens.weight",
      "token_embd.weight", "embeddings.word_embeddings.weight" },
    { M(pos_embd), TW_SLOT_POS_EMBD, NULL, NULL, "position_embd.weight",
      "embeddings.position_embeddings.weight" },
    { M(type_embd), TW_SLOT_TYPE_EMBD, NULL, NULL, "token_types.weight",
      "embeddings.token_type_embeddings.weight" },
    { M(embd_norm), TW_SLOT_EMBD_NORM, NULL, NULL, "token_embd_norm.weight",
      "embeddings.LayerNorm.weight" },
    { M(embd_norm_b), TW_SLOT_EMBD_NORM, NULL, NULL, "token_embd_norm.bias",
      "embeddings.LayerNorm.bias" },
    { L(attn_norm), TW_SLOT_NORM, "blk.%d.attn_norm.weight", HL "input_layernorm.weight", NULL,
      NULL },
    { L(wq), TW_SLOT_WQ, "blk.%d.attn_q.weight", HL "self_attn.q_proj.weight",
      "blk.%d.attn_q.weight", EL "attention.self.query.weight" },
    { L(bq), TW_SLOT_BQ, "blk.%d.attn_q.bias", HL "self_attn.q_proj.bias", "blk.%d.attn_q.bias",
      EL "attention.self.query.bias" },
    { L(wk), TW_SLOT_WKV, "blk.%d.attn_k.weight", HL "self_attn.k_proj.weight",
      "blk.%d.attn_k.weight", EL "attention.self.key.weight" },
    { L(bk), TW_SLOT_BKV, "blk.%d.attn_k.bias", HL "self_attn.k_proj.bias", "blk.%d.attn_k.bias",
      EL "attention.self.key.bias" },
    { L(wv), TW_SLOT_WKV, "blk.%d.attn_v.weight", HL "self_attn.v_proj.weight",
      "blk.%d.attn_v.weight", EL "attention.self.value.weight" },
    { L(bv), TW_SLOT_BKV, "blk.%d.attn_v.bias", HL "self_attn.v_proj.bias", "blk.%d.attn_v.bias",
      EL "attention.self.value.bias" },
    { L(q_norm), TW_SLOT_QK_NORM, "blk.%d.attn_q_norm.weight", HL "self_attn.q_norm.weight", NULL,
      NULL },
    { L(k_norm), TW_SLOT_QK_NORM, "blk.%d.attn_k_norm.weight", HL "self_attn.k_norm.weight", NULL,
      NULL },
    { L(wo), TW_SLOT_WO, "blk.%d.attn_output.weight", HL "self_attn.o_proj.weight",
      "blk.%d.attn_output.weight", EL "attention.output.dense.weight" },
    { L(bo), TW_SLOT_BO, "blk.%d.attn_output.bias", HL "self_attn.o_proj.bias",
      "blk.%d.attn_output.bias", EL "attention.output.dense.bias" },
    { L(attn_norm), TW_SLOT_ENC_NORM, NULL, NULL, "blk.%d.attn_output_norm.weight",
      EL "attention.output.LayerNorm.weight" },
    { L(attn_norm_b), TW_SLOT_ENC_NORM, NULL, NULL, "blk.%d.attn_output_norm.bias",
      EL "attention.output.LayerNorm.bias" },
    { L(ffn_norm), TW_SLOT_NORM, "blk.%d.ffn_norm.weight", HL "post_attention_layernorm.weight",
      NULL, NULL },
    { L(w_gate), TW_SLOT_W_GATE, "blk.%d.ffn_gate.weight", HL "mlp.gate_proj.weight", NULL, NULL },
    { L(w_up), TW_SLOT_W_UP, "blk.%d.ffn_up.weight", HL "mlp.up_proj.weight",
      "blk.%d.ffn_up.weight", EL "intermediate.dense.weight" },
    { L(b_up), TW_SLOT_B_UP, NULL, NULL, "blk.%d.ffn_up.bias", EL "intermediate.dense.bias" },
    { L(w_down), TW_SLOT_W_DOWN, "blk.%d.ffn_down.weight", HL "mlp.down_proj.weight",
      "blk.%d.ffn_down.weight", EL "output.dense.weight" },
    { L(b_down), TW_SLOT_B_DOWN, NULL, NULL, "blk.%d.ffn_down.bias", EL "output.dense.bias" },
    { L(ffn_norm), TW_SLOT_ENC_NORM, NULL, NULL, "blk.%d.layer_output_norm.weight",
      EL "output.LayerNorm.weight" },
    { L(ffn_norm_b), TW_SLOT_ENC_NORM, NULL, NULL, "blk.%d.layer_output_norm.bias",
      EL "output.LayerNorm.bias" },
    { M(out_norm), TW_SLOT_OUT_NORM, "output_norm.weight", "model.norm.weight", NULL, NULL },
    { M(output), TW_SLOT_OUTPUT, "output.weight", "lm_head.weight", NULL, NULL },
    { M(pooler_w), TW_SLOT_POOLER, NULL, NULL, "cls.weight", "pooler.dense.weight" },
    { M(pooler_b), TW_SLOT_POOLER_B, NULL, NULL, "cls.bias", "pooler.dense.bias" },
    { M(cls_w), TW_SLOT_CLS, NULL, NULL, "cls.output.weight", "classifier.weight" },
    { M(cls_b), TW_SLOT_CLS_B, NULL, NULL, "cls.output.bias", "classifier.bias" },
};

const struct tw_slot *tw_slots(size_t *n)
{
    *n = sizeof slots / sizeof *slots;
    return slots;
}

int tw_slot_shape(const struct tw_model_config *c, enum tw_slot_kind kind, int64_t shape[2])
{
    bool dec = tw_arch_is_decoder(c->arch), cls = c->arch == TW_ARCH_BERT_CLS;
    int64_t C = c->n_embd, V = c->n_vocab, F = c->n_ff;
    int64_t q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
    int64_t r0 = 0, r1 = 0;
    switch (kind) {
    case TW_SLOT_TOK_EMBD:
        r0 = V, r1 = C;
        break;
    case TW_SLOT_POS_EMBD:
        r0 = dec ? 0 : c->n_ctx_train, r1 = C;
        break;
    case TW_SLOT_TYPE_EMBD:
        r0 = dec ? 0 : c->n_type_vocab, r1 = C;
        break;
    case TW_SLOT_EMBD_NORM:
    case TW_SLOT_ENC_NORM:
    case TW_SLOT_BO:
    case TW_SLOT_B_DOWN:
    case TW_SLOT_POOLER_B:
        r0 = dec && !(kind == TW_SLOT_BO && c->attn_bias && c->arch == TW_ARCH_LLAMA) ? 0 : C;
        break;
    case TW_SLOT_OUT_NORM:
    case TW_SLOT_NORM:
        r0 = dec ? C : 0;
        break;
    case TW_SLOT_OUTPUT:
        r0 = dec && !c->tied_embeddings ? V : 0, r1 = C;
        break;
    case TW_SLOT_WQ:
        r0 = q, r1 = C;
        break;
    case TW_SLOT_WKV:
        r0 = kv, r1 = C;
        break;
    case TW_SLOT_WO:
        r0 = C, r1 = q;
        break;
    case TW_SLOT_BQ:
        r0 = !dec || c->attn_bias ? q : 0;
        break;
    case TW_SLOT_BKV:
        r0 = !dec || c->attn_bias ? kv : 0;
        break;
    case TW_SLOT_QK_NORM:
        r0 = c->qk_norm ? c->head_dim : 0;
        break;
    case TW_SLOT_W_GATE:
        r0 = dec ? F : 0, r1 = C;
        break;
    case TW_SLOT_W_UP:
        r0 = F, r1 = C;
        break;
    case TW_SLOT_W_DOWN:
        r0 = C, r1 = F;
        break;
    case TW_SLOT_B_UP:
        r0 = dec ? 0 : F;
        break;
    case TW_SLOT_POOLER:
        r0 = dec ? 0 : C, r1 = C;
        break;
    case TW_SLOT_CLS:
        r0 = cls ? c->n_labels : 0, r1 = C;
        break;
    case TW_SLOT_CLS_B:
        r0 = cls ? c->n_labels : 0;
        break;
    }
    if (r0 == 0)
        return 0;
    shape[0] = r0;
    shape[1] = r1;
    return r1 ? 2 : 1;
}

bool tw_slot_required(const struct tw_model_config *c, const struct tw_slot *s)
{
    if (s->kind == TW_SLOT_OUTPUT)
        return false; // tied to the embeddings when absent
    if (s->kind == TW_SLOT_POOLER || s->kind == TW_SLOT_POOLER_B)
        return c->arch == TW_ARCH_BERT_CLS;
    return true;
}

bool tw_slot_name(const struct tw_model_config *c, const struct tw_slot *s, int il, bool gguf,
                  int attempt, char *buf, size_t cap)
{
    bool dec = tw_arch_is_decoder(c->arch);
    const char *fmt = gguf ? (dec ? s->gguf_dec : s->gguf_enc) : (dec ? s->hf_dec : s->hf_enc);
    if (!fmt || ((gguf || dec) && attempt > 0))
        return false;
    const char *prefix = "";
    if (!gguf && !dec && strncmp(fmt, "classifier", 10) != 0) {
        // BertForSequenceClassification nests the encoder under "bert."; a bare BertModel
        // has no prefix, unless it was saved from a model with a head.
        bool nested = c->arch == TW_ARCH_BERT_CLS;
        if (attempt > 0)
            nested = !nested;
        prefix = nested ? "bert." : "";
    } else if (attempt > 0) {
        return false;
    }
    int k = snprintf(buf, cap, "%s", prefix);
    if (k < 0 || (size_t)k >= cap)
        return false;
    if (s->per_layer)
        k = snprintf(buf + k, cap - (size_t)k, fmt, il);
    else
        k = snprintf(buf + k, cap - (size_t)k, "%s", fmt);
    return k >= 0 && (size_t)k < cap - strlen(prefix);
}

enum tw_dtype tw_matrix_dtype(enum tw_dtype dtype, int64_t ncols)
{
    if ((dtype == TW_DTYPE_Q4_K || dtype == TW_DTYPE_Q6_K) && ncols % TW_QK_K != 0)
        dtype = TW_DTYPE_Q4_0;
    if (tw_dtype_is_quantized(dtype) && ncols % 32 != 0)
        dtype = TW_DTYPE_F16;
    return dtype;
}
