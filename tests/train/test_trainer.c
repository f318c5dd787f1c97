// The training loop on real data: pretraining a small model on State of the Union speeches
// (the loss falls; the held-out loss is reported), a run stopped by the stop flag and resumed
// from its checkpoint ending bit-identical to an uninterrupted run, a diverging run stopped
// with the step named, the wrong data refused, LoRA SFT on Alpaca lines and DPO (whose first
// loss is log 2: with B = 0 the policy is its reference).
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "model/model.h"
#include "sotu_train.h"
#include "train/trainer.h"

struct log {
    double loss[64], eval;
    int64_t n;
    int64_t stop_at;
    volatile sig_atomic_t *stop;
};

static int on_step(void *ud, const struct tw_train_progress *p)
{
    struct log *l = ud;
    if (l->n < 64)
        l->loss[l->n++] = p->loss;
    if (!isnan(p->eval_loss))
        l->eval = p->eval_loss;
    if (l->stop && p->step == l->stop_at)
        *l->stop = 1;
    return 0;
}

static struct tw_model_config small_cfg(const struct tw_model *like)
{
    struct tw_model_config c = like->cfg; // the golden llama's rope and vocabulary
    c.n_embd = 48, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 12, c.n_ff = 96, c.n_layer = 2;
    return c;
}

static void test_pretrain_and_resume(void)
{
    struct tw_model *g = golden_llama();
    struct tw_dataset d;
    sotu_pretrain_data(&d, g->tok);
    struct tw_model_config c = small_cfg(g);
    struct tw_train_opts o;
    tw_train_opts_default(&o, TW_TRAIN_PRETRAIN);
    o.batch = 4, o.seq = 64, o.lr = 3e-3, o.warmup = 2, o.max_steps = 12, o.eval_frac = 0.1;
    char tmpl[] = "/tmp/twin-trainer-XXXXXX", ck[4200];
    REQUIRE(mkdtemp(tmpl) != NULL);
    snprintf(ck, sizeof ck, "%s/state.safetensors", tmpl);
    // A: twelve steps straight through.
    tw_lm *a;
    REQUIRE(tw_lm_new_random(&c, 3, &a) == 0);
    struct log la = { 0 };
    o.on_step = on_step, o.ud = &la;
    struct tw_train_result ra;
    REQUIRE(tw_train(a, NULL, &d, &o, &ra) == 0);
    CHECK_EQ_INT(ra.steps, 12);
    CHECK_EQ_INT(la.n, 12);
    CHECK(la.loss[11] < la.loss[0] - 0.3);
    CHECK(la.loss[0] > 5.5 && la.loss[0] < 7.0); // about log(512) from random weights
    CHECK(!isnan(ra.eval_loss) && ra.eval_loss < la.loss[0]);
    // B: the same run stopped after step 5 with a checkpoint, then resumed to the end.
    tw_lm *b;
    REQUIRE(tw_lm_new_random(&c, 3, &b) == 0);
    volatile sig_atomic_t stop = 0;
    struct log lb = { .stop_at = 5, .stop = &stop };
    o.ud = &lb, o.stop = &stop, o.checkpoint = ck;
    struct tw_train_result rb;
    CHECK_EQ_INT(tw_train(b, NULL, &d, &o, &rb), TW_ECANCELED);
    CHECK(strstr(tw_error_msg(), "stopped after step 5 of 12") != NULL);
    CHECK(access(ck, R_OK) == 0);
    tw_lm_free(b);
    REQUIRE(tw_lm_new_random(&c, 99, &b) == 0); // other weights: the checkpoint replaces them
    stop = 0, lb.stop = NULL, o.resume = true;
    REQUIRE(tw_train(b, NULL, &d, &o, &rb) == 0);
    CHECK_EQ_INT(lb.n, 12);
    CHECK(memcmp(la.loss, lb.loss, sizeof la.loss) == 0);
    bool same = true;
    for (size_t i = 0; i < tw_lm_n_params(a); i++) {
        const struct tw_lm_param *pa = tw_lm_param_at(a, i), *pb = tw_lm_param_at(b, i);
        same &= memcmp(pa->w, pb->w, pa->n * sizeof(float)) == 0;
    }
    CHECK(same);
    // Resuming under other options is refused, and the model is left alone.
    o.lr = 1e-3;
    CHECK_EQ_INT(tw_train(b, NULL, &d, &o, &rb), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "written for other options") != NULL);
    o.lr = 3e-3, o.resume = false, o.checkpoint = NULL, o.stop = NULL;
    // A learning rate that blows up stops with the step named.
    o.lr = 1e6, o.clip = 0, o.ud = &la, la.n = 0;
    int rc = tw_train(a, NULL, &d, &o, &ra);
    CHECK_EQ_INT(rc, TW_ESTATE);
    CHECK(strstr(tw_error_msg(), "step ") != NULL && strstr(tw_error_msg(), "stopping"));
    // Text cannot train SFT.
    tw_train_opts_default(&o, TW_TRAIN_SFT);
    CHECK_EQ_INT(tw_train(a, NULL, &d, &o, &ra), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "a text dataset cannot train SFT") != NULL);
    tw_lm_free(a);
    tw_lm_free(b);
    unlink(ck);
    rmdir(tmpl);
    tw_dataset_free(&d);
    tw_model_close(g);
}

static const char alpaca[] =
    "{\"instruction\": \"Who wrote the address of 1863?\", \"output\": \"Abraham Lincoln.\"}\n"
    "{\"instruction\": \"What is the Union?\", \"output\": \"The states, one nation.\"}\n"
    "{\"instruction\": \"Name a duty of Congress.\", \"output\": \"To lay and collect "
    "taxes.\"}\n"
    "{\"instruction\": \"What did the President report?\", \"output\": \"The state of the "
    "Union.\"}\n";

static const char prefs[] =
    "{\"prompt\": \"Describe the Union.\", \"chosen\": \"It is strong.\", \"rejected\": "
    "\"No idea.\"}\n"
    "{\"prompt\": \"What of the economy?\", \"chosen\": \"It grows.\", \"rejected\": \"Bad.\"}\n"
    "{\"prompt\": \"And the army?\", \"chosen\": \"It is ready.\", \"rejected\": \"Who "
    "knows.\"}\n";

static void test_lora_sft_and_dpo(void)
{
    struct tw_model *g = golden_llama();
    struct tw_lm_opts lo = {
        .lora_r = 4, .lora_alpha = 8, .lora_targets = TW_PROJ_ALL, .qlora = TW_DTYPE_F32, .seed = 1
    };
    tw_lm *m;
    REQUIRE(tw_lm_new(g, &lo, &m) == 0);
    struct tw_data_options dopt = { .task = TW_DATA_TASK_SFT,
                                    .family = TW_CHAT_ALPACA,
                                    .max_seq = 96 };
    struct tw_dataset d;
    REQUIRE(tw_dataset_load_buffer(&d, "alpaca.jsonl", alpaca, sizeof alpaca - 1, g->tok, &dopt) ==
            0);
    struct tw_train_opts o;
    tw_train_opts_default(&o, TW_TRAIN_SFT);
    o.batch = 2, o.seq = 96, o.lr = 1e-2, o.warmup = 0, o.epochs = 8, o.eval_frac = 0;
    struct log l = { 0 };
    o.on_step = on_step, o.ud = &l;
    struct tw_train_result r;
    REQUIRE(tw_train(m, NULL, &d, &o, &r) == 0);
    CHECK_EQ_INT(r.steps, 16);
    CHECK(l.loss[15] < 0.7 * l.loss[0]);
    tw_dataset_free(&d);
    tw_lm_free(m);
    // DPO from a fresh adapter: the first step's loss is log 2 exactly (B = 0).
    REQUIRE(tw_lm_new(g, &lo, &m) == 0);
    dopt.task = TW_DATA_TASK_DPO, dopt.max_len = 64, dopt.max_prompt = 32;
    REQUIRE(tw_dataset_load_buffer(&d, "prefs.jsonl", prefs, sizeof prefs - 1, g->tok, &dopt) ==
            0);
    tw_train_opts_default(&o, TW_TRAIN_DPO);
    o.batch = 3, o.seq = 64, o.lr = 1e-2, o.warmup = 0, o.epochs = 6, o.eval_frac = 0;
    memset(&l, 0, sizeof l);
    o.on_step = on_step, o.ud = &l;
    REQUIRE(tw_train(m, NULL, &d, &o, &r) == 0);
    CHECK_EQ_INT(r.steps, 6);
    CHECK(fabs(l.loss[0] - log(2.0)) < 1e-6);
    CHECK(l.loss[5] < l.loss[0]);
    CHECK(r.dpo.rewards_margins > 0 && r.dpo.rewards_accuracies > 0.5);
    tw_dataset_free(&d);
    tw_lm_free(m);
    tw_model_close(g);
}

int main(void)
{
    test_pretrain_and_resume();
    test_lora_sft_and_dpo();
    return check_report("train_test_trainer");
}
