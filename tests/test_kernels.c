/* test_kernels.c: every kernel op, in every variant this CPU supports, against the
 * scalar reference on odd shapes (normalised max error), plus the dispatch table:
 * modes, the kernel knobs (bad values refused naming the knob), FG_HW_DISABLE fallback,
 * variant names, and no BLAS threads started with the process.
 * Tolerances: the references accumulate in double, the variants in float, so the
 * expected error is a few float ulps of the largest output times sqrt(length of the
 * reduction); each tolerance below gives >= 10x headroom over what was measured. */
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "frugal/kernels.h"
#include "harness.h"
#include "kernels_util.h"

static fg_rng rng;

static float *randn(size_t n, float s)
{
    float *x = fg_malloc(n * sizeof(float) + 64);
    FG_ASSERT(x);
    for (size_t i = 0; i < n; i++)
        x[i] = s * fg_rng_normal(&rng);
    return x;
}

static float *copy(const float *x, size_t n)
{
    float *y = fg_malloc(n * sizeof(float) + 64);
    FG_ASSERT(y);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void check(const char *op, const char *v, const char *what, const float *got, const float *want, size_t n,
                  double tol)
{
    char name[128];
    snprintf(name, sizeof name, "%s[%s].%s", op, v, what);
    if (getenv("FG_TEST_VERBOSE"))
        printf("  %-40s err %.2e (tol %.0e)\n", name, fg_test_max_rel_err(got, want, n), tol);
    fg_test_check_tensor(name, got, want, n, tol);
}

static void test_sgemm(void)
{
    const char *vs[8];
    int nv = variants("sgemm", vs);
    int M = 19, N = 23, K = 41;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
            float *A = randn((size_t)(ta ? K : M) * lda, 1), *B = randn((size_t)(tb ? N : K) * ldb, 1);
            float *C0 = randn((size_t)M * ldc, 1);
            float *want = copy(C0, (size_t)M * ldc);
            fg_sgemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, want, ldc);
            for (int i = 0; i < nv; i++) {
                float *got = copy(C0, (size_t)M * ldc);
                use("sgemm", vs[i]);
                fg_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, got, ldc);
                check("sgemm", vs[i], ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"), got, want, (size_t)M * ldc, 1e-5);
                fg_free(got);
            }
            fg_free(A), fg_free(B), fg_free(C0), fg_free(want);
        }
}

/* Both GEMM threading modes (FG_BLAS_THREADING) on GEMMs large enough to be split
 * over threads, every transpose combination, odd sizes so slices are uneven. */
static void test_sgemm_threading(void)
{
    const char *modes[] = {"omp", "blas"};
    int M = 203, N = 171, K = 190;
    for (int md = 0; md < 2; md++) {
        setenv("FG_BLAS_THREADING", modes[md], 1);
        FG_CHECK(fg_kernels_init("blas") == FG_OK, "init with FG_BLAS_THREADING=%s: %s", modes[md], fg_last_error());
        for (int shape = 0; shape < 2; shape++) {
            int m = shape ? N : M, n = shape ? M : N; /* split along M, then along N */
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int lda = ta ? m : K, ldb = tb ? K : n;
                    float *A = randn((size_t)(ta ? K : m) * lda, 1), *B = randn((size_t)(tb ? n : K) * ldb, 1);
                    float *want = randn((size_t)m * n, 1), *got = copy(want, (size_t)m * n);
                    fg_sgemm_ref(ta, tb, m, n, K, 1.0f, A, lda, B, ldb, 1.0f, want, n);
                    fg_sgemm(ta, tb, m, n, K, 1.0f, A, lda, B, ldb, 1.0f, got, n);
                    char what[64];
                    snprintf(what, sizeof what, "%s %dx%dx%d ta%d tb%d", modes[md], m, n, K, ta, tb);
                    check("sgemm", "blas", what, got, want, (size_t)m * n, 1e-5);
                    fg_free(A), fg_free(B), fg_free(want), fg_free(got);
                }
        }
    }
    unsetenv("FG_BLAS_THREADING");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

static void test_matmul(int N, int C, int OC)
{
    const char *vs[8];
    int nv = variants("matmul_forward", vs);
    float *inp = randn((size_t)N * C, 1), *w = randn((size_t)OC * C, 0.1f), *b = randn(OC, 1);
    float *dout = randn((size_t)N * OC, 1);
    float *o_ref = randn((size_t)N * OC, 1), *di0 = randn((size_t)N * C, 1), *dw0 = randn((size_t)OC * C, 1),
          *db0 = randn(OC, 1);
    float *di_ref = copy(di0, (size_t)N * C), *dw_ref = copy(dw0, (size_t)OC * C), *db_ref = copy(db0, OC);
    fg_matmul_forward_ref(o_ref, inp, w, b, N, C, OC);
    fg_matmul_backward_ref(di_ref, dw_ref, db_ref, dout, inp, w, N, C, OC);
    for (int i = 0; i < nv; i++) {
        float *o = randn((size_t)N * OC, 1);
        float *di = copy(di0, (size_t)N * C), *dw = copy(dw0, (size_t)OC * C), *db = copy(db0, OC);
        use("matmul_forward", vs[i]);
        use("matmul_backward", vs[i]);
        fg_matmul_forward(o, inp, w, b, N, C, OC);
        check("matmul", vs[i], "out", o, o_ref, (size_t)N * OC, 1e-5);
        fg_matmul_forward(o, inp, w, NULL, N, C, OC); /* no bias: out - bias must match */
        for (int n = 0; n < N; n++)
            for (int k = 0; k < OC; k++)
                o[(size_t)n * OC + k] += b[k];
        check("matmul", vs[i], "out_nobias", o, o_ref, (size_t)N * OC, 1e-5);
        fg_matmul_backward(di, dw, db, dout, inp, w, N, C, OC);
        check("matmul", vs[i], "dinp", di, di_ref, (size_t)N * C, 1e-5);
        check("matmul", vs[i], "dweight", dw, dw_ref, (size_t)OC * C, 1e-5);
        check("matmul", vs[i], "dbias", db, db_ref, OC, 1e-5);
        fg_matmul_backward(NULL, NULL, db, dout, inp, w, N, C, OC); /* NULL outputs are skipped */
        fg_free(o), fg_free(di), fg_free(dw), fg_free(db);
    }
    fg_free(inp), fg_free(w), fg_free(b), fg_free(dout), fg_free(o_ref), fg_free(di0), fg_free(dw0), fg_free(db0);
    fg_free(di_ref), fg_free(dw_ref), fg_free(db_ref);
}

static void test_embedding(void)
{
    const char *vs[8];
    int nv = variants("embedding_forward", vs);
    int B = 3, T = 17, C = 67, V = 11, N = B * T;
    int32_t tok[3 * 17];
    for (int n = 0; n < N; n++)
        tok[n] = (int32_t)fg_rng_below(&rng, V); /* 51 tokens over 11 ids: many repeats */
    float *wte = randn((size_t)V * C, 1), *wpe = randn((size_t)T * C, 1), *dout = randn((size_t)N * C, 1);
    float *o_ref = randn((size_t)N * C, 1), *dwte0 = randn((size_t)V * C, 1), *dwpe0 = randn((size_t)T * C, 1);
    float *dwte_ref = copy(dwte0, (size_t)V * C), *dwpe_ref = copy(dwpe0, (size_t)T * C);
    fg_embedding_forward_ref(o_ref, tok, wte, wpe, N, T, C);
    fg_embedding_backward_ref(dwte_ref, dwpe_ref, dout, tok, N, T, C);
    for (int i = 0; i < nv; i++) {
        float *o = randn((size_t)N * C, 1), *dwte = copy(dwte0, (size_t)V * C), *dwpe = copy(dwpe0, (size_t)T * C);
        use("embedding_forward", vs[i]);
        use("embedding_backward", vs[i]);
        fg_embedding_forward(o, tok, wte, wpe, N, T, C);
        check("embedding", vs[i], "out", o, o_ref, (size_t)N * C, 1e-6);
        fg_embedding_backward(dwte, NULL, dout, tok, N, T, C); /* the two tables one at a time */
        fg_embedding_backward(NULL, dwpe, dout, tok, N, T, C);
        /* sums of up to 51 terms in a different order than the reference */
        check("embedding", vs[i], "dwte", dwte, dwte_ref, (size_t)V * C, 1e-5);
        check("embedding", vs[i], "dwpe", dwpe, dwpe_ref, (size_t)T * C, 1e-5);
        fg_free(o), fg_free(dwte), fg_free(dwpe);
    }
    fg_free(wte), fg_free(wpe), fg_free(dout), fg_free(o_ref), fg_free(dwte0), fg_free(dwpe0), fg_free(dwte_ref);
    fg_free(dwpe_ref);
}

static void test_norms(int N, int C)
{
    const char *vs[8];
    int nv = variants("rmsnorm_forward", vs);
    float *x = randn((size_t)N * C, 2), *w = randn(C, 1), *b = randn(C, 1), *dout = randn((size_t)N * C, 1);
    for (size_t i = 0; i < (size_t)N * C; i++)
        x[i] += 0.7f; /* nonzero mean for layernorm */
    float *o_ref = randn((size_t)N * C, 1), *rs_ref = randn(N, 1), *mu_ref = randn(N, 1);
    float *di0 = randn((size_t)N * C, 1), *dw0 = randn(C, 1), *db0 = randn(C, 1);
    for (int pass = 0; pass < 2; pass++) { /* 0 rmsnorm, 1 layernorm */
        const char *op = pass ? "layernorm" : "rmsnorm";
        float *di_ref = copy(di0, (size_t)N * C), *dw_ref = copy(dw0, C), *db_ref = copy(db0, C);
        if (pass) {
            fg_layernorm_forward_ref(o_ref, mu_ref, rs_ref, x, w, b, N, C, 1e-5f);
            fg_layernorm_backward_ref(di_ref, dw_ref, db_ref, dout, x, w, mu_ref, rs_ref, N, C);
        } else {
            fg_rmsnorm_forward_ref(o_ref, rs_ref, x, w, N, C, 1e-5f);
            fg_rmsnorm_backward_ref(di_ref, dw_ref, dout, x, w, rs_ref, N, C);
        }
        for (int i = 0; i < nv; i++) {
            char fw[64], bw[64];
            snprintf(fw, sizeof fw, "%s_forward", op);
            snprintf(bw, sizeof bw, "%s_backward", op);
            use(fw, vs[i]);
            use(bw, vs[i]);
            float *o = randn((size_t)N * C, 1), *rs = randn(N, 1), *mu = randn(N, 1);
            float *di = copy(di0, (size_t)N * C), *dw = copy(dw0, C), *db = copy(db0, C);
            if (pass) {
                fg_layernorm_forward(o, mu, rs, x, w, b, N, C, 1e-5f);
                fg_layernorm_backward(di, dw, db, dout, x, w, mu_ref, rs_ref, N, C);
                check(op, vs[i], "mean", mu, mu_ref, N, 1e-5);
                check(op, vs[i], "dbias", db, db_ref, C, 1e-5);
            } else {
                fg_rmsnorm_forward(o, rs, x, w, N, C, 1e-5f);
                fg_rmsnorm_backward(di, dw, dout, x, w, rs_ref, N, C);
            }
            /* NULL gradient outputs: the others still get exactly their share */
            float *di2 = copy(di0, (size_t)N * C), *dw2 = copy(dw0, C), *db2 = copy(db0, C);
            if (pass) {
                fg_layernorm_backward(NULL, dw2, NULL, dout, x, w, mu_ref, rs_ref, N, C);
                fg_layernorm_backward(di2, NULL, db2, dout, x, w, mu_ref, rs_ref, N, C);
                check(op, vs[i], "dbias_split", db2, db_ref, C, 1e-5);
            } else {
                fg_rmsnorm_backward(NULL, dw2, dout, x, w, rs_ref, N, C);
                fg_rmsnorm_backward(di2, NULL, dout, x, w, rs_ref, N, C);
            }
            check(op, vs[i], "dinp_split", di2, di_ref, (size_t)N * C, 1e-5);
            check(op, vs[i], "dweight_split", dw2, dw_ref, C, 1e-5);
            fg_free(di2), fg_free(dw2), fg_free(db2);
            check(op, vs[i], "out", o, o_ref, (size_t)N * C, 1e-5);
            check(op, vs[i], "rstd", rs, rs_ref, N, 1e-5);
            check(op, vs[i], "dinp", di, di_ref, (size_t)N * C, 1e-5);
            check(op, vs[i], "dweight", dw, dw_ref, C, 1e-5);
            fg_free(o), fg_free(rs), fg_free(mu), fg_free(di), fg_free(dw), fg_free(db);
        }
        fg_free(di_ref), fg_free(dw_ref), fg_free(db_ref);
    }
    fg_free(x), fg_free(w), fg_free(b), fg_free(dout), fg_free(o_ref), fg_free(rs_ref), fg_free(mu_ref);
    fg_free(di0), fg_free(dw0), fg_free(db0);
}

static void test_rope(int B, int T, int NH, int HS, int stride, int pos0)
{
    const char *vs[8];
    int nv = variants("rope_forward", vs);
    size_t n = (size_t)B * T * stride;
    float *x0 = randn(n, 1), *want = copy(x0, n), *dwant = copy(x0, n);
    fg_rope_forward_ref(want, B, T, NH, HS, stride, pos0, 10000.0f);
    fg_rope_backward_ref(dwant, B, T, NH, HS, stride, pos0, 10000.0f);
    for (int i = 0; i < nv; i++) {
        use("rope_forward", vs[i]);
        use("rope_backward", vs[i]);
        float *got = copy(x0, n), *dgot = copy(x0, n);
        fg_rope_forward(got, B, T, NH, HS, stride, pos0, 10000.0f);
        fg_rope_backward(dgot, B, T, NH, HS, stride, pos0, 10000.0f);
        /* both compute the angles in double; the variants rotate in float (measured
         * 7e-8). Columns past NH*HS must stay untouched: compared too. */
        check("rope", vs[i], "fwd", got, want, n, 1e-5);
        check("rope", vs[i], "bwd", dgot, dwant, n, 1e-5);
        fg_free(got), fg_free(dgot);
    }
    fg_free(x0), fg_free(want), fg_free(dwant);
}

static void test_attention(int B, int T, int NH, int HS)
{
    const char *vs[8];
    int nv = variants("attention_forward", vs);
    int C = NH * HS;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = randn(nq, 1), *dout = randn(no, 1), *dq0 = randn(nq, 1);
    float *o_ref = randn(no, 1), *l_ref = randn(nl, 1), *dq_ref = copy(dq0, nq);
    fg_attention_forward_ref(o_ref, l_ref, qkv, B, T, C, NH);
    fg_attention_backward_ref(dq_ref, dout, qkv, o_ref, l_ref, B, T, C, NH);
    for (int i = 0; i < nv; i++) {
        use("attention_forward", vs[i]);
        use("attention_backward", vs[i]);
        float *o = randn(no, 1), *l = randn(nl, 1), *dq = copy(dq0, nq);
        fg_attention_forward(o, l, qkv, B, T, C, NH);
        fg_attention_backward(dq, dout, qkv, o_ref, l_ref, B, T, C, NH);
        char what[64];
        snprintf(what, sizeof what, "B%dT%dNH%dHS%d.out", B, T, NH, HS);
        check("attention", vs[i], what, o, o_ref, no, 1e-5);
        check("attention", vs[i], "lse", l, l_ref, nl, 1e-5);
        /* dq/dk sum T products of softmax-weighted terms in float (measured <= 6e-7) */
        check("attention", vs[i], "dqkv", dq, dq_ref, nq, 1e-5);
        fg_free(o), fg_free(l), fg_free(dq);
    }
    fg_free(qkv), fg_free(dout), fg_free(dq0), fg_free(o_ref), fg_free(l_ref), fg_free(dq_ref);
}

static void test_activations(void)
{
    const char *vs[8];
    int nv = variants("gelu_forward", vs);
    size_t n = 1000 + 37;
    float *x = randn(n, 3), *g = randn(n, 1), *d0 = randn(n, 1);
    x[0] = 0, x[1] = -12, x[2] = 12, x[3] = 40, x[4] = -40; /* saturated tails */
    float *o_ref = randn(n, 1), *d_ref = copy(d0, n);
    fg_gelu_forward_ref(o_ref, x, n);
    fg_gelu_backward_ref(d_ref, g, x, n);
    for (int i = 0; i < nv; i++) {
        use("gelu_forward", vs[i]);
        use("gelu_backward", vs[i]);
        float *o = randn(n, 1), *d = copy(d0, n);
        fg_gelu_forward(o, x, n);
        fg_gelu_backward(d, g, x, n);
        /* polynomial tanh/exp in the fast variants: a few ulps of the largest value */
        check("gelu", vs[i], "out", o, o_ref, n, 1e-5);
        check("gelu", vs[i], "dinp", d, d_ref, n, 1e-5);
        fg_free(o), fg_free(d);
    }
    fg_free(x), fg_free(g), fg_free(d0), fg_free(o_ref), fg_free(d_ref);

    nv = variants("swiglu_forward", vs);
    int N = 7, H = 333;
    x = randn((size_t)N * 2 * H, 3), g = randn((size_t)N * H, 1), d0 = randn((size_t)N * 2 * H, 1);
    x[0] = -100, x[1] = 100, x[2] = 0;
    o_ref = randn((size_t)N * H, 1), d_ref = copy(d0, (size_t)N * 2 * H);
    fg_swiglu_forward_ref(o_ref, x, N, H);
    fg_swiglu_backward_ref(d_ref, g, x, N, H);
    for (int i = 0; i < nv; i++) {
        use("swiglu_forward", vs[i]);
        use("swiglu_backward", vs[i]);
        float *o = randn((size_t)N * H, 1), *d = copy(d0, (size_t)N * 2 * H);
        fg_swiglu_forward(o, x, N, H);
        fg_swiglu_backward(d, g, x, N, H);
        check("swiglu", vs[i], "out", o, o_ref, (size_t)N * H, 1e-5);
        check("swiglu", vs[i], "dinp", d, d_ref, (size_t)N * 2 * H, 1e-5);
        fg_free(o), fg_free(d);
    }
    fg_free(x), fg_free(g), fg_free(d0), fg_free(o_ref), fg_free(d_ref);
}

static void test_xent(int N, int V, int Vp, float s)
{
    const char *vs[8];
    int nv = variants("softmax_xent", vs);
    size_t n = (size_t)N * Vp;
    float *logits = randn(n, s), *l_ref = randn(N, 1), *d_ref = randn(n, 1);
    int32_t *tgt = fg_malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        tgt[i] = i % 3 == 1 ? -1 : (int32_t)fg_rng_below(&rng, V);
    tgt[0] = V - 1; /* the last real column */
    double tot_ref = fg_softmax_xent_ref(d_ref, l_ref, logits, tgt, N, V, Vp, 0.125f);
    for (int i = 0; i < nv; i++) {
        use("softmax_xent", vs[i]);
        float *l = randn(N, 1), *d = randn(n, 1);
        double tot = fg_softmax_xent(d, l, logits, tgt, N, V, Vp, 0.125f);
        FG_CHECK(fabs(tot - tot_ref) <= 1e-5 * fmax(1.0, fabs(tot_ref)), "xent[%s] total %.9g vs %.9g", vs[i], tot,
                 tot_ref);
        /* the loss is lse - x[t]: a float lse over V terms is good to ~1e-6 relative */
        check("xent", vs[i], "losses", l, l_ref, N, 1e-5);
        check("xent", vs[i], "dlogits", d, d_ref, n, 1e-5);
        float *alias = copy(logits, n); /* dlogits == logits, as the model uses it */
        fg_softmax_xent(alias, l, alias, tgt, N, V, Vp, 0.125f);
        check("xent", vs[i], "dlogits_inplace", alias, d_ref, n, 1e-5);
        fg_softmax_xent(NULL, l, logits, tgt, N, V, Vp, 0.125f);
        check("xent", vs[i], "losses_nograd", l, l_ref, N, 1e-5);
        fg_free(l), fg_free(d), fg_free(alias);
    }
    for (int i = 0; i < N; i++)
        if (tgt[i] < 0)
            FG_CHECK(l_ref[i] == 0.0f && d_ref[(size_t)i * Vp] == 0.0f, "ignored row %d not zero", i);
    for (int i = 0; i < N; i++)
        for (int j = V; j < Vp; j++)
            FG_CHECK(d_ref[(size_t)i * Vp + j] == 0.0f, "padding column %d of row %d not zero", j, i);
    fg_free(logits), fg_free(l_ref), fg_free(d_ref), fg_free(tgt);
}

static void test_elementwise(void)
{
    size_t n = 4096 + 77;
    float *a = randn(n, 1), *b = randn(n, 1), *want = randn(n, 1), *got = randn(n, 1);
    const char *vs[8];
    int nv = variants("add", vs);
    fg_add_ref(want, a, b, n);
    for (int i = 0; i < nv; i++) {
        use("add", vs[i]);
        fg_add(got, a, b, n);
        check("add", vs[i], "out", got, want, n, 0);
    }
    nv = variants("axpy", vs);
    float *y0 = randn(n, 1);
    memcpy(want, y0, n * 4);
    fg_axpy_ref(want, -0.3f, a, n);
    for (int i = 0; i < nv; i++) {
        use("axpy", vs[i]);
        memcpy(got, y0, n * 4);
        fg_axpy(got, -0.3f, a, n);
        check("axpy", vs[i], "y", got, want, n, 1e-7); /* FMA vs mul+add: 1 rounding */
    }
    nv = variants("scale", vs);
    memcpy(want, y0, n * 4);
    fg_scale_ref(want, 0.7f, n);
    for (int i = 0; i < nv; i++) {
        use("scale", vs[i]);
        memcpy(got, y0, n * 4);
        fg_scale(got, 0.7f, n);
        check("scale", vs[i], "x", got, want, n, 0);
    }
    nv = variants("sumsq", vs);
    double s_ref = fg_sumsq_ref(a, n);
    for (int i = 0; i < nv; i++) {
        use("sumsq", vs[i]);
        double s = fg_sumsq(a, n);
        FG_CHECK(fabs(s - s_ref) <= 1e-6 * s_ref, "sumsq[%s] %.12g vs %.12g", vs[i], s, s_ref);
        FG_CHECK(fg_sumsq(a, 0) == 0.0, "sumsq[%s] of nothing", vs[i]);
    }
    nv = variants("adamw_update", vs);
    float *p0 = randn(n, 1), *m0 = randn(n, 0.1f), *v0 = randn(n, 0.1f), *g = randn(n, 1);
    for (size_t i = 0; i < n; i++)
        v0[i] = v0[i] * v0[i];
    float *p_ref = copy(p0, n), *m_ref = copy(m0, n), *v_ref = copy(v0, n);
    fg_adamw_update_ref(p_ref, g, m_ref, v_ref, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7);
    for (int i = 0; i < nv; i++) {
        use("adamw_update", vs[i]);
        float *p = copy(p0, n), *m = copy(m0, n), *v = copy(v0, n);
        fg_adamw_update(p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7);
        check("adamw", vs[i], "p", p, p_ref, n, 1e-6);
        check("adamw", vs[i], "m", m, m_ref, n, 1e-6);
        check("adamw", vs[i], "v", v, v_ref, n, 1e-6);
        fg_free(p), fg_free(m), fg_free(v);
    }
    fg_free(a), fg_free(b), fg_free(want), fg_free(got), fg_free(y0), fg_free(p0), fg_free(m0), fg_free(v0);
    fg_free(g), fg_free(p_ref), fg_free(m_ref), fg_free(v_ref);
}

/* Auto-dispatched attention and matmul are deterministic: two runs give identical
 * bits, and attention gives identical bits on 1 thread and on all threads (every
 * query block and head is computed by exactly one thread in a fixed order), which
 * multi-rank and resume-from-checkpoint comparisons rely on. */
static void test_determinism(void)
{
    int B = 2, T = 45, NH = 2, HS = 64, C = NH * HS;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = randn(nq, 1), *dout = randn(no, 1);
    float *o[3], *l[3], *d[3];
    int threads = fg_threads_get();
    for (int r = 0; r < 3; r++) {
        fg_threads_set(r == 2 ? 1 : threads);
        o[r] = randn(no, 1), l[r] = randn(nl, 1), d[r] = fg_calloc(nq, sizeof(float));
        fg_attention_forward(o[r], l[r], qkv, B, T, C, NH);
        fg_attention_backward(d[r], dout, qkv, o[r], l[r], B, T, C, NH);
    }
    fg_threads_set(threads);
    for (int r = 1; r < 3; r++) {
        FG_CHECK(!memcmp(o[0], o[r], no * 4) && !memcmp(l[0], l[r], nl * 4), "attention forward run %d differs", r);
        FG_CHECK(!memcmp(d[0], d[r], nq * 4), "attention backward run %d differs", r);
    }
    for (int r = 0; r < 3; r++)
        fg_free(o[r]), fg_free(l[r]), fg_free(d[r]);
    int N = 96, Cm = 200, OC = 300;
    float *x = randn((size_t)N * Cm, 1), *w = randn((size_t)OC * Cm, 1), *y0 = randn((size_t)N * OC, 1),
          *y1 = randn((size_t)N * OC, 1);
    fg_matmul_forward(y0, x, w, NULL, N, Cm, OC);
    fg_matmul_forward(y1, x, w, NULL, N, Cm, OC);
    FG_CHECK(!memcmp(y0, y1, (size_t)N * OC * 4), "matmul forward not deterministic");
    fg_free(qkv), fg_free(dout), fg_free(x), fg_free(w), fg_free(y0), fg_free(y1);
}

/* The memory-bound ops thread only from FG_PAR_MIN_ELEMS (2^19) elements on (issue 17):
 * the small shapes above all run on one thread, so this runs each op at 1024 x 768
 * (786k elements; the embedding too) on 2 threads and on 1, bitwise equal (the split changes who computes a
 * row, never a sum). Two threads are forced: the threaded branch runs on any machine. */
static void test_threaded_passes(void)
{
    enum { N = 1024, C = 768, R = 2 };
    size_t n = (size_t)N * C;
    float *x = randn(n, 1), *g = randn(n, 1), *w = randn(C, 1), *b = randn(C, 1), *x2 = randn(2 * n, 1);
    float *out[R], *st[R], *st2[R], *dx[R], *dw[R], *db[R], *big[R];
    uint16_t *xb = fg_malloc(n * sizeof(uint16_t)), *hb[R];
    fg_cvt_f32_bf16(xb, x, n);
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)fg_rng_below(&rng, 50);
    int threads = fg_threads_get();
    for (int r = 0; r < R; r++) {
        fg_threads_set(r == 0 ? 2 : 1);
        out[r] = fg_calloc(11 * n, sizeof(float)), st[r] = fg_calloc(N, sizeof(float));
        st2[r] = fg_calloc(N, sizeof(float)), dx[r] = fg_calloc(2 * n, sizeof(float));
        dw[r] = fg_calloc(2 * C, sizeof(float)), db[r] = fg_calloc(C, sizeof(float));
        big[r] = copy(x2, 2 * n), hb[r] = fg_calloc(2 * n, sizeof(uint16_t));
        float *o = out[r];
        fg_rmsnorm_forward(o, st[r], x, w, N, C, 1e-5f);
        fg_rmsnorm_backward(dx[r], dw[r], g, x, w, st[r], N, C);
        fg_layernorm_forward(o + n, st2[r], st[r], x, w, b, N, C, 1e-5f);
        fg_layernorm_backward(dx[r] + n, dw[r] + C, db[r], g, x, w, st2[r], st[r], N, C);
        fg_gelu_forward(o + 2 * n, x, n);
        fg_gelu_backward(o + 3 * n, g, x, n);
        fg_swiglu_forward(o + 4 * n, x2, N, C);
        fg_swiglu_backward(big[r], g, x2, N, C);
        fg_add(o + 5 * n, x, g, n);
        memcpy(o + 6 * n, x, n * sizeof(float));
        fg_rope_forward(o + 6 * n, 4, 256, 12, 64, 768, 0, 10000.0f);
        fg_cvt_bf16_f32(o + 7 * n, xb, n);
        fg_bf16_affine(hb[r], o + 8 * n, xb, w, b, N, C);
        fg_cvt_f32_bf16(hb[r] + n, g, n);
        /* embedding: 50 tokens, 256 positions (wte, wpe: x's first rows); dwte, dwpe at 10n */
        fg_embedding_forward(o + 9 * n, tok, x, x + 50 * C, N, 256, C);
        fg_embedding_backward(o + 10 * n, o + 10 * n + 50 * C, g, tok, N, 256, C);
    }
    fg_threads_set(threads);
    FG_CHECK(!memcmp(out[0], out[1], 11 * n * sizeof(float)), "threaded pass outputs differ from 1 thread's");
    FG_CHECK(!memcmp(st[0], st[1], N * sizeof(float)) && !memcmp(st2[0], st2[1], N * sizeof(float)),
             "threaded norm statistics differ from 1 thread's");
    FG_CHECK(!memcmp(dx[0], dx[1], 2 * n * sizeof(float)) && !memcmp(dw[0], dw[1], 2 * C * sizeof(float)) &&
                 !memcmp(db[0], db[1], C * sizeof(float)),
             "threaded norm backward differs from 1 thread's");
    FG_CHECK(!memcmp(big[0], big[1], 2 * n * sizeof(float)), "threaded swiglu backward differs from 1 thread's");
    FG_CHECK(!memcmp(hb[0], hb[1], 2 * n * sizeof(uint16_t)), "threaded bf16 passes differ from 1 thread's");
    for (int r = 0; r < R; r++)
        fg_free(out[r]), fg_free(st[r]), fg_free(st2[r]), fg_free(dx[r]), fg_free(dw[r]), fg_free(db[r]),
            fg_free(big[r]), fg_free(hb[r]);
    fg_free(x), fg_free(g), fg_free(w), fg_free(b), fg_free(x2), fg_free(xb);
}

static void test_dispatch(void)
{
    FG_CHECK(fg_kernels_init("nope") == FG_ERR_INVALID, "unknown mode accepted");
    FG_CHECK(fg_kernels_init("ref") == FG_OK, "init ref: %s", fg_last_error());
    FG_CHECK(!strcmp(fg_kernels_variant("matmul"), "ref"), "ref mode picked %s", fg_kernels_variant("matmul"));
    FG_CHECK(!strcmp(fg_kernels_variant("attention_backward"), "ref"), "ref mode");
    FG_CHECK(!strcmp(fg_kernels_variant("no_such_op"), "?"), "unknown op");
    FG_CHECK(fg_kernels_set("matmul_forward", "nope") == FG_ERR_INVALID, "unknown variant accepted");
    FG_CHECK(fg_kernels_init("blas") == FG_OK, "init blas: %s", fg_last_error());
    FG_CHECK(!strcmp(fg_kernels_variant("matmul"), "blas"), "blas mode picked %s", fg_kernels_variant("matmul"));
    FG_CHECK(!strcmp(fg_kernels_variant("attention"), "ref"), "blas mode, attention %s",
             fg_kernels_variant("attention"));
    const fg_cpu *cpu = fg_hw_cpu();
    bool has512 = cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->os_avx512;
    FG_CHECK((fg_kernels_init("avx512") == FG_OK) == has512, "avx512 mode vs cpu (%d)", has512);
    FG_CHECK(fg_kernels_init("auto") == FG_OK, "init auto");
    if (!has512) {
        /* FG_HW_DISABLE=avx512 (a ctest) or an older CPU: nothing may pick avx512 */
        const char *ops[] = {"attention_forward", "gelu_forward", "softmax_xent", "adamw_update", "rmsnorm_forward"};
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            FG_CHECK(strcmp(fg_kernels_variant(ops[i]), "avx512"), "%s picked avx512 without it", ops[i]);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init from env");
    const char *env = getenv("FG_KERNELS");
    if (env && !strcmp(env, "ref"))
        FG_CHECK(!strcmp(fg_kernels_variant("matmul"), "ref"), "FG_KERNELS=ref not honoured");
    printf("kernels: FG_KERNELS=%s FG_HW_DISABLE=%s, matmul=%s attention=%s\n", env ? env : "(unset)",
           fg_env("FG_HW_DISABLE", "(unset)"), fg_kernels_variant("matmul"), fg_kernels_variant("attention"));
}

/* Saves an environment variable for restore_env (value or "unset"). */
static void save_env(const char *name, char *buf, size_t cap)
{
    const char *v = getenv(name);
    snprintf(buf, cap, "%s", v ? v : "");
}

static void restore_env(const char *name, const char *saved)
{
    if (saved[0])
        setenv(name, saved, 1);
    else
        unsetenv(name);
}

/* Expects configure to fail with `st` and a message containing `needle`. */
static void expect_refused(const char *mode, const char *threading, fg_status st, const char *needle)
{
    fg_status got = fg_kernels_configure(mode, threading, 0);
    FG_CHECK(got == st && strstr(fg_last_error(), needle), "configure(%s, %s): status %d, message '%s' (want '%s')",
             mode ? mode : "NULL", threading ? threading : "NULL", (int)got, fg_last_error(), needle);
}

/* Every kernel knob goes through fg_kernels_configure: bad values are refused naming the
 * knob (argument or environment variable), a refused call changes nothing, the
 * argument beats the environment, the thread count is applied, overrides are reported
 * in fg_kernels_settings, and FG_HW_DISABLE is re-read at each configure. */
static void test_knobs(void)
{
    char kern[64], thr[64], hwd[64];
    save_env("FG_KERNELS", kern, sizeof kern);
    save_env("FG_BLAS_THREADING", thr, sizeof thr);
    save_env("FG_HW_DISABLE", hwd, sizeof hwd);
    unsetenv("FG_KERNELS");
    unsetenv("FG_BLAS_THREADING");
    unsetenv("FG_HW_DISABLE");
    int threads = fg_threads_get();

    FG_CHECK(fg_kernels_configure("ref", "omp", 0) == FG_OK, "configure ref: %s", fg_last_error());
    expect_refused("bogus", NULL, FG_ERR_INVALID, "kernels mode 'bogus'");
    expect_refused(NULL, "x", FG_ERR_INVALID, "blas_threading 'x': expected omp or blas");
    setenv("FG_KERNELS", "bogus", 1);
    expect_refused(NULL, NULL, FG_ERR_INVALID, "FG_KERNELS='bogus'");
    unsetenv("FG_KERNELS");
    setenv("FG_BLAS_THREADING", "x", 1);
    expect_refused(NULL, NULL, FG_ERR_INVALID, "FG_BLAS_THREADING='x' (environment): expected omp or blas");
    unsetenv("FG_BLAS_THREADING");
    setenv("FG_HW_DISABLE", "avx512,avx3", 1);
    expect_refused(NULL, NULL, FG_ERR_INVALID, "FG_HW_DISABLE='avx512,avx3': unknown feature 'avx3'");
    unsetenv("FG_HW_DISABLE");
    FG_CHECK(!strcmp(fg_kernels_variant("matmul"), "ref"), "a refused configure changed the table (matmul %s)",
             fg_kernels_variant("matmul"));

    /* the argument wins over the environment; the environment over the default */
    setenv("FG_BLAS_THREADING", "blas", 1);
    FG_CHECK(fg_kernels_configure(NULL, NULL, 0) == FG_OK, "env blas: %s", fg_last_error());
    fg_kernels_settings s = fg_kernels_settings_get();
    FG_CHECK(!strcmp(s.blas_threading, "blas") && !strcmp(s.blas_threading_source, "FG_BLAS_THREADING") &&
                 !strcmp(fg_kernels_blas_threading(), "blas"),
             "env override: %s from %s", s.blas_threading, s.blas_threading_source);
    FG_CHECK(!strcmp(s.mode, "auto") && !strcmp(s.mode_source, "default"), "default mode: %s from %s", s.mode,
             s.mode_source);
    FG_CHECK(fg_kernels_configure("blas", "omp", 0) == FG_OK, "arg omp: %s", fg_last_error());
    s = fg_kernels_settings_get();
    FG_CHECK(!strcmp(s.blas_threading, "omp") && !strcmp(s.blas_threading_source, "argument") &&
                 !strcmp(s.mode, "blas") && !strcmp(s.mode_source, "argument"),
             "argument over env: %s from %s, mode %s from %s", s.blas_threading, s.blas_threading_source, s.mode,
             s.mode_source);
    unsetenv("FG_BLAS_THREADING");

    /* threads are set by configure, before the table (and the BLAS) */
    FG_CHECK(fg_kernels_configure("blas", "blas", 1) == FG_OK, "threads 1: %s", fg_last_error());
    FG_CHECK(fg_threads_get() == 1 && fg_kernels_settings_get().threads == 1, "threads %d / %d after configure(1)",
             fg_threads_get(), fg_kernels_settings_get().threads);
    FG_CHECK(fg_kernels_configure(NULL, NULL, threads) == FG_OK && fg_threads_get() == threads, "threads back to %d",
             threads);

    /* FG_HW_DISABLE applies at configure: avx2 masked leaves no ISA level above blas */
    setenv("FG_HW_DISABLE", "avx512, avx2", 1);
    FG_CHECK(fg_kernels_configure("auto", NULL, 0) == FG_OK, "masked auto: %s", fg_last_error());
    FG_CHECK(!strcmp(fg_kernels_variant("attention"), "ref") &&
                 !strcmp(fg_kernels_settings_get().hw_disable, "avx512, avx2"),
             "FG_HW_DISABLE=avx512,avx2: attention %s, reported '%s'", fg_kernels_variant("attention"),
             fg_kernels_settings_get().hw_disable);
    expect_refused("avx2", NULL, FG_ERR_UNSUPPORTED, "needs avx2");

    restore_env("FG_KERNELS", kern);
    restore_env("FG_BLAS_THREADING", thr);
    restore_env("FG_HW_DISABLE", hwd);
    FG_CHECK(fg_kernels_configure(NULL, NULL, 0) == FG_OK, "configure from the test environment: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("kernels");
    fg_rng_seed(&rng, 20261128);
    test_knobs();
    test_dispatch();
    test_sgemm();
    test_sgemm_threading();
    test_matmul(37, 65, 47);
    test_matmul(64, 384, 1152);
    test_embedding();
    test_norms(13, 77);
    test_norms(4, 768);
    test_rope(2, 9, 3, 16, 3 * 3 * 16, 0);
    test_rope(1, 33, 2, 64, 128, 250);
    test_attention(1, 1, 2, 64);
    test_attention(2, 17, 3, 16);
    test_attention(1, 67, 2, 64);
    test_attention(1, 130, 1, 64);
    test_attention(2, 31, 2, 24);
    test_attention(1, 37, 2, 128); /* wider heads: two 64-wide column chunks */
    test_attention(1, 40, 2, 48);  /* 48 = 3 x 16: the 16-wide column tail */
    test_attention(1, 70, 1, 256); /* the largest head the fast variants take */
    test_activations();
    test_xent(7, 53, 64, 3);
    test_xent(3, 50257, 50304, 5);
    test_xent(4, 40, 40, 2); /* no padding columns */
    test_elementwise();
    fg_kernels_init(NULL);
    test_determinism();
    test_threaded_passes();
    return fg_test_end();
}
