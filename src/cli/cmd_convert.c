// twin convert: a model from one format to the other — a Hugging Face folder or GGUF file
// in, GGUF (f32, f16, bf16, q8_0, q4_0, q4_K) or a Hugging Face folder (f32, f16, bf16) out.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "model/convert.h"
#include "model/model.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_convert;
    const char *src = NULL, *dst = NULL, *type = NULL, *val;
    for (int i = 1; i < argc; i++) {
        if (tw_cli_opt(argc, argv, &i, "--type", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--type needs a TYPE");
            type = val;
        } else if (argv[i][0] == '-') {
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else if (!src) {
            src = argv[i];
        } else if (!dst) {
            dst = argv[i];
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!src || !dst)
        return tw_cli_usage_error(v, "SOURCE and DESTINATION are required");
    bool to_gguf = ends_with(dst, ".gguf");
    enum tw_dtype t = to_gguf ? TW_DTYPE_F16 : TW_DTYPE_F32;
    if (type && tw_dtype_from_name(type, &t) != 0)
        return tw_cli_usage_error(v, "%s", tw_error_msg());
    if (!to_gguf && t != TW_DTYPE_F32 && t != TW_DTYPE_F16 && t != TW_DTYPE_BF16)
        return tw_cli_usage_error(v, "a Hugging Face folder holds f32, f16 or bf16");
    if (to_gguf && t == TW_DTYPE_Q6_K)
        return tw_cli_usage_error(v, "--type is one of f32, f16, bf16, q8_0, q4_0, q4_K");
    struct tw_model *m;
    if (tw_model_open(src, &m) != 0)
        return tw_cli_fail();
    int rc = to_gguf ? tw_convert_to_gguf(m, dst, t) : tw_convert_to_hf(m, dst, t);
    if (rc == 0)
        printf("wrote %s (%s, %s)\n", dst, to_gguf ? "GGUF" : "Hugging Face", tw_dtype_name(t));
    tw_model_close(m);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_convert = {
    .name = "convert",
    .summary = "convert a model between Hugging Face and GGUF",
    .usage = "usage: twin convert SOURCE DESTINATION [--type TYPE]\n"
             "\n"
             "SOURCE is a Hugging Face folder or a .gguf file. A DESTINATION ending in .gguf\n"
             "gets a GGUF file (TYPE f32, f16 (default), bf16, q8_0, q4_0 or q4_K; norms stay\n"
             "f32, and rows that do not fill the type's blocks fall back to q4_0 or f16);\n"
             "any other DESTINATION is a new Hugging Face folder (TYPE f32 (default), f16 or\n"
             "bf16; quantised weights are decoded). The result appears whole or not at all.\n",
    .run = run,
};
