/* test_model_stage.c: the pipeline range view of the model (fg_model_forward_range /
 * _backward_range) as an interleaved pipeline drives it: a range's backward after the
 * forward of another, disjoint range gives the whole model's grads (the head's state
 * belongs to the forward that ran the head). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/core.h"
#include "frugal/model.h"
#include "harness.h"

static void test_interleaved_ranges(fg_layout layout)
{
    enum { V = 32, L = 4, NH = 2, C = 16, B = 2, T = 8, N = B * T, H = L / 2 };
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V;
    cfg.max_seq_len = T;
    cfg.n_layer = L;
    cfg.n_head = NH;
    cfg.d_model = C;
    fg_model *m = fg_model_new(&cfg, B, T);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    if (!m)
        return;
    fg_model_init_weights(m, 5);
    int32_t in[N], tg[N];
    fg_rng r;
    fg_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        in[i] = (int32_t)fg_rng_below(&r, V);
        tg[i] = (int32_t)fg_rng_below(&r, V);
    }
    size_t np = fg_model_num_params(m);
    float *ref = malloc(np * sizeof(float)), *y = malloc((size_t)N * C * sizeof(float)),
          *y2 = malloc((size_t)N * C * sizeof(float)), *dx = malloc((size_t)N * C * sizeof(float));
    FG_CHECK(ref && y && y2 && dx, "out of memory");
    /* reference: the two ranges in 1F1B order of one micro-batch */
    fg_model_zero_grad(m);
    float l0 = 0, l1 = 0;
    fg_status st = fg_model_forward_range(m, 0, H, in, NULL, NULL, B, T, y, &l0);
    st = st ? st : fg_model_forward_range(m, H, L, NULL, tg, y, B, T, NULL, &l1);
    st = st ? st : fg_model_backward_range(m, H, L, y, NULL, dx, 1.0f);
    st = st ? st : fg_model_backward_range(m, 0, H, NULL, dx, NULL, 1.0f);
    FG_CHECK(st == FG_OK, "reference: %s", fg_last_error());
    memcpy(ref, fg_model_grads(m), np * sizeof(float));
    /* interleaved: the first range runs another forward (the next micro-batch's, here the
     * same tokens) between the head's forward and its backward */
    fg_model_zero_grad(m);
    st = fg_model_forward_range(m, 0, H, in, NULL, NULL, B, T, y, NULL);
    st = st ? st : fg_model_forward_range(m, H, L, NULL, tg, y, B, T, NULL, NULL);
    st = st ? st : fg_model_forward_range(m, 0, H, in, NULL, NULL, B, T, y2, NULL);
    st = st ? st : fg_model_backward_range(m, H, L, y, NULL, dx, 1.0f);
    st = st ? st : fg_model_backward_range(m, 0, H, NULL, dx, NULL, 1.0f);
    FG_CHECK(st == FG_OK, "interleaved: %s", fg_last_error());
    const float *g = fg_model_grads(m);
    size_t bad = 0;
    double gmax = 0;
    for (size_t i = 0; i < np; i++) {
        bad += g[i] != ref[i];
        gmax = fmax(gmax, fabs(ref[i]));
    }
    FG_CHECK(gmax > 0 && bad == 0, "%s: %zu of %zu grads differ from the 1F1B order's (max |g| %g)",
             layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama", bad, np, gmax);
    free(ref);
    free(y);
    free(y2);
    free(dx);
    fg_model_delete(m);
}

int main(void)
{
    FG_TEST_BEGIN("model_stage");
    test_interleaved_ranges(FG_LAYOUT_GPT2);
    test_interleaved_ranges(FG_LAYOUT_LLAMA);
    return fg_test_end();
}
