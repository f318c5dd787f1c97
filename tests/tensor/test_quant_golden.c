// The ggml block layouts against the reference: tests/golden/quant.json holds blocks written by
// gguf-py (llama.cpp's numpy implementation, run by tests/golden/make_golden.py on the GPU
// machine). Q8_0 and Q4_0 quantize twin's way to the same bytes and dequantize to the same
// floats; Q4_K and Q6_K blocks of random bytes dequantize to gguf-py's floats.
#include <math.h>
#include <stdlib.h>

#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "tensor/dtype.h"

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static uint8_t *from_hex(const char *hex, size_t *n)
{
    *n = strlen(hex) / 2;
    uint8_t *b = malloc(*n);
    for (size_t i = 0; i < *n; i++)
        b[i] = (uint8_t)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
    return b;
}

static float *floats(const json_t *bits, size_t *n)
{
    *n = json_array_size(bits);
    float *f = malloc(*n * sizeof *f);
    for (size_t i = 0; i < *n; i++) {
        uint32_t u = (uint32_t)json_integer_value(json_array_get(bits, i));
        memcpy(&f[i], &u, 4);
    }
    return f;
}

// Dequantizing the reference's bytes gives the reference's floats (to float rounding: the
// order of the products may differ).
static void check_dequant(const char *name, enum tw_dtype t, const json_t *case_)
{
    size_t nb, nf;
    uint8_t *bytes = from_hex(json_string_value(json_object_get(case_, "bytes_hex")), &nb);
    float *want = floats(json_object_get(case_, "dequant_f32_hex"), &nf);
    size_t expect_bytes = 0;
    CHECK_OK(tw_dtype_nbytes(t, nf, &expect_bytes));
    CHECK_EQ_INT(expect_bytes, nb);
    float *got = malloc(nf * sizeof *got);
    tw_dequantize_row(t, bytes, got, nf);
    int bad = 0;
    for (size_t i = 0; i < nf; i++)
        if (fabsf(got[i] - want[i]) > 1e-6f * fmaxf(1.0f, fabsf(want[i]))) {
            if (bad++ < 3)
                fprintf(stderr, "%s: element %zu: %g, gguf-py %g\n", name, i, got[i], want[i]);
        }
    CHECK_EQ_INT(bad, 0);
    free(bytes);
    free(want);
    free(got);
}

// Quantizing the reference's input gives the reference's bytes.
static void check_quant(const char *name, enum tw_dtype t, const json_t *case_)
{
    size_t nx, nb;
    float *x = floats(json_object_get(case_, "input_f32_hex"), &nx);
    uint8_t *want = from_hex(json_string_value(json_object_get(case_, "bytes_hex")), &nb);
    uint8_t *got = calloc(1, nb);
    tw_quantize_row(t, x, got, nx);
    size_t diff = 0;
    while (diff < nb && got[diff] == want[diff])
        diff++;
    if (diff < nb)
        fprintf(stderr, "%s: bytes differ from gguf-py's at %zu (block %zu)\n", name, diff,
                diff / tw_dtype_block_bytes(t));
    CHECK_EQ_INT(diff, nb);
    free(x);
    free(want);
    free(got);
}

int main(void)
{
    const char *root = test_source_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/quant.json", root);
    json_t *g = NULL;
    CHECK_OK(tw_json_load_file(path, 0, &g));
    REQUIRE(g);
    check_quant("q8_0", TW_DTYPE_Q8_0, json_object_get(g, "q8_0"));
    check_quant("q4_0", TW_DTYPE_Q4_0, json_object_get(g, "q4_0"));
    check_dequant("q8_0", TW_DTYPE_Q8_0, json_object_get(g, "q8_0"));
    check_dequant("q4_0", TW_DTYPE_Q4_0, json_object_get(g, "q4_0"));
    check_dequant("q4_K", TW_DTYPE_Q4_K, json_object_get(g, "q4_K"));
    check_dequant("q6_K", TW_DTYPE_Q6_K, json_object_get(g, "q6_K"));
    json_decref(g);
    return check_report("quant_golden");
}
