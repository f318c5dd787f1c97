// tw_model_to_backend on the CPU reference backend (its memory is the host's, so the copy can
// be read back directly): every weight the host model's, bytes, dtype and shape; each layer's
// tensors in one block, the matrices first in slot order at 256-byte offsets, so that q, k, v
// and gate, up lie one after another (what train/lm.c's stacked products rely on) — on a
// Llama (no biases, tied embeddings) and a Qwen2 (q/k/v biases, which go after the
// matrices); tw_model_close gives it all back (the sanitizer build checks).
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "model/model.h"
#include "tensor/backend.h"

// d's tensor t equals the host's h: the same shape, dtype and bytes.
static bool same_tensor(const struct tw_tensor *h, const struct tw_tensor *d)
{
    if (!h->data)
        return !d->data;
    return d->data && d->dtype == h->dtype && d->ndim == h->ndim && d->ne[0] == h->ne[0] &&
           d->ne[1] == h->ne[1] && memcmp(d->data, h->data, tw_tensor_nbytes(h)) == 0;
}

// b starts right where a ends.
static bool after(const struct tw_tensor *a, const struct tw_tensor *b)
{
    return (const char *)b->data == (const char *)a->data + tw_tensor_nbytes(a);
}

static void to_backend_case(enum tw_arch arch)
{
    struct tw_model_config c = { .arch = arch,
                                 .n_vocab = 300,
                                 .n_embd = 256,
                                 .n_layer = 3,
                                 .n_head = 4,
                                 .n_head_kv = 2,
                                 .head_dim = 64,
                                 .n_ff = 512,
                                 .n_ctx_train = 1024,
                                 .norm_eps = 1e-6f,
                                 .rope_theta = 10000,
                                 .rope_neox = true,
                                 .attn_bias = arch == TW_ARCH_QWEN2,
                                 .tied_embeddings = arch == TW_ARCH_LLAMA,
                                 .act = TW_ACT_SILU };
    struct tw_model *m, *d;
    REQUIRE(tw_model_random(&c, TW_DTYPE_BF16, 9, &m) == 0);
    REQUIRE(tw_model_to_backend(m, tw_backend_cpu_ref(), &d) == 0);
    CHECK(same_tensor(&m->tok_embd, &d->tok_embd));
    CHECK(same_tensor(&m->out_norm, &d->out_norm));
    CHECK(same_tensor(&m->output, &d->output));
    CHECK(!c.tied_embeddings || d->output.data == d->tok_embd.data);
    for (int il = 0; il < c.n_layer; il++) {
        const struct tw_layer *h = &m->layers[il], *L = &d->layers[il];
        const struct tw_tensor *ht[] = { &h->wq,       &h->wk,   &h->wv,     &h->wo,
                                         &h->w_gate,   &h->w_up, &h->w_down, &h->attn_norm,
                                         &h->ffn_norm, &h->bq,   &h->bk,     &h->bv };
        const struct tw_tensor *dt[] = { &L->wq,       &L->wk,   &L->wv,     &L->wo,
                                         &L->w_gate,   &L->w_up, &L->w_down, &L->attn_norm,
                                         &L->ffn_norm, &L->bq,   &L->bk,     &L->bv };
        bool same = true, aligned = true;
        for (size_t i = 0; i < sizeof ht / sizeof *ht; i++) {
            same &= same_tensor(ht[i], dt[i]);
            aligned &=
                !dt[i]->data || ((const char *)dt[i]->data - (const char *)L->wq.data) % 256 == 0;
        }
        CHECK(same);
        CHECK(aligned);
        // the block: q, k, v, o, gate, up, down in slot order, then the vectors
        CHECK(after(&L->wq, &L->wk) && after(&L->wk, &L->wv) && after(&L->wv, &L->wo));
        CHECK(after(&L->w_gate, &L->w_up));
        CHECK((const char *)L->attn_norm.data > (const char *)L->w_down.data);
        CHECK(!c.attn_bias || (const char *)L->bq.data > (const char *)L->w_down.data);
    }
    tw_model_close(d);
    tw_model_close(m);
}

int main(void)
{
    to_backend_case(TW_ARCH_LLAMA);
    to_backend_case(TW_ARCH_QWEN2);
    return check_report("model_test_to_backend");
}
