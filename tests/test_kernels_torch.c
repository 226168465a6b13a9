/* test_kernels_torch.c: the dispatched kernels (auto, or ref under FG_KERNELS=ref)
 * against PyTorch: tests/fixtures/kernels/kernels.fgfix, written by
 * tools/gen_kernel_fixtures.py (torch computes in float64 from float32 inputs).
 * Tolerance 1e-5 of the largest reference value unless noted: float32 kernels on
 * reductions of <= 64 terms of unit size are good to ~1e-6 there. */
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "harness.h"

static const fg_fixture_tensor *get(const fg_fixture *fx, const char *name)
{
    return fg_fixture_get(fx, name);
}
#define F(name) ((const float *)get(fx, name)->data)
#define I(name) ((const int32_t *)get(fx, name)->data)
#define NUMEL(name) (get(fx, name)->numel)

static float *zeros(size_t n)
{
    float *p = fg_calloc(n + 16, sizeof(float));
    FG_ASSERT(p);
    return p;
}

static void t_matmul(const fg_fixture *fx)
{
    const fg_fixture_tensor *x = get(fx, "matmul.inp"), *w = get(fx, "matmul.weight");
    int N = x->shape[0], C = x->shape[1], OC = w->shape[0];
    float *out = zeros((size_t)N * OC), *di = zeros((size_t)N * C), *dw = zeros((size_t)OC * C), *db = zeros(OC);
    fg_matmul_forward(out, F("matmul.inp"), F("matmul.weight"), F("matmul.bias"), N, C, OC);
    fg_test_check_tensor("torch matmul.out", out, F("matmul.out"), (size_t)N * OC, 1e-5);
    fg_matmul_backward(di, dw, db, F("matmul.dout"), F("matmul.inp"), F("matmul.weight"), N, C, OC);
    fg_test_check_tensor("torch matmul.dinp", di, F("matmul.dinp"), (size_t)N * C, 1e-5);
    fg_test_check_tensor("torch matmul.dweight", dw, F("matmul.dweight"), (size_t)OC * C, 1e-5);
    fg_test_check_tensor("torch matmul.dbias", db, F("matmul.dbias"), OC, 1e-5);
    fg_free(out), fg_free(di), fg_free(dw), fg_free(db);
}

static void t_embedding(const fg_fixture *fx)
{
    const fg_fixture_tensor *wte = get(fx, "embedding.wte"), *wpe = get(fx, "embedding.wpe");
    int V = wte->shape[0], C = wte->shape[1], T = wpe->shape[0], N = (int)NUMEL("embedding.tokens");
    float *out = zeros((size_t)N * C), *dwte = zeros((size_t)V * C), *dwpe = zeros((size_t)T * C);
    fg_embedding_forward(out, I("embedding.tokens"), F("embedding.wte"), F("embedding.wpe"), N, T, C);
    fg_test_check_tensor("torch embedding.out", out, F("embedding.out"), (size_t)N * C, 1e-6);
    fg_embedding_backward(dwte, dwpe, F("embedding.dout"), I("embedding.tokens"), N, T, C);
    fg_test_check_tensor("torch embedding.dwte", dwte, F("embedding.dwte"), (size_t)V * C, 1e-6);
    fg_test_check_tensor("torch embedding.dwpe", dwpe, F("embedding.dwpe"), (size_t)T * C, 1e-6);
    fg_free(out), fg_free(dwte), fg_free(dwpe);
}

static void t_norms(const fg_fixture *fx)
{
    const fg_fixture_tensor *x = get(fx, "rmsnorm.inp");
    int N = x->shape[0], C = x->shape[1];
    float *out = zeros((size_t)N * C), *rstd = zeros(N), *mean = zeros(N), *di = zeros((size_t)N * C), *dw = zeros(C),
          *db = zeros(C);
    fg_rmsnorm_forward(out, rstd, F("rmsnorm.inp"), F("rmsnorm.weight"), N, C, 1e-5f);
    fg_test_check_tensor("torch rmsnorm.out", out, F("rmsnorm.out"), (size_t)N * C, 1e-5);
    fg_test_check_tensor("torch rmsnorm.rstd", rstd, F("rmsnorm.rstd"), N, 1e-5);
    fg_rmsnorm_backward(di, dw, F("rmsnorm.dout"), F("rmsnorm.inp"), F("rmsnorm.weight"), rstd, N, C);
    fg_test_check_tensor("torch rmsnorm.dinp", di, F("rmsnorm.dinp"), (size_t)N * C, 1e-5);
    fg_test_check_tensor("torch rmsnorm.dweight", dw, F("rmsnorm.dweight"), C, 1e-5);

    memset(di, 0, (size_t)N * C * 4), memset(dw, 0, (size_t)C * 4);
    fg_layernorm_forward(out, mean, rstd, F("layernorm.inp"), F("layernorm.weight"), F("layernorm.bias"), N, C, 1e-5f);
    fg_test_check_tensor("torch layernorm.out", out, F("layernorm.out"), (size_t)N * C, 1e-5);
    fg_test_check_tensor("torch layernorm.mean", mean, F("layernorm.mean"), N, 1e-5);
    fg_test_check_tensor("torch layernorm.rstd", rstd, F("layernorm.rstd"), N, 1e-5);
    fg_layernorm_backward(di, dw, db, F("layernorm.dout"), F("layernorm.inp"), F("layernorm.weight"), mean, rstd, N, C);
    fg_test_check_tensor("torch layernorm.dinp", di, F("layernorm.dinp"), (size_t)N * C, 1e-5);
    fg_test_check_tensor("torch layernorm.dweight", dw, F("layernorm.dweight"), C, 1e-5);
    fg_test_check_tensor("torch layernorm.dbias", db, F("layernorm.dbias"), C, 1e-5);
    fg_free(out), fg_free(rstd), fg_free(mean), fg_free(di), fg_free(dw), fg_free(db);
}

static void t_rope(const fg_fixture *fx)
{
    const int32_t *d = I("rope.dims");
    int B = d[0], T = d[1], NH = d[2], HS = d[3], stride = d[4], pos0 = d[5];
    size_t n = NUMEL("rope.x");
    float *x = zeros(n);
    memcpy(x, F("rope.x"), n * 4);
    fg_rope_forward(x, B, T, NH, HS, stride, pos0, 10000.0f);
    /* angles up to 9 rad: float sin/cos of a float angle are good to ~1e-6 */
    fg_test_check_tensor("torch rope.out", x, F("rope.out"), n, 1e-5);
    /* backward: gradient of (rope(x) * g) wrt x is rope^T(g), written in place into a
     * strided buffer holding g in the first NH*HS columns of each row */
    float *g = zeros((size_t)B * T * stride), *want = zeros((size_t)B * T * NH * HS);
    for (int r = 0; r < B * T; r++)
        memcpy(g + (size_t)r * stride, F("rope.dout") + (size_t)r * NH * HS, (size_t)NH * HS * 4);
    fg_rope_backward(g, B, T, NH, HS, stride, pos0, 10000.0f);
    for (int r = 0; r < B * T; r++)
        memcpy(want + (size_t)r * NH * HS, g + (size_t)r * stride, (size_t)NH * HS * 4);
    fg_test_check_tensor("torch rope.dx", want, F("rope.dx"), (size_t)B * T * NH * HS, 1e-5);
    fg_free(x), fg_free(g), fg_free(want);
}

static void t_attention(const fg_fixture *fx, const char *p)
{
    char k[64];
    snprintf(k, sizeof k, "%s.dims", p);
    const int32_t *d = I(k);
    int B = d[0], T = d[1], C = d[2], NH = d[3];
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *out = zeros(no), *lse = zeros((size_t)B * NH * T), *dqkv = zeros(nq);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s.qkv", p);
    fg_attention_forward(out, lse, F(a), B, T, C, NH);
    snprintf(b, sizeof b, "torch %s.out", p), snprintf(k, sizeof k, "%s.out", p);
    fg_test_check_tensor(b, out, F(k), no, 1e-5);
    snprintf(b, sizeof b, "torch %s.lse", p), snprintf(k, sizeof k, "%s.lse", p);
    fg_test_check_tensor(b, lse, F(k), (size_t)B * NH * T, 1e-5);
    snprintf(k, sizeof k, "%s.dout", p);
    fg_attention_backward(dqkv, F(k), F(a), out, lse, B, T, C, NH);
    snprintf(b, sizeof b, "torch %s.dqkv", p), snprintf(k, sizeof k, "%s.dqkv", p);
    fg_test_check_tensor(b, dqkv, F(k), nq, 1e-5);
    fg_free(out), fg_free(lse), fg_free(dqkv);
}

static void t_activations(const fg_fixture *fx)
{
    size_t n = NUMEL("gelu.inp");
    float *out = zeros(n), *d = zeros(n);
    fg_gelu_forward(out, F("gelu.inp"), n);
    /* vector exp/sigmoid variants: a few float ulps (measured 1.4e-6 on dinp) */
    fg_test_check_tensor("torch gelu.out", out, F("gelu.out"), n, 1e-5);
    fg_gelu_backward(d, F("gelu.dout"), F("gelu.inp"), n);
    fg_test_check_tensor("torch gelu.dinp", d, F("gelu.dinp"), n, 1e-5);
    fg_free(out), fg_free(d);

    const fg_fixture_tensor *x = get(fx, "swiglu.inp");
    int N = x->shape[0], H = x->shape[1] / 2;
    out = zeros((size_t)N * H), d = zeros((size_t)N * 2 * H);
    fg_swiglu_forward(out, F("swiglu.inp"), N, H);
    fg_test_check_tensor("torch swiglu.out", out, F("swiglu.out"), (size_t)N * H, 1e-5);
    fg_swiglu_backward(d, F("swiglu.dout"), F("swiglu.inp"), N, H);
    fg_test_check_tensor("torch swiglu.dinp", d, F("swiglu.dinp"), (size_t)N * 2 * H, 1e-5);
    fg_free(out), fg_free(d);
}

static void t_xent(const fg_fixture *fx)
{
    const int32_t *d = I("xent.dims");
    int N = d[0], V = d[1], Vp = d[2];
    float dloss = F("xent.dloss")[0];
    float *losses = zeros(N), *dl = zeros((size_t)N * Vp);
    double tot = fg_softmax_xent(dl, losses, F("xent.logits"), I("xent.targets"), N, V, Vp, dloss);
    fg_test_check_tensor("torch xent.losses", losses, F("xent.losses"), N, 1e-5);
    fg_test_check_tensor("torch xent.dlogits", dl, F("xent.dlogits"), (size_t)N * Vp, 1e-5);
    double want = 0;
    for (int i = 0; i < N; i++)
        want += F("xent.losses")[i];
    FG_CHECK_CLOSE(tot, want, 1e-5);
    fg_free(losses), fg_free(dl);
}

static void t_adamw(const fg_fixture *fx)
{
    size_t n = NUMEL("adamw.p0");
    const float *h = F("adamw.hyper");
    float *p = zeros(n), *m = zeros(n), *v = zeros(n);
    memcpy(p, F("adamw.p0"), n * 4);
    for (int t = 1; t <= 3; t++)
        fg_adamw_update(p, F("adamw.grads") + (size_t)(t - 1) * n, m, v, n, h[0], h[1], h[2], h[3], h[4], t);
    /* torch runs in float32 too, in another operation order: a few ulps */
    fg_test_check_tensor("torch adamw.p", p, F("adamw.p3"), n, 1e-6);
    fg_test_check_tensor("torch adamw.m", m, F("adamw.m3"), n, 1e-6);
    fg_test_check_tensor("torch adamw.v", v, F("adamw.v3"), n, 1e-6);
    fg_free(p), fg_free(m), fg_free(v);
}

int main(void)
{
    FG_TEST_BEGIN("kernels_torch");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    fg_fixture fxs, *fx = &fxs;
    const char *path = fg_test_source_path("tests/fixtures/kernels/kernels.fgfix");
    fg_status st = fg_fixture_load(fx, path);
    FG_CHECK(st == FG_OK, "load %s: %s", path, fg_last_error());
    if (st != FG_OK)
        return fg_test_end();
    printf("kernels_torch: matmul=%s attention=%s\n", fg_kernels_variant("matmul"), fg_kernels_variant("attention"));
    t_matmul(fx);
    t_embedding(fx);
    t_norms(fx);
    t_rope(fx);
    t_attention(fx, "attention");
    t_attention(fx, "attention1");
    t_activations(fx);
    t_xent(fx);
    t_adamw(fx);
    fg_fixture_free(fx);
    return fg_test_end();
}
