/* test_kernels_grad.c: every backward kernel (as dispatched: auto, or ref under
 * FG_KERNELS=ref) against central finite differences of the scalar reference
 * forward, and the attention forward against a naive T x T softmax in double.
 *
 * FD method: loss L = sum(out * G) for a fixed random G, accumulated in double; the
 * forward is the `_ref` kernel (double inside, one float rounding per output). Each
 * probed input x_i is moved by +-h (h = 1e-2, the actual float step is used) and
 * dL/dx_i ~ (L+ - L-) / (x+ - x-). Error sources, relative to the largest gradient
 * g_max ~ 1..10: truncation h^2/6 |L'''| ~ 2e-5 |L'''|, and output rounding
 * 2^-24 |out| |G| sqrt(#outputs touched by x_i) / (2h) ~ 1e-4 for ~100 touched
 * outputs of size ~3 (worst case; measured: 1e-6..2e-5 of g_max, see
 * FG_TEST_VERBOSE=1). The tolerance 5e-4 * g_max sits >= 25x above what was measured;
 * a wrong gradient (missing term, wrong sign, wrong index) is off by O(g_max). */
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "harness.h"

static fg_rng rng;

static float *randn(size_t n, float s)
{
    float *x = fg_malloc(n * sizeof(float) + 64);
    FG_ASSERT(x);
    for (size_t i = 0; i < n; i++)
        x[i] = s * fg_rng_normal(&rng);
    return x;
}

static float *zeros(size_t n)
{
    float *x = fg_calloc(n + 16, sizeof(float));
    FG_ASSERT(x);
    return x;
}

static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Probes up to nprobe coordinates of x (all when n <= nprobe) and checks the analytic
 * gradient grad[] against central differences of f. */
static void fd_check(const char *name, float *x, size_t n, const float *grad, loss_fn f, void *ctx, int nprobe)
{
    const float h = 1e-2f;
    double gmax = 0, emax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    for (int p = 0; p < nprobe && (size_t)p < n; p++) {
        size_t i = n <= (size_t)nprobe ? (size_t)p : fg_rng_below(&rng, (uint32_t)n);
        float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        emax = fmax(emax, fabs(fd - grad[i]));
    }
    double rel = emax / fmax(gmax, 1e-6);
    if (getenv("FG_TEST_VERBOSE"))
        printf("  FD %-28s rel err %.2e (max grad %.3g)\n", name, rel, gmax);
    fg_test_record(rel <= 5e-4, __FILE__, __LINE__, "FD %s: max err %.3g of max grad %.3g (rel %.3g > 5e-4)", name,
                   emax, gmax, rel);
}

/* ---- matmul ---- */
typedef struct {
    int N, C, OC;
    float *inp, *w, *b, *out, *G;
} mm_ctx;
static double mm_loss(void *p)
{
    mm_ctx *c = p;
    fg_matmul_forward_ref(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dotd(c->out, c->G, (size_t)c->N * c->OC);
}
static void t_matmul(void)
{
    mm_ctx c = {9, 21, 13, 0, 0, 0, 0, 0};
    c.inp = randn((size_t)c.N * c.C, 1), c.w = randn((size_t)c.OC * c.C, 1), c.b = randn(c.OC, 1);
    c.out = zeros((size_t)c.N * c.OC), c.G = randn((size_t)c.N * c.OC, 1);
    float *di = zeros((size_t)c.N * c.C), *dw = zeros((size_t)c.OC * c.C), *db = zeros(c.OC);
    fg_matmul_backward(di, dw, db, c.G, c.inp, c.w, c.N, c.C, c.OC);
    fd_check("matmul.dinp", c.inp, (size_t)c.N * c.C, di, mm_loss, &c, 40);
    fd_check("matmul.dweight", c.w, (size_t)c.OC * c.C, dw, mm_loss, &c, 40);
    fd_check("matmul.dbias", c.b, c.OC, db, mm_loss, &c, 40);
    fg_free(c.inp), fg_free(c.w), fg_free(c.b), fg_free(c.out), fg_free(c.G), fg_free(di), fg_free(dw), fg_free(db);
}

/* ---- embedding ---- */
typedef struct {
    int N, T, C;
    int32_t *tok;
    float *wte, *wpe, *out, *G;
} emb_ctx;
static double emb_loss(void *p)
{
    emb_ctx *c = p;
    fg_embedding_forward_ref(c->out, c->tok, c->wte, c->wpe, c->N, c->T, c->C);
    return dotd(c->out, c->G, (size_t)c->N * c->C);
}
static void t_embedding(void)
{
    int32_t tok[12] = {3, 1, 3, 0, 4, 4, 2, 3, 1, 0, 0, 3};
    emb_ctx c = {12, 4, 7, tok, 0, 0, 0, 0};
    c.wte = randn(5 * 7, 1), c.wpe = randn(4 * 7, 1), c.out = zeros(12 * 7), c.G = randn(12 * 7, 1);
    float *dwte = zeros(5 * 7), *dwpe = zeros(4 * 7);
    fg_embedding_backward(dwte, dwpe, c.G, tok, 12, 4, 7);
    fd_check("embedding.dwte", c.wte, 35, dwte, emb_loss, &c, 40);
    fd_check("embedding.dwpe", c.wpe, 28, dwpe, emb_loss, &c, 40);
    fg_free(c.wte), fg_free(c.wpe), fg_free(c.out), fg_free(c.G), fg_free(dwte), fg_free(dwpe);
}

/* ---- norms ---- */
typedef struct {
    int N, C, layer;
    float *x, *w, *b, *out, *s1, *s2, *G;
} norm_ctx;
static double norm_loss(void *p)
{
    norm_ctx *c = p;
    if (c->layer)
        fg_layernorm_forward_ref(c->out, c->s1, c->s2, c->x, c->w, c->b, c->N, c->C, 1e-5f);
    else
        fg_rmsnorm_forward_ref(c->out, c->s2, c->x, c->w, c->N, c->C, 1e-5f);
    return dotd(c->out, c->G, (size_t)c->N * c->C);
}
static void t_norms(void)
{
    for (int layer = 0; layer < 2; layer++) {
        norm_ctx c = {5, 19, layer, 0, 0, 0, 0, 0, 0, 0};
        size_t n = (size_t)c.N * c.C;
        c.x = randn(n, 1.5f), c.w = randn(c.C, 1), c.b = randn(c.C, 1), c.out = zeros(n), c.G = randn(n, 1);
        c.s1 = zeros(c.N), c.s2 = zeros(c.N);
        for (size_t i = 0; i < n; i++)
            c.x[i] += 0.5f;
        float *di = zeros(n), *dw = zeros(c.C), *db = zeros(c.C);
        norm_loss(&c); /* saved statistics */
        if (layer)
            fg_layernorm_backward(di, dw, db, c.G, c.x, c.w, c.s1, c.s2, c.N, c.C);
        else
            fg_rmsnorm_backward(di, dw, c.G, c.x, c.w, c.s2, c.N, c.C);
        fd_check(layer ? "layernorm.dinp" : "rmsnorm.dinp", c.x, n, di, norm_loss, &c, 60);
        fd_check(layer ? "layernorm.dweight" : "rmsnorm.dweight", c.w, c.C, dw, norm_loss, &c, 40);
        if (layer)
            fd_check("layernorm.dbias", c.b, c.C, db, norm_loss, &c, 40);
        fg_free(c.x), fg_free(c.w), fg_free(c.b), fg_free(c.out), fg_free(c.G), fg_free(c.s1), fg_free(c.s2);
        fg_free(di), fg_free(dw), fg_free(db);
    }
}

/* ---- rope: in place, so the loss rotates a copy ---- */
typedef struct {
    int B, T, NH, HS, stride, pos0;
    float *x, *tmp, *G;
} rope_ctx;
static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t n = (size_t)c->B * c->T * c->stride;
    memcpy(c->tmp, c->x, n * 4);
    fg_rope_forward_ref(c->tmp, c->B, c->T, c->NH, c->HS, c->stride, c->pos0, 10000.0f);
    return dotd(c->tmp, c->G, n);
}
static void t_rope(void)
{
    rope_ctx c = {2, 5, 2, 8, 40, 7, 0, 0, 0};
    size_t n = (size_t)c.B * c.T * c.stride;
    c.x = randn(n, 1), c.tmp = zeros(n), c.G = randn(n, 1);
    /* gradient wrt x: rope backward applied to G, plus G itself on the untouched columns */
    float *d = zeros(n);
    memcpy(d, c.G, n * 4);
    fg_rope_backward(d, c.B, c.T, c.NH, c.HS, c.stride, c.pos0, 10000.0f);
    fd_check("rope.dx", c.x, n, d, rope_loss, &c, 80);
    fg_free(c.x), fg_free(c.tmp), fg_free(c.G), fg_free(d);
}

/* ---- attention ---- */
typedef struct {
    int B, T, C, NH;
    float *qkv, *out, *lse, *G;
} att_ctx;
static double att_loss(void *p)
{
    att_ctx *c = p;
    fg_attention_forward_ref(c->out, c->lse, c->qkv, c->B, c->T, c->C, c->NH);
    return dotd(c->out, c->G, (size_t)c->B * c->T * c->C);
}
static void t_attention(int B, int T, int NH, int HS)
{
    att_ctx c = {B, T, NH * HS, NH, 0, 0, 0, 0};
    size_t nq = (size_t)B * T * 3 * c.C, no = (size_t)B * T * c.C;
    c.qkv = randn(nq, 1), c.out = zeros(no), c.lse = zeros((size_t)B * NH * T), c.G = randn(no, 1);
    float *o = zeros(no), *l = zeros((size_t)B * NH * T), *dq = zeros(nq);
    fg_attention_forward(o, l, c.qkv, B, T, c.C, NH);
    fg_attention_backward(dq, c.G, c.qkv, o, l, B, T, c.C, NH);
    char name[64];
    snprintf(name, sizeof name, "attention B%d T%d NH%d HS%d", B, T, NH, HS);
    fd_check(name, c.qkv, nq, dq, att_loss, &c, 120);
    fg_free(c.qkv), fg_free(c.out), fg_free(c.lse), fg_free(c.G), fg_free(o), fg_free(l), fg_free(dq);
}

/* The attention forward against the textbook form: a full T x T score matrix per
 * head, masked, softmaxed, times V, all in double. Tolerance 1e-5: float outputs of
 * convex combinations of unit-size values. */
static void t_attention_naive(int B, int T, int NH, int HS)
{
    int C = NH * HS;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = randn(nq, 1.5f), *o = zeros(no), *l = zeros((size_t)B * NH * T);
    float *want = zeros(no), *lwant = zeros((size_t)B * NH * T);
    double *S = fg_malloc((size_t)T * T * sizeof(double));
    fg_attention_forward(o, l, qkv, B, T, C, NH);
    double scale = 1.0 / sqrt((double)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * 3 * C + (size_t)h * HS;
            for (int t = 0; t < T; t++)
                for (int j = 0; j < T; j++)
                    S[(size_t)t * T + j] =
                        j > t ? -INFINITY
                              : scale * dotd(base + (size_t)t * 3 * C, base + (size_t)j * 3 * C + C, (size_t)HS);
            for (int t = 0; t < T; t++) {
                double *s = S + (size_t)t * T, mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++)
                    mx = fmax(mx, s[j]);
                for (int j = 0; j < T; j++)
                    sum += (s[j] = exp(s[j] - mx));
                // cppcheck-suppress invalidFunctionArg ; sum >= 1 (the maximum's term)
                lwant[((size_t)b * NH + h) * T + t] = (float)(mx + log(sum));
                for (int i = 0; i < HS; i++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += s[j] / sum * base[(size_t)j * 3 * C + 2 * C + i];
                    want[((size_t)b * T + t) * C + (size_t)h * HS + i] = (float)acc;
                }
            }
        }
    char name[64];
    snprintf(name, sizeof name, "naive attention T%d HS%d out", T, HS);
    fg_test_check_tensor(name, o, want, no, 1e-5);
    snprintf(name, sizeof name, "naive attention T%d HS%d lse", T, HS);
    fg_test_check_tensor(name, l, lwant, (size_t)B * NH * T, 1e-5);
    fg_free(qkv), fg_free(o), fg_free(l), fg_free(want), fg_free(lwant), fg_free(S);
}

/* ---- activations ---- */
typedef struct {
    int N, H, gelu;
    float *x, *out, *G;
} act_ctx;
static double act_loss(void *p)
{
    act_ctx *c = p;
    size_t n = (size_t)c->N * c->H;
    if (c->gelu)
        fg_gelu_forward_ref(c->out, c->x, n);
    else
        fg_swiglu_forward_ref(c->out, c->x, c->N, c->H);
    return dotd(c->out, c->G, n);
}
static void t_activations(void)
{
    act_ctx c = {1, 200, 1, 0, 0, 0};
    c.x = randn(200, 2), c.out = zeros(200), c.G = randn(200, 1);
    float *d = zeros(200);
    fg_gelu_backward(d, c.G, c.x, 200);
    fd_check("gelu.dinp", c.x, 200, d, act_loss, &c, 200);
    fg_free(c.x), fg_free(c.out), fg_free(c.G), fg_free(d);

    act_ctx s = {4, 23, 0, 0, 0, 0};
    s.x = randn(4 * 46, 2), s.out = zeros(4 * 23), s.G = randn(4 * 23, 1);
    d = zeros(4 * 46);
    fg_swiglu_backward(d, s.G, s.x, 4, 23);
    fd_check("swiglu.dinp", s.x, 4 * 46, d, act_loss, &s, 184);
    fg_free(s.x), fg_free(s.out), fg_free(s.G), fg_free(d);
}

/* ---- softmax + cross-entropy: L = dloss * sum of counted losses ---- */
typedef struct {
    int N, V, Vp;
    float dloss;
    float *logits, *losses;
    int32_t *tgt;
} xent_ctx;
static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return c->dloss * fg_softmax_xent_ref(NULL, c->losses, c->logits, c->tgt, c->N, c->V, c->Vp, 1.0f);
}
static void t_xent(void)
{
    int32_t tgt[5] = {3, -1, 16, 0, 9};
    xent_ctx c = {5, 17, 24, 0.5f, 0, 0, tgt};
    c.logits = randn(5 * 24, 2), c.losses = zeros(5);
    float *d = zeros(5 * 24);
    fg_softmax_xent(d, c.losses, c.logits, tgt, c.N, c.V, c.Vp, c.dloss);
    fd_check("softmax_xent.dlogits", c.logits, 5 * 24, d, xent_loss, &c, 120);
    fg_free(c.logits), fg_free(c.losses), fg_free(d);
}

int main(void)
{
    FG_TEST_BEGIN("kernels_grad");
    fg_rng_seed(&rng, 7);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    printf("kernels_grad: attention=%s\n", fg_kernels_variant("attention"));
    t_matmul();
    t_embedding();
    t_norms();
    t_rope();
    t_attention(1, 1, 2, 4);
    t_attention(2, 7, 2, 8);
    t_attention(1, 19, 1, 64);
    t_attention_naive(1, 1, 2, 64);
    t_attention_naive(2, 5, 2, 16);
    t_attention_naive(1, 67, 3, 64);
    t_attention_naive(1, 129, 2, 64);
    t_activations();
    t_xent();
    return fg_test_end();
}
