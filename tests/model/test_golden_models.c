// Parity with transformers on the golden tiny models (tests/golden_parity.h): Llama with
// Llama 3 RoPE scaling, SmolLM2 with tied embeddings, Mistral with a sliding window, Qwen2
// with q/k/v biases, Qwen3 with q/k norms and head_dim != hidden / heads, the BERT embedder
// and the cross-encoder, each on the reference backend and the fast CPU backend, within 1e-4.
#include "golden_parity.h"

int main(void)
{
    static const char *const decoders[] = { "llama", "smollm2", "mistral", "qwen2", "qwen3" };
    struct tw_backend *fast = NULL;
    REQUIRE(tw_backend_cpu_new(2, &fast) == 0);
    struct tw_backend *backends[] = { tw_backend_cpu_ref(), fast };
    for (int b = 0; b < 2; b++) {
        for (size_t i = 0; i < sizeof decoders / sizeof *decoders; i++)
            decoder(decoders[i], backends[b]);
        batched("llama", backends[b]);
        embedder(backends[b]);
        reranker(backends[b]);
    }
    tw_backend_free(fast);
    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("model_test_golden_models");
}
