/* cpu.c: x86 feature detection through cpuid/xgetbv and the Linux AMX permission
 * request. Non-x86 builds report no features, so only reference kernels run. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal/hw.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#define FG_X86 1
#endif

static fg_cpu cpu;
static bool detected;

#ifdef FG_X86
static unsigned long long xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(fg_cpu *c)
{
    unsigned a, b, d, cx;
    if (!__get_cpuid(0, &a, &b, &cx, &d))
        return;
    unsigned max_leaf = a;
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);
    __get_cpuid(1, &a, &b, &cx, &d);
    c->family = (int)((a >> 8) & 0xf) + (int)((a >> 20) & 0xff);
    c->model = (int)((a >> 4) & 0xf) | (int)(((a >> 16) & 0xf) << 4);
    bool osxsave = cx & (1u << 27);
    c->fma = cx & (1u << 12);
    c->f16c = cx & (1u << 29);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool os_avx = (xcr0 & 0x6) == 0x6;
    c->os_avx512 = (xcr0 & 0xe6) == 0xe6;
    bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = os_avx && (b & (1u << 5));
        c->avx512f = c->os_avx512 && (b & (1u << 16));
        c->avx512dq = c->os_avx512 && (b & (1u << 17));
        c->avx512bw = c->os_avx512 && (b & (1u << 30));
        c->avx512vl = c->os_avx512 && (b & (1u << 31));
        c->avx512_vnni = c->os_avx512 && (cx & (1u << 11));
        c->avx512_fp16 = c->os_avx512 && (d & (1u << 23));
        /* AMX needs the OS to enable XTILECFG/XTILEDATA in XCR0 (bits 17, 18). */
        c->amx_bf16 = os_amx && (d & (1u << 22));
        c->amx_tile = os_amx && (d & (1u << 24));
        c->amx_int8 = os_amx && (d & (1u << 25));
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512_bf16 = c->os_avx512 && (a & (1u << 5));
    }
    c->fma = c->fma && os_avx;
    __get_cpuid(0x80000000, &a, &b, &cx, &d);
    if (a >= 0x80000004) {
        unsigned *w = (unsigned *)c->brand;
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &w[4 * i], &w[4 * i + 1], &w[4 * i + 2], &w[4 * i + 3]);
        c->brand[48] = 0;
    }
}
#else
static void detect(fg_cpu *c)
{
    (void)c;
}
#endif

/* FG_HW_DISABLE: the features it can mask, each with what masking it turns off. */
enum { HW_AVX2 = 1u, HW_AVX512 = 2u, HW_AMX = 4u, HW_BF16 = 8u, HW_VNNI = 16u, HW_ALL = 31u };
static const struct {
    const char *name;
    unsigned bit;
} maskable[] = {
    {"avx2", HW_AVX2}, {"avx512", HW_AVX512}, {"amx", HW_AMX}, {"avx512bf16", HW_BF16}, {"avx512vnni", HW_VNNI}};

/* The one parser of FG_HW_DISABLE: a comma-separated list of maskable names (spaces
 * around names allowed; NULL or empty: nothing). An unknown name is an error that
 * names the variable, the value and the name. */
static fg_status parse_disable(const char *list, unsigned *mask)
{
    *mask = 0;
    if (!list)
        return FG_OK;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (!len)
            break;
        size_t k = 0;
        while (k < sizeof maskable / sizeof maskable[0] &&
               (strlen(maskable[k].name) != len || strncmp(p, maskable[k].name, len)))
            k++;
        if (k == sizeof maskable / sizeof maskable[0])
            return fg_error(FG_ERR_INVALID,
                            "FG_HW_DISABLE='%s': unknown feature '%.*s' at byte %zu (expected a comma-separated "
                            "list of avx2, avx512, avx512bf16, avx512vnni, amx)",
                            list, (int)len, p, (size_t)(p - list));
        *mask |= maskable[k].bit;
        p += len;
    }
    return FG_OK;
}

static void apply_mask(fg_cpu *c, unsigned mask)
{
    if (mask & (HW_AMX | HW_AVX512))
        c->amx_tile = c->amx_bf16 = c->amx_int8 = false;
    if (mask & HW_AVX512) {
        c->avx512f = c->avx512bw = c->avx512vl = c->avx512dq = false;
        c->avx512_bf16 = c->avx512_fp16 = c->avx512_vnni = false;
    }
    /* the bf16 dot-product units only (AVX512-BF16 and AMX-BF16): the bf16 GEMM falls
     * back to conversion + sgemm while every other kernel keeps AVX-512 */
    if (mask & HW_BF16)
        c->avx512_bf16 = c->amx_bf16 = false;
    /* the int8 dot-product units only (AVX512-VNNI and AMX-INT8): the int8 GEMM runs ref */
    if (mask & HW_VNNI)
        c->avx512_vnni = c->amx_int8 = false;
    if (mask & HW_AVX2)
        c->avx2 = c->fma = false;
}

/* raw: what cpuid says; cpu: raw less FG_HW_DISABLE, what fg_hw_cpu returns. */
static fg_cpu raw;
static char disabled[64];

fg_status fg_hw_init(void)
{
    if (!detected) {
        memset(&raw, 0, sizeof raw);
        detect(&raw);
        raw.n_cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
        /* until a valid FG_HW_DISABLE is applied, nothing optional is on */
        cpu = raw;
        apply_mask(&cpu, HW_ALL);
        detected = true;
    }
    const char *env = getenv("FG_HW_DISABLE");
    unsigned mask;
    fg_status st = parse_disable(env, &mask);
    if (st != FG_OK)
        return st;
    bool permitted = cpu.amx_permitted;
    fg_cpu c = raw;
    apply_mask(&c, mask);
    c.amx_permitted = permitted && c.amx_tile;
    cpu = c;
    snprintf(disabled, sizeof disabled, "%s", env ? env : "");
    return FG_OK;
}

const char *fg_hw_disabled(void)
{
    fg_hw_cpu();
    return disabled;
}

const fg_cpu *fg_hw_cpu(void)
{
    if (!detected && fg_hw_init() != FG_OK)
        FG_WARN("%s; all optional CPU features are off", fg_last_error());
    return &cpu;
}

fg_status fg_hw_request_amx(void)
{
    const fg_cpu *c = fg_hw_cpu();
    if (c->amx_permitted)
        return FG_OK;
    if (!c->amx_tile)
        return fg_error(FG_ERR_UNSUPPORTED, "AMX: the CPU or OS does not offer AMX tiles");
#ifdef FG_X86
    /* ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0)
        return fg_error(FG_ERR_UNSUPPORTED, "AMX: arch_prctl(ARCH_REQ_XCOMP_PERM) was refused");
    cpu.amx_permitted = true;
    return FG_OK;
#else
    return fg_error(FG_ERR_UNSUPPORTED, "AMX: not an x86 build");
#endif
}

void fg_hw_print(FILE *f)
{
    const fg_cpu *c = fg_hw_cpu();
    fprintf(f, "cpu:        %s (%s, family %d model %d), %d logical cores\n", c->brand[0] ? c->brand : "unknown",
            c->vendor, c->family, c->model, c->n_cores);
    struct {
        const char *name;
        bool on;
    } feats[] = {{"avx2", c->avx2},
                 {"fma", c->fma},
                 {"f16c", c->f16c},
                 {"avx512f", c->avx512f},
                 {"avx512bw", c->avx512bw},
                 {"avx512vl", c->avx512vl},
                 {"avx512dq", c->avx512dq},
                 {"avx512_bf16", c->avx512_bf16},
                 {"avx512_fp16", c->avx512_fp16},
                 {"avx512_vnni", c->avx512_vnni},
                 {"amx_tile", c->amx_tile},
                 {"amx_bf16", c->amx_bf16},
                 {"amx_int8", c->amx_int8}};
    fprintf(f, "features:  ");
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++)
        fprintf(f, " %s%s", feats[i].on ? "+" : "-", feats[i].name);
    fprintf(f, "\n");
    if (c->amx_tile) {
        fg_status st = fg_hw_request_amx();
        fprintf(f, "amx:        %s\n", st == FG_OK ? "permitted (arch_prctl ok)" : fg_last_error());
    }
}

/* The bgemm variant's unit; an AMX-BF16 CPU whose dispatch still picked another route
 * says so (no AMX kernel, or AMX masked). */
static const char *bf16_unit(const char *v)
{
    if (!strcmp(v, "amx"))
        return "AMX-BF16 tiles (tdpbf16ps), fp32 accumulation";
    if (!strcmp(v, "avx512bf16"))
        return "AVX512-BF16 vdpbf16ps kernel, fp32 accumulation";
    if (!strcmp(v, "onednn") || !strcmp(v, "dnnl"))
        return "oneDNN bf16 matmul, fp32 accumulation";
    if (!strcmp(v, "blas"))
        return "no bf16 unit: bf16 -> fp32 conversion + OpenBLAS sgemm";
    if (!strcmp(v, "ref"))
        return "scalar reference loops (bf16 products, fp32 sums)";
    return NULL;
}

const char *fg_hw_unit(const char *precision, const char *fp32_variant, const char *bf16_variant, char *buf, size_t n)
{
    const char *u = NULL;
    if (!strcmp(precision, "fp32")) {
        u = !strcmp(fp32_variant, "blas")  ? "sgemm through OpenBLAS"
            : !strcmp(fp32_variant, "ref") ? "scalar reference loops"
                                           : NULL;
        if (!u) {
            snprintf(buf, n, "the %s kernels", fp32_variant);
            return buf;
        }
    } else if (!strcmp(precision, "bf16") || !strcmp(precision, "fp8")) {
        const char *b = bf16_unit(bf16_variant);
        char tmp[96];
        if (!b) {
            snprintf(tmp, sizeof tmp, "the %s bf16 kernel", bf16_variant);
            b = tmp;
        }
        const fg_cpu *c = fg_hw_cpu();
        const char *amx = c->amx_bf16 && strcmp(bf16_variant, "amx") ? " (AMX-BF16 present, not used)" : "";
        if (!strcmp(precision, "fp8")) /* CPUs have no fp8 arithmetic: fp8 buys memory, not speed */
            snprintf(buf, n, "fp8 storage (e4m3/e5m2), products as bf16's (no fp8 unit on CPUs)");
        else
            snprintf(buf, n, "%s%s", b, amx);
        return buf;
    } else
        u = "?";
    snprintf(buf, n, "%s", u);
    return buf;
}

void fg_hw_print_units(FILE *f, const char *indent, const char *fp32_variant, const char *bf16_variant)
{
    static const char *const precisions[] = {"fp32", "bf16", "fp8"};
    for (int i = 0; i < 3; i++) {
        char buf[192], var[48];
        snprintf(var, sizeof var, "%s=%s", i ? "bgemm" : "matmul", i ? bf16_variant : fp32_variant);
        fprintf(f, "%s%-5s %-18s %s\n", indent, precisions[i], var,
                fg_hw_unit(precisions[i], fp32_variant, bf16_variant, buf, sizeof buf));
    }
}
