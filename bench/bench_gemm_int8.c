/* bench_gemm_int8.c: GOP/s of every int8 GEMM route (uint8 x int8 -> int32, the linear
 * layer's forward x @ W^T) against the fp32 sgemm in the same run, at the inference
 * shapes of the configs: prompt-sized M and decode (M = 1), on 1 and 2 threads, printed
 * with the ratio over sgemm. Routes: avx512vnni (vpdpbusd kernel, when the CPU has it),
 * oneDNN's public dnnl_gemm_u8s8s32 (dlopen'ed from Debian's libdnnl.so.2 when installed:
 * a comparison row, not a dependency), ref on a small shape.
 *
 *   build/bench_gemm_int8 [--quick] [--cputime] [--threads 1,2] [--rounds 2] [--dnnl PATH]
 * Medians of repeated calls; the whole table is printed --rounds times so routes are
 * compared within a round (a loaded machine drifts between rounds). Figures for the docs
 * are taken on a quiet machine (docs/PERFORMANCE.md). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"

static int quick, cputime;

typedef struct gemm_args {
    int M, N, K;
    const float *Af, *Bf;
    const uint8_t *Aq;
    const int8_t *Bq;
    float *C;
    int32_t *Ci;
} gemm_args;

/* oneDNN's public int8 GEMM (oneapi/dnnl/dnnl.h), row-major:
 * C = alpha (op(A) - ao)(op(B) - bo) + beta C + co. */
typedef int (*dnnl_u8s8_fn)(char transa, char transb, char offsetc, long M, long N, long K, float alpha,
                            const uint8_t *A, long lda, uint8_t ao, const int8_t *B, long ldb, int8_t bo, float beta,
                            int32_t *C, long ldc, const int32_t *co);
static dnnl_u8s8_fn dnnl_gemm;

enum { R_SGEMM, R_REF, R_VNNI, R_DNNL, N_ROUTES };
static const char *const route_names[N_ROUTES] = {"sgemm fp32", "int8 ref", "int8 avx512vnni", "int8 oneDNN"};

static void call(int route, const gemm_args *g)
{
    static const int32_t zero = 0;
    switch (route) {
    case R_SGEMM: fg_sgemm(0, 1, g->M, g->N, g->K, 1.0f, g->Af, g->K, g->Bf, g->K, 0.0f, g->C, g->N); break;
    case R_DNNL:
        dnnl_gemm('N', 'T', 'F', g->M, g->N, g->K, 1.0f, g->Aq, g->K, 0, g->Bq, g->K, 0, 0.0f, g->Ci, g->N, &zero);
        break;
    default: fg_gemm_u8s8(g->M, g->N, g->K, g->Aq, g->K, g->Bq, g->K, g->Ci, g->N); break;
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
    return fg_kernels_set("gemm_u8s8", route == R_REF ? "ref" : "avx512vnni") == FG_OK;
}

/* tokens x in x out of the linear layers (L6: d=384, 124M: d=768), prompt and decode. */
typedef struct shape {
    const char *name;
    int tok, in, out;
} shape;
static const shape shapes[] = {
    {"L6 fc", 1024, 384, 1536},     {"L6 fc2", 1024, 1536, 384},  {"L6 qkv", 1024, 384, 1152},
    {"124M fc", 256, 768, 3072},    {"124M fc2", 256, 3072, 768}, {"124M head", 256, 768, 50304},
    {"L6 fc dec", 1, 384, 1536},    {"L6 fc2 dec", 1, 1536, 384}, {"124M fc dec", 1, 768, 3072},
    {"L6 head dec", 1, 384, 50304},
};

int main(int argc, char **argv)
{
    const char *threads_list = "1,2", *dnnl_path = "libdnnl.so.2";
    int rounds = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--cputime"))
            cputime = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads_list = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dnnl") && i + 1 < argc)
            dnnl_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--cputime] [--threads 1,2] [--rounds 2] [--dnnl PATH]\n", argv[0]);
            return 2;
        }
    }
    fg_hw_print(stdout);
    void *h = dlopen(dnnl_path, RTLD_NOW | RTLD_LOCAL);
    if (h)
        *(void **)&dnnl_gemm = dlsym(h, "dnnl_gemm_u8s8s32");
    printf("oneDNN: %s\n", dnnl_gemm ? dnnl_path : "not found (apt-get install libdnnl-dev for its row)");

    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t t = (size_t)shapes[s].tok, in = (size_t)shapes[s].in, out = (size_t)shapes[s].out;
        maxa = maxa > t * in ? maxa : t * in;
        maxb = maxb > out * in ? maxb : out * in;
        maxc = maxc > t * out ? maxc : t * out;
    }
    fg_rng r;
    fg_rng_seed(&r, 1);
    float *Af = fg_malloc(maxa * 4), *Bf = fg_malloc(maxb * 4), *C = fg_malloc(maxc * 4);
    uint8_t *Aq = fg_malloc(maxa);
    int8_t *Bq = fg_malloc(maxb);
    int32_t *Ci = fg_malloc(maxc * 4);
    FG_ASSERT(Af && Bf && C && Aq && Bq && Ci);
    for (size_t i = 0; i < maxa; i++) {
        Af[i] = fg_rng_normal(&r);
        Aq[i] = (uint8_t)fg_rng_below(&r, 256);
    }
    for (size_t i = 0; i < maxb; i++) {
        Bf[i] = 0.02f * fg_rng_normal(&r);
        Bq[i] = (int8_t)((int)fg_rng_below(&r, 255) - 127);
    }

    for (int round = 0; round < rounds; round++)
        for (const char *p = threads_list; *p;) {
            int nt = atoi(p);
            p += strcspn(p, ",");
            p += *p == ',';
            if (nt <= 0 || fg_kernels_configure("auto", NULL, nt) != FG_OK) {
                fprintf(stderr, "bench_gemm_int8: cannot configure %d threads: %s\n", nt, fg_last_error());
                return 1;
            }
            printf("\n== round %d, %d thread%s: GOP/s (ratio over sgemm fp32 in the same run); auto picks "
                   "gemm_u8s8=%s ==\n",
                   round + 1, nt, nt > 1 ? "s" : "", fg_kernels_variant("gemm_u8s8"));
            printf("  %-14s %-17s", "shape", "M x N x K");
            for (int rt = 0; rt < N_ROUTES; rt++)
                if (rt != R_REF)
                    printf(" %18s", route_names[rt]);
            printf("\n");
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const shape *sh = &shapes[s];
                gemm_args g = {sh->tok, sh->out, sh->in, Af, Bf, Aq, Bq, C, Ci};
                double ops = 2.0 * g.M * g.N * g.K, base = 0;
                char dims[32];
                snprintf(dims, sizeof dims, "%dx%dx%d", g.M, g.N, g.K);
                printf("  %-14s %-17s", sh->name, dims);
                for (int rt = 0; rt < N_ROUTES; rt++) {
                    if (rt == R_REF)
                        continue;
                    if (!route_ok(rt)) {
                        printf(" %18s", "-");
                        continue;
                    }
                    double t = time_route(rt, &g, 0.3);
                    if (rt == R_SGEMM) {
                        base = t;
                        printf(" %18.1f", ops / t * 1e-9);
                    } else
                        printf(" %10.1f (%4.2fx)", ops / t * 1e-9, base / t);
                }
                printf("\n");
                fflush(stdout);
            }
            gemm_args small = {64, 256, 256, Af, Bf, Aq, Bq, C, Ci};
            double ops = 2.0 * 64 * 256 * 256, ts = time_route(R_SGEMM, &small, 0.1);
            route_ok(R_REF);
            double tr = time_route(R_REF, &small, 0.1);
            printf("  int8 ref at 64x256x256: %.2f GOP/s (%.3fx sgemm's %.1f)\n", ops / tr * 1e-9, ts / tr,
                   ops / ts * 1e-9);
        }
    fg_free(Af);
    fg_free(Bf);
    fg_free(C);
    fg_free(Aq);
    fg_free(Bq);
    fg_free(Ci);
    return 0;
}
