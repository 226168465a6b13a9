/* bench_gemm_bf16.c: GF/s of every bf16 GEMM route against the fp32 sgemm in the same
 * run, at the linear layers of the training configs: the forward (NT) and both backward
 * products (NN dinp, TN dweight) of each, on 1 and 2 threads, printed with the ratio
 * over sgemm. Routes: blas (widen to fp32 + OpenBLAS sgemm), avx512bf16 (vdpbf16ps
 * kernel, when the CPU has it), oneDNN's dnnl_gemm_bf16bf16f32 (dlopen'ed from Debian's
 * libdnnl.so.2 when installed: a comparison row, not a dependency), ref on a small shape.
 *
 *   build/bench_gemm_bf16 [--quick] [--cputime] [--threads 1,2] [--dnnl PATH] [--recipe [--only NAME]]
 * Medians of repeated calls, wall clock (--cputime: the process CPU clock, steadier on
 * a busy machine with --threads 1). Figures are taken on a quiet machine
 * (docs/PERFORMANCE.md). --recipe: instead, the GEMMs of one step of bench/cost.sh's
 * recipe3 row (d_model 128, N = 2048 tokens, MoE 8 x top-1 + shared, d_expert 176, byte
 * vocabulary 257 padded to 320), then the table's training shapes, at 1 thread: the
 * fastest of repeated calls on the thread's CPU clock (load only ever adds time), and
 * the sums, the recipe's weighted by calls per step. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"

static int quick, cputime, recipe;
static const char *only; /* --recipe --only NAME: the rows whose name holds NAME (for perf record) */

typedef struct gemm_args {
    int ta, tb, M, N, K;
    const float *Af, *Bf;
    const uint16_t *Ah, *Bh;
    float *C;
} gemm_args;

/* oneDNN (not in its public header): row-major, like dnnl_sgemm. */
typedef int (*dnnl_bf16_fn)(char transa, char transb, long M, long N, long K, float alpha, const uint16_t *A, long lda,
                            const uint16_t *B, long ldb, float beta, float *C, long ldc);
static dnnl_bf16_fn dnnl_gemm;

enum { R_SGEMM, R_REF, R_BLAS, R_AVX, R_DNNL, N_ROUTES };
static const char *const route_names[N_ROUTES] = {"sgemm fp32", "bf16 ref", "bf16 blas", "bf16 avx512bf16",
                                                  "bf16 oneDNN"};

static void call(int route, const gemm_args *g)
{
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    switch (route) {
    case R_SGEMM: fg_sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->Af, lda, g->Bf, ldb, 0.0f, g->C, g->N); break;
    case R_DNNL:
        dnnl_gemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->M, g->N, g->K, 1.0f, g->Ah, lda, g->Bh, ldb, 0.0f, g->C,
                  g->N);
        break;
    default: fg_bgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->Ah, lda, g->Bh, ldb, 0.0f, g->C, g->N); break;
    }
}

typedef struct route_call {
    int route;
    const gemm_args *g;
} route_call;

static void run_route(void *ctx)
{
    const route_call *r = ctx;
    call(r->route, r->g);
}

/* Median seconds per call: one warm-up, then 3..15 timed calls within ~budget s. */
static double time_route(int route, const gemm_args *g, double budget)
{
    route_call r = {route, g};
    return bench_median_time(run_route, &r, quick ? budget * 0.25 : budget, 15, cputime);
}

static int route_ok(int route)
{
    if (route == R_DNNL)
        return dnnl_gemm != NULL;
    if (route == R_SGEMM)
        return 1;
    const char *v = route == R_REF ? "ref" : route == R_BLAS ? "blas" : "avx512bf16";
    return fg_kernels_set("bgemm", v) == FG_OK;
}

/* Linear layer shapes (tokens x in x out), as bench_kernels and the issue name them. */
typedef struct shape {
    const char *name;
    int tok, in, out;
} shape;
static const shape shapes[] = {
    {"124M proj/fc2", 256, 3072, 768}, {"124M fc", 256, 768, 3072}, {"124M attn proj", 256, 768, 768},
    {"L6 fc", 1024, 384, 1536},        {"L6 fc2", 1024, 1536, 384}, {"124M head", 256, 768, 50304},
};

/* One step of the recipe: each GEMM (M x N x K, op, beta) and how many run per step
 * (4 layers; the routed experts' ~256 rows each, 8 of them per layer). */
typedef struct recipe_gemm {
    const char *name;
    int ta, tb, M, N, K;
    float alpha, beta;
    int calls;
} recipe_gemm;
static const recipe_gemm recipe_gemms[] = {
    {"qkv fwd", 0, 1, 2048, 384, 128, 1, 0, 4},          {"qkv dinp", 0, 0, 2048, 128, 384, 1, 0, 4},
    {"qkv dwt", 1, 0, 384, 128, 2048, 1, 1, 4},          {"attn proj fwd", 0, 1, 2048, 128, 128, 1, 0, 4},
    {"attn proj dinp", 0, 0, 2048, 128, 128, 1, 0, 4},   {"attn proj dwt", 1, 0, 128, 128, 2048, 1, 1, 4},
    {"shared fc fwd", 0, 1, 2048, 352, 128, 1, 0, 4},    {"shared fc dinp", 0, 0, 2048, 128, 352, 1, 1, 4},
    {"shared fc dwt", 1, 0, 352, 128, 2048, 1, 1, 4},    {"shared proj fwd", 0, 1, 2048, 128, 176, 1, 0, 4},
    {"shared proj dinp", 0, 0, 2048, 176, 128, 1, 1, 4}, {"shared proj dwt", 1, 0, 128, 176, 2048, 1, 1, 4},
    {"expert fc fwd", 0, 1, 256, 352, 128, 1, 0, 32},    {"expert fc dinp", 0, 0, 256, 128, 352, 1, 0, 32},
    {"expert fc dwt", 1, 0, 352, 128, 256, 1, 1, 32},    {"expert proj fwd", 0, 1, 256, 128, 176, 1, 0, 32},
    {"expert proj dinp", 0, 0, 256, 176, 128, 1, 0, 32}, {"expert proj dwt", 1, 0, 128, 176, 256, 1, 1, 32},
    {"head fwd", 0, 1, 2048, 320, 128, 1, 0, 1},         {"head dinp", 0, 0, 2048, 128, 320, 1e-3f, 0, 1},
    {"head dwt", 1, 0, 320, 128, 2048, 1e-3f, 1, 1},
};

static double thread_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fastest of repeated calls (thread CPU clock) within ~budget s, at least 5. */
static double min_time(int route, const recipe_gemm *g, const uint16_t *A, const uint16_t *B, float *C, double budget)
{
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    double best = 1e30, t0 = fg_time_sec();
    for (int n = 0; n < 5 || (fg_time_sec() - t0 < budget && n < 2000); n++) {
        double a = thread_now();
        if (route == R_DNNL)
            dnnl_gemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->M, g->N, g->K, g->alpha, A, lda, B, ldb, g->beta, C,
                      g->N);
        else
            fg_bgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, lda, B, ldb, g->beta, C, g->N);
        double t = thread_now() - a;
        best = t < best ? t : best;
    }
    return best;
}

/* seconds of calls per shape: more for the small ones (more noise per call) */
static double budget(const recipe_gemm *g)
{
    return (quick ? 0.25 : 1.0) * (g->calls > 1 ? 0.4 : 0.25);
}

static int run_recipe(const uint16_t *Ah, const uint16_t *Bh, float *C)
{
    if (fg_kernels_configure("auto", NULL, 1) != FG_OK || fg_kernels_set("bgemm", "avx512bf16") != FG_OK) {
        fprintf(stderr, "bench_gemm_bf16 --recipe: no avx512bf16 bgemm: %s\n", fg_last_error());
        return 1;
    }
    /* the training shapes of the default table, once each, after the recipe's */
    enum { NREC = sizeof recipe_gemms / sizeof recipe_gemms[0], NSH = sizeof shapes / sizeof shapes[0] };
    recipe_gemm all[NREC + 3 * NSH];
    memcpy(all, recipe_gemms, sizeof recipe_gemms);
    for (int s = 0; s < NSH; s++) {
        const shape *sh = &shapes[s];
        all[NREC + 3 * s] = (recipe_gemm){sh->name, 0, 1, sh->tok, sh->out, sh->in, 1, 0, 1};
        all[NREC + 3 * s + 1] = (recipe_gemm){sh->name, 0, 0, sh->tok, sh->in, sh->out, 1, 0, 1};
        all[NREC + 3 * s + 2] = (recipe_gemm){sh->name, 1, 0, sh->out, sh->in, sh->tok, 1, 1, 1};
    }
    double tot[2] = {0, 0}, flops = 0;
    for (int i = 0; i < NREC + 3 * NSH; i++) {
        const recipe_gemm *g = &all[i];
        if (i == 0 || i == NREC) {
            if (i == NREC) {
                printf("  per step (calls x time): avx512bf16 %.2f ms (%.1f GF/s)", tot[0] * 1e3,
                       flops / tot[0] * 1e-9);
                if (dnnl_gemm)
                    printf(", oneDNN %.2f ms (%.1f GF/s)", tot[1] * 1e3, flops / tot[1] * 1e-9);
                printf("\n");
                tot[0] = tot[1] = flops = 0;
            }
            printf("\n== %s, 1 thread, fastest call (thread CPU time) ==\n",
                   i ? "the training shapes (bench_train's L6 C384, GPT-2 124M)" : "recipe3 step GEMMs");
            printf("  %-18s %-3s %-15s %5s %10s %8s %10s %8s\n", "gemm", "op", "M x N x K", "calls", "avx512 us",
                   "GF/s", "oneDNN us", "GF/s");
        }
        if (only && !strstr(g->name, only))
            continue;
        double f = 2.0 * g->M * g->N * g->K, t = min_time(R_AVX, g, Ah, Bh, C, budget(g));
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%dx%d", g->M, g->N, g->K);
        printf("  %-18s %c%c  %-15s %5d %10.1f %8.1f", g->name, g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', dims, g->calls,
               t * 1e6, f / t * 1e-9);
        tot[0] += g->calls * t;
        flops += g->calls * f;
        if (dnnl_gemm) {
            double td = min_time(R_DNNL, g, Ah, Bh, C, budget(g));
            tot[1] += g->calls * td;
            printf(" %10.1f %8.1f", td * 1e6, f / td * 1e-9);
        }
        printf("\n");
        fflush(stdout);
    }
    printf("  all training shapes: avx512bf16 %.2f ms (%.1f GF/s)", tot[0] * 1e3, flops / tot[0] * 1e-9);
    if (dnnl_gemm)
        printf(", oneDNN %.2f ms (%.1f GF/s)", tot[1] * 1e3, flops / tot[1] * 1e-9);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *threads_list = "1,2", *dnnl_path = "libdnnl.so.2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--cputime"))
            cputime = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads_list = argv[++i];
        else if (!strcmp(argv[i], "--recipe"))
            recipe = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--dnnl") && i + 1 < argc)
            dnnl_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--cputime] [--threads 1,2] [--dnnl PATH] [--recipe [--only NAME]]\n",
                    argv[0]);
            return 2;
        }
    }
    fg_hw_print(stdout);
    void *h = dlopen(dnnl_path, RTLD_NOW | RTLD_LOCAL);
    if (h)
        *(void **)&dnnl_gemm = dlsym(h, "dnnl_gemm_bf16bf16f32");
    printf("oneDNN: %s\n", dnnl_gemm ? dnnl_path : "not found (apt-get install libdnnl-dev for its row)");

    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t t = (size_t)shapes[s].tok, in = (size_t)shapes[s].in, out = (size_t)shapes[s].out;
        /* forward: A = x [tok,in], B = W [out,in]; dinp: A = dy [tok,out], B = W; dweight: A = dy, B = x */
        maxa = maxa > t * (in > out ? in : out) ? maxa : t * (in > out ? in : out);
        maxb = maxb > in * (out > t ? out : t) ? maxb : in * (out > t ? out : t);
        maxc = maxc > (out > t ? out : t) * (in > out ? in : out) ? maxc : (out > t ? out : t) * (in > out ? in : out);
    }
    fg_rng r;
    fg_rng_seed(&r, 1);
    float *Af = fg_malloc(maxa * 4), *Bf = fg_malloc(maxb * 4), *C = fg_malloc(maxc * 4);
    uint16_t *Ah = fg_malloc(maxa * 2), *Bh = fg_malloc(maxb * 2);
    FG_ASSERT(Af && Bf && C && Ah && Bh);
    for (size_t i = 0; i < maxa; i++)
        Af[i] = fg_rng_normal(&r);
    for (size_t i = 0; i < maxb; i++)
        Bf[i] = 0.02f * fg_rng_normal(&r);
    fg_cvt_f32_bf16(Ah, Af, maxa);
    fg_cvt_f32_bf16(Bh, Bf, maxb);
    if (recipe) {
        int rc = run_recipe(Ah, Bh, C);
        fg_free(Af);
        fg_free(Bf);
        fg_free(C);
        fg_free(Ah);
        fg_free(Bh);
        return rc;
    }

    for (const char *p = threads_list; *p;) {
        int nt = atoi(p);
        p += strcspn(p, ",");
        p += *p == ',';
        if (nt <= 0 || fg_kernels_configure("auto", NULL, nt) != FG_OK) {
            fprintf(stderr, "bench_gemm_bf16: cannot configure %d threads: %s\n", nt, fg_last_error());
            return 1;
        }
        printf("\n== %d thread%s: GF/s (ratio over sgemm fp32 in the same run); auto picks bgemm=%s ==\n", nt,
               nt > 1 ? "s" : "", fg_kernels_variant("bgemm"));
        printf("  %-16s %-5s %-16s", "shape", "op", "M x N x K");
        for (int rt = 0; rt < N_ROUTES; rt++)
            if (rt != R_REF)
                printf(" %18s", route_names[rt]);
        printf("\n");
        double tot_flop = 0, tot_t[N_ROUTES] = {0};
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const shape *sh = &shapes[s];
            gemm_args ops[3] = {{0, 1, sh->tok, sh->out, sh->in, Af, Bf, Ah, Bh, C},  /* forward: x @ W^T */
                                {0, 0, sh->tok, sh->in, sh->out, Af, Bf, Ah, Bh, C},  /* dinp = dy @ W */
                                {1, 0, sh->out, sh->in, sh->tok, Af, Bf, Ah, Bh, C}}; /* dweight = dy^T @ x */
            static const char *const op_names[3] = {"fwd", "dinp", "dwt"};
            for (int o = 0; o < 3; o++) {
                gemm_args *g = &ops[o];
                double flop = 2.0 * g->M * g->N * g->K, base = 0;
                char dims[32];
                snprintf(dims, sizeof dims, "%dx%dx%d", g->M, g->N, g->K);
                printf("  %-16s %-5s %-16s", sh->name, op_names[o], dims);
                tot_flop += flop;
                for (int rt = 0; rt < N_ROUTES; rt++) {
                    if (rt == R_REF)
                        continue;
                    if (!route_ok(rt)) {
                        printf(" %18s", "-");
                        continue;
                    }
                    double t = time_route(rt, g, 0.3);
                    tot_t[rt] += t;
                    if (rt == R_SGEMM) {
                        base = t;
                        printf(" %18.1f", flop / t * 1e-9);
                    } else
                        printf(" %10.1f (%4.2fx)", flop / t * 1e-9, base / t);
                }
                printf("\n");
                fflush(stdout);
            }
        }
        printf("  %-39s", "all shapes (sum of flops / sum of time)");
        for (int rt = 0; rt < N_ROUTES; rt++)
            if (rt != R_REF) {
                if (tot_t[rt] > 0 && rt == R_SGEMM)
                    printf(" %18.1f", tot_flop / tot_t[rt] * 1e-9);
                else if (tot_t[rt] > 0)
                    printf(" %10.1f (%4.2fx)", tot_flop / tot_t[rt] * 1e-9, tot_t[R_SGEMM] / tot_t[rt]);
                else
                    printf(" %18s", "-");
            }
        printf("\n");
        /* the scalar reference only on a small shape: it is the oracle, not a route */
        gemm_args small = {0, 1, 64, 256, 256, Af, Bf, Ah, Bh, C};
        double flop = 2.0 * 64 * 256 * 256, ts = time_route(R_SGEMM, &small, 0.1);
        route_ok(R_REF);
        double tr = time_route(R_REF, &small, 0.1);
        printf("  bf16 ref at 64x256x256 NT: %.2f GF/s (%.3fx sgemm's %.1f)\n", flop / tr * 1e-9, ts / tr,
               flop / ts * 1e-9);
        fg_kernels_configure("auto", NULL, nt);
    }
    fg_free(Af);
    fg_free(Bf);
    fg_free(C);
    fg_free(Ah);
    fg_free(Bh);
    return 0;
}
