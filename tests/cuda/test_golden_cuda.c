// The golden tiny models on the CUDA backend (tests/golden_parity.h): the same prompt logits,
// 64 identical greedy tokens with each step's logits, chat logits, prefix reuse, embeddings
// and reranker scores as transformers, within 1e-4 (the fixtures are f32 and the CUDA backend
// computes f32 models in f32). Run by `make test-cuda` on the GPU machine.
#include "golden_parity.h"
#include "tensor/cuda.h"

int main(void)
{
    static const char *const decoders[] = { "llama", "smollm2", "mistral", "qwen2", "qwen3" };
    struct tw_backend *be = NULL;
    REQUIRE(tw_backend_cuda_new(0, &be) == 0);
    for (size_t i = 0; i < sizeof decoders / sizeof *decoders; i++)
        decoder(decoders[i], be);
    batched("llama", be);
    batched("qwen2", be);
    embedder(be);
    reranker(be);
    CHECK_OK(tw_backend_sync(be));
    tw_backend_free(be);
    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("cuda_golden");
}
