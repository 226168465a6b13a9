/* bench_kernels.c: kernel throughput, printed as GFLOP/s (or GB/s) and as ratios
 * measured in the same run: each fast variant against the scalar reference, and the
 * linked BLAS (OpenBLAS, pthreads build by default) against the other Debian BLAS builds loaded with
 * dlopen (OpenBLAS OpenMP, BLIS OpenMP) when they are installed.
 *
 *   build-kernels/bench_kernels [--quick] [--cputime] [--only attention|elem|blas|split]
 * Threads: OMP_NUM_THREADS (default all cores). Medians of repeated runs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"

static int quick;
static int cputime; /* --cputime: time with the process CPU clock (use with OMP_NUM_THREADS=1 on a busy box) */

typedef void (*bench_fn)(void *ctx);

/* Median seconds per call of fn(ctx): warm-up, then up to 25 timed calls within ~budget s. */
static double time_it(bench_fn fn, void *ctx, double budget)
{
    return bench_median_time(fn, ctx, quick ? budget * 0.25 : budget, 25, cputime);
}

static float *randn(size_t n, float s, fg_rng *r)
{
    float *x = fg_malloc(n * sizeof(float) + 64);
    FG_ASSERT(x);
    for (size_t i = 0; i < n; i++)
        x[i] = s * fg_rng_normal(r);
    return x;
}

/* ---- GEMM libraries ---- */
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
typedef struct gemm_lib {
    const char *name;
    cblas_sgemm_fn sgemm;  /* NULL: the linked one through fg_sgemm */
    const char *threading; /* for the linked one: FG_BLAS_THREADING */
} gemm_lib;

/* Re-initialises the kernels with FG_BLAS_THREADING set for this library. */
static void select_lib(const gemm_lib *lib)
{
    if (lib->sgemm)
        return;
    setenv("FG_BLAS_THREADING", lib->threading, 1);
    FG_ASSERT(fg_kernels_init(NULL) == FG_OK);
}

typedef struct gemm_ctx {
    const gemm_lib *lib;
    int ta, tb, M, N, K;
    const float *A, *B;
    float *C;
} gemm_ctx;

static void run_gemm(void *p)
{
    gemm_ctx *g = p;
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    if (g->lib->sgemm) /* CblasRowMajor=101, NoTrans=111, Trans=112 */
        g->lib->sgemm(101, g->ta ? 112 : 111, g->tb ? 112 : 111, g->M, g->N, g->K, 1.0f, g->A, lda, g->B, ldb, 0.0f,
                      g->C, g->N);
    else
        fg_sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, lda, g->B, ldb, 0.0f, g->C, g->N);
}

static int load_lib(gemm_lib *lib, const char *name, const char *path, const char *threads_sym, int nthreads)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
        printf("  (%s not available: %s)\n", name, dlerror());
        return 0;
    }
    lib->name = name;
    lib->sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    void (*set_threads)(int) = (void (*)(int))dlsym(h, threads_sym);
    if (set_threads)
        set_threads(nthreads);
    return lib->sgemm != NULL;
}

/* Transformer GEMM shapes: forward out[N,OC] = inp[N,C] @ W^T (NT), backward
 * dinp = dout @ W (NN) and dweight = dout^T @ inp (TN). */
typedef struct shape {
    const char *what;
    int N, C, OC;
} shape;
static const shape shapes[] = {
    {"124M qkv  N=256", 256, 768, 2304},  {"124M fc   N=256", 256, 768, 3072},  {"124M proj N=256", 256, 3072, 768},
    {"124M head N=256", 256, 768, 50304}, {"L6 qkv  N=1024", 1024, 384, 1152},  {"L6 fc   N=1024", 1024, 384, 1536},
    {"L6 proj N=1024", 1024, 1536, 384},  {"L6 head N=1024", 1024, 384, 50304},
};

static void bench_blas(int nthreads)
{
    printf("\n== sgemm: GFLOP/s per library (fwd NT / bwd-dinp NN / bwd-dweight TN) ==\n");
    gemm_lib libs[5];
    int nlib = 0;
    libs[nlib++] = (gemm_lib){"openblas (linked)", NULL, "blas"};
    libs[nlib++] = (gemm_lib){"linked, split over OpenMP", NULL, "omp"};
    if (load_lib(&libs[nlib], "openblas-openmp", "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
                 "openblas_set_num_threads", nthreads))
        nlib++;
    if (load_lib(&libs[nlib], "blis-openmp", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4",
                 "bli_thread_set_num_threads", nthreads))
        nlib++;
    printf("  BLIS_ARCH_TYPE=%s\n", fg_env("BLIS_ARCH_TYPE", "(unset)"));
    fg_rng r;
    fg_rng_seed(&r, 1);
    double tot[5] = {0}, flops_all = 0;
    int nsh = quick ? 4 : (int)(sizeof shapes / sizeof shapes[0]);
    printf("  %-18s", "shape");
    for (int l = 0; l < nlib; l++)
        printf(" | %-26s", libs[l].name);
    printf("\n");
    for (int s = 0; s < nsh; s++) {
        const shape *sh = &shapes[s];
        float *X = randn((size_t)sh->N * sh->C, 1, &r), *W = randn((size_t)sh->OC * sh->C, 0.02f, &r);
        float *Y = randn((size_t)sh->N * sh->OC, 1, &r), *G = fg_malloc((size_t)sh->OC * sh->C * 4 + 64);
        float *D = fg_malloc((size_t)sh->N * sh->C * 4 + 64);
        double fl = 2.0 * sh->N * sh->C * sh->OC;
        printf("  %-18s", sh->what);
        for (int l = 0; l < nlib; l++) {
            select_lib(&libs[l]);
            gemm_ctx f = {&libs[l], 0, 1, sh->N, sh->OC, sh->C, X, W, Y};
            gemm_ctx bi = {&libs[l], 0, 0, sh->N, sh->C, sh->OC, Y, W, D};
            gemm_ctx bw = {&libs[l], 1, 0, sh->OC, sh->C, sh->N, Y, X, G};
            double tf = time_it(run_gemm, &f, 0.5), ti = time_it(run_gemm, &bi, 0.5), tw = time_it(run_gemm, &bw, 0.5);
            printf(" | %7.1f %7.1f %7.1f    ", fl / tf * 1e-9, fl / ti * 1e-9, fl / tw * 1e-9);
            tot[l] += tf + ti + tw;
        }
        flops_all += 3 * fl;
        printf("\n");
        fg_free(X), fg_free(W), fg_free(Y), fg_free(G), fg_free(D);
    }
    printf("  %-18s", "all shapes");
    for (int l = 0; l < nlib; l++)
        printf(" | %7.1f GF/s (x%.2f)       ", flops_all / tot[l] * 1e-9, tot[0] / tot[l]);
    printf("\n  (xN = speed relative to the linked OpenBLAS)\n");
    unsetenv("FG_BLAS_THREADING");
    fg_kernels_init(NULL);
}

/* ---- intrinsic cost of the FG_BLAS_THREADING=omp split: one single-threaded BLAS
 * call against the two half calls the split would make, both on one thread, timed
 * with --cputime for a stable figure on a busy machine ---- */
typedef struct split_ctx {
    int halves;
    const shape *sh;
    const float *X, *W;
    float *Y;
} split_ctx;
static void run_split(void *p)
{
    split_ctx *c = p;
    int M = c->sh->N, N = c->sh->OC, K = c->sh->C;
    if (!c->halves) {
        fg_sgemm(0, 1, M, N, K, 1.0f, c->X, K, c->W, K, 0.0f, c->Y, N);
        return;
    }
    if (M >= N) {
        int h = (M / 2 + 15) / 16 * 16;
        fg_sgemm(0, 1, h, N, K, 1.0f, c->X, K, c->W, K, 0.0f, c->Y, N);
        fg_sgemm(0, 1, M - h, N, K, 1.0f, c->X + (size_t)h * K, K, c->W, K, 0.0f, c->Y + (size_t)h * N, N);
    } else {
        int h = (N / 2 + 15) / 16 * 16;
        fg_sgemm(0, 1, M, h, K, 1.0f, c->X, K, c->W, K, 0.0f, c->Y, N);
        fg_sgemm(0, 1, M, N - h, K, 1.0f, c->X, K, c->W + (size_t)h * K, K, 0.0f, c->Y + h, N);
    }
}

static void bench_split(void)
{
    printf("\n== cost of the GEMM split (1 thread: one call vs the two halves the omp split makes) ==\n");
    int saved = fg_threads_get();
    fg_threads_set(1);
    fg_kernels_init(NULL);
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        float *X = randn((size_t)sh->N * sh->C, 1, &r), *W = randn((size_t)sh->OC * sh->C, 0.02f, &r);
        float *Y = fg_malloc((size_t)sh->N * sh->OC * 4 + 64);
        split_ctx one = {0, sh, X, W, Y}, two = {1, sh, X, W, Y};
        double t1 = time_it(run_split, &one, 0.3), t2 = time_it(run_split, &two, 0.3);
        printf("  %-18s one call %.2f ms, two halves %.2f ms (x%.3f)\n", sh->what, t1 * 1e3, t2 * 1e3, t1 / t2);
        fg_free(X), fg_free(W), fg_free(Y);
    }
    fg_threads_set(saved);
    fg_kernels_init(NULL);
}

/* ---- GEMM interleaved with OpenMP elementwise work, as in a training step ---- */
typedef struct mix_ctx {
    gemm_ctx g;
    float *buf;
    size_t n;
} mix_ctx;
static void run_mix(void *p)
{
    mix_ctx *m = p;
    for (int rep = 0; rep < 4; rep++) {
        run_gemm(&m->g);
        fg_gelu_forward(m->buf, m->buf, m->n); /* an OpenMP kernel between GEMMs */
    }
}

static void bench_interplay(int nthreads)
{
    printf("\n== sgemm + OpenMP kernels interleaved (4 x [124M fc fwd GEMM + gelu over 256x3072]) ==\n");
    gemm_lib libs[4];
    int nlib = 0;
    libs[nlib++] = (gemm_lib){"openblas (linked)", NULL, "blas"};
    libs[nlib++] = (gemm_lib){"linked, split over OpenMP", NULL, "omp"};
    if (load_lib(&libs[nlib], "openblas-openmp", "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
                 "openblas_set_num_threads", nthreads))
        nlib++;
    if (load_lib(&libs[nlib], "blis-openmp", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4",
                 "bli_thread_set_num_threads", nthreads))
        nlib++;
    fg_rng r;
    fg_rng_seed(&r, 2);
    int N = 256, C = 768, OC = 3072;
    float *X = randn((size_t)N * C, 1, &r), *W = randn((size_t)OC * C, 0.02f, &r), *Y = randn((size_t)N * OC, 1, &r);
    double base = 0;
    for (int l = 0; l < nlib; l++) {
        select_lib(&libs[l]);
        mix_ctx m = {{&libs[l], 0, 1, N, OC, C, X, W, Y}, Y, (size_t)N * OC};
        double t = time_it(run_mix, &m, 1.0);
        gemm_ctx g = m.g;
        double tg = time_it(run_gemm, &g, 0.5);
        if (l == 0)
            base = t;
        printf("  %-26s mixed %.2f ms (x%.2f)   GEMM alone %.2f ms -> GEMM share of mixed %.0f%%\n", libs[l].name,
               t * 1e3, base / t, tg * 1e3, 100.0 * 4 * tg / t);
    }
    unsetenv("FG_BLAS_THREADING");
    fg_kernels_init(NULL);
    fg_free(X), fg_free(W), fg_free(Y);
}

/* ---- attention ---- */
typedef struct att_ctx {
    int B, T, C, NH;
    float *qkv, *out, *lse, *dout, *dqkv;
    int backward;
} att_ctx;
static void run_att(void *p)
{
    att_ctx *a = p;
    if (a->backward)
        fg_attention_backward(a->dqkv, a->dout, a->qkv, a->out, a->lse, a->B, a->T, a->C, a->NH);
    else
        fg_attention_forward(a->out, a->lse, a->qkv, a->B, a->T, a->C, a->NH);
}

static void bench_attention(void)
{
    printf("\n== attention (causal, HS=64): GFLOP/s counting 4*T*T/2*HS fwd, 10*T*T/2*HS bwd per head ==\n");
    const char *vs[8];
    int nv = fg_kernels_variants("attention_forward", vs, 8);
    struct {
        int B, T, NH;
    } cfg[] = {{4, 64, 12}, {4, 256, 6}, {1, 1024, 6}};
    fg_rng r;
    fg_rng_seed(&r, 3);
    for (int c = 0; c < (quick ? 2 : 3); c++) {
        int B = cfg[c].B, T = cfg[c].T, NH = cfg[c].NH, C = NH * 64;
        size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
        att_ctx a = {B,
                     T,
                     C,
                     NH,
                     randn(nq, 1, &r),
                     randn(no, 1, &r),
                     randn((size_t)B * NH * T, 1, &r),
                     randn(no, 1, &r),
                     randn(nq, 1, &r),
                     0};
        double fl = (double)B * NH * T * T / 2 * 64;
        double ref_f = 0, ref_b = 0;
        for (int i = 0; i < nv; i++) {
            fg_kernels_set("attention_forward", vs[i]);
            fg_kernels_set("attention_backward", vs[i]);
            a.backward = 0;
            double tf = time_it(run_att, &a, 0.5);
            a.backward = 1;
            double tb = time_it(run_att, &a, 0.5);
            if (i == 0)
                ref_f = tf, ref_b = tb;
            printf("  B=%d T=%-4d NH=%-2d %-7s fwd %7.3f ms %6.1f GF/s (x%5.1f vs ref)   bwd %7.3f ms %6.1f GF/s "
                   "(x%5.1f)\n",
                   B, T, NH, vs[i], tf * 1e3, 4 * fl / tf * 1e-9, ref_f / tf, tb * 1e3, 10 * fl / tb * 1e-9,
                   ref_b / tb);
        }
        fg_free(a.qkv), fg_free(a.out), fg_free(a.lse), fg_free(a.dout), fg_free(a.dqkv);
    }
    fg_kernels_init(NULL);
}

/* ---- memory-bound kernels ---- */
typedef struct elem_ctx {
    const char *op;
    int N, C;
    float *a, *b, *c, *d, *e;
    int32_t *tok;
} elem_ctx;
static void run_elem(void *p)
{
    elem_ctx *x = p;
    size_t n = (size_t)x->N * x->C;
    const char *op = x->op;
    if (!strcmp(op, "softmax_xent"))
        fg_softmax_xent(x->b, x->c, x->a, x->tok, x->N, x->C - 47, x->C, 1.0f / x->N);
    else if (!strcmp(op, "rmsnorm_forward"))
        fg_rmsnorm_forward(x->b, x->c, x->a, x->d, x->N, x->C, 1e-5f);
    else if (!strcmp(op, "rmsnorm_backward"))
        fg_rmsnorm_backward(x->b, x->e, x->d, x->a, x->d, x->c, x->N, x->C);
    else if (!strcmp(op, "layernorm_forward"))
        fg_layernorm_forward(x->b, x->c, x->e, x->a, x->d, x->d, x->N, x->C, 1e-5f);
    else if (!strcmp(op, "layernorm_backward"))
        fg_layernorm_backward(x->b, x->e, x->e + x->C, x->d, x->a, x->d, x->c, x->e, x->N, x->C);
    else if (!strcmp(op, "gelu_forward"))
        fg_gelu_forward(x->b, x->a, n);
    else if (!strcmp(op, "gelu_backward"))
        fg_gelu_backward(x->b, x->d, x->a, n);
    else if (!strcmp(op, "swiglu_forward"))
        fg_swiglu_forward(x->b, x->a, x->N, x->C / 2);
    else if (!strcmp(op, "swiglu_backward"))
        fg_swiglu_backward(x->b, x->d, x->a, x->N, x->C / 2);
    else if (!strcmp(op, "adamw_update"))
        fg_adamw_update(x->a, x->d, x->b, x->e, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
    else if (!strcmp(op, "rope_forward"))
        fg_rope_forward(x->b, 4, x->N / 4, x->C / 64, 64, x->C, 0, 10000.0f);
    else if (!strcmp(op, "embedding_forward"))
        fg_embedding_forward(x->b, x->tok + 1024, x->a, x->d, x->N, 64, x->C);
    else if (!strcmp(op, "embedding_backward"))
        fg_embedding_backward(x->e, x->d, x->b, x->tok + 1024, x->N, 64, x->C);
    else if (!strcmp(op, "add"))
        fg_add(x->b, x->a, x->d, n);
    else if (!strcmp(op, "sumsq"))
        (void)fg_sumsq(x->a, n);
}

static void bench_elem(void)
{
    printf("\n== memory-bound kernels: ms per call, each variant vs ref ==\n");
    struct {
        const char *op;
        int N, C;
    } ops[] = {{"softmax_xent", 256, 50304},
               {"rmsnorm_forward", 1024, 768},
               {"rmsnorm_backward", 1024, 768},
               {"layernorm_forward", 1024, 768},
               {"layernorm_backward", 1024, 768},
               {"gelu_forward", 256, 3072},
               {"gelu_backward", 256, 3072},
               {"swiglu_forward", 256, 4096},
               {"swiglu_backward", 256, 4096},
               {"rope_forward", 1024, 768},
               {"embedding_forward", 256, 768},
               {"embedding_backward", 256, 768},
               {"add", 1024, 768},
               {"sumsq", 1024, 4096},
               {"adamw_update", 1024, 4096}};
    fg_rng r;
    fg_rng_seed(&r, 4);
    size_t maxn = (size_t)256 * 50304;
    elem_ctx x = {0};
    x.a = randn(maxn, 1, &r), x.b = randn(maxn, 1, &r), x.c = randn(maxn, 1, &r), x.d = randn(maxn, 1, &r);
    x.e = randn(maxn, 0.1f, &r);
    for (size_t i = 0; i < maxn; i++)
        x.e[i] *= x.e[i];
    x.tok = fg_malloc(2048 * sizeof(int32_t)); /* [0,1024): targets < V; [1024,2048): rows of a 8192 x C table */
    for (int i = 0; i < 1024; i++)
        x.tok[i] = (int32_t)fg_rng_below(&r, 50257);
    for (int i = 1024; i < 2048; i++)
        x.tok[i] = (int32_t)fg_rng_below(&r, 8192);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        const char *vs[8];
        int nv = fg_kernels_variants(ops[o].op, vs, 8);
        x.op = ops[o].op, x.N = ops[o].N, x.C = ops[o].C;
        char bw[64];
        const char *p = strstr(ops[o].op, "_forward");
        snprintf(bw, sizeof bw, "%.*s_backward", p ? (int)(p - ops[o].op) : 0, ops[o].op);
        double tref = 0;
        printf("  %-20s %5dx%-6d", ops[o].op, x.N, x.C);
        for (int i = 0; i < nv; i++) {
            fg_kernels_set(ops[o].op, vs[i]);
            double t = time_it(run_elem, &x, 0.3);
            if (i == 0)
                tref = t;
            printf("  %s %.3f ms (x%.1f)", vs[i], t * 1e3, tref / t);
        }
        printf("\n");
    }
    fg_kernels_init(NULL);
    fg_free(x.a), fg_free(x.b), fg_free(x.c), fg_free(x.d), fg_free(x.e), fg_free(x.tok);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--cputime"))
            cputime = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
    }
    if (fg_kernels_init(NULL) != FG_OK) {
        fprintf(stderr, "bench_kernels: %s\n", fg_last_error());
        return 1;
    }
    const fg_cpu *cpu = fg_hw_cpu();
    int nthreads = fg_threads_get();
    printf("bench_kernels: %s, %d threads, gcc %d.%d\n", cpu->brand, nthreads, __GNUC__, __GNUC_MINOR__);
    fg_kernels_print(stdout);
    if (!only || !strcmp(only, "blas"))
        bench_blas(nthreads);
    if (!only || !strcmp(only, "blas"))
        bench_interplay(nthreads);
    if (only && !strcmp(only, "split"))
        bench_split();
    if (!only || !strcmp(only, "attention"))
        bench_attention();
    if (!only || !strcmp(only, "elem"))
        bench_elem();
    return 0;
}
