// Fuzzes opening a model from a GGUF file (model/config.c, slots.c, model.c over gguf.c):
// the input is written to a .gguf file and opened with tw_model_open; when it opens, the
// model runs two tokens (a decoder) or encodes two tokens (an encoder) on the reference
// backend — whatever the file says, shapes that pass the checks must be safe to run.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/context.h"
#include "model/model.h"

static char path[64];

// The file goes when the run ends (a run left one behind in /tmp each time).
static void remove_path(void)
{
    (void)remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/twin-fuzz-model-%d.gguf", (int)getpid());
        atexit(remove_path);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    struct tw_model *m = NULL;
    if (tw_model_open(path, &m) != 0)
        return 0;
    tw_ctx *c = NULL;
    struct tw_ctx_params p = { .n_ctx = 8, .n_batch = 4 };
    if (tw_ctx_new(m, tw_backend_cpu_ref(), &p, &c) == 0) {
        int32_t ids[2] = { 0, m->cfg.n_vocab - 1 };
        if (tw_arch_is_decoder(m->cfg.arch)) {
            float *logits = tw_malloc_array((size_t)m->cfg.n_vocab, sizeof(float));
            if (logits)
                tw_ctx_decode(c, ids, 2, logits, false);
            tw_free(logits);
        } else {
            float *h = tw_malloc_array(2 * (size_t)m->cfg.n_embd, sizeof(float));
            if (h)
                tw_ctx_encode(c, ids, NULL, 2, h);
            tw_free(h);
        }
        tw_ctx_free(c);
    }
    tw_model_close(m);
    return 0;
}
