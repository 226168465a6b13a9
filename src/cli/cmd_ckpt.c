/* cmd_ckpt.c: `frugal ckpt info | verify | diff`: inspect a checkpoint file or a
 * directory of them, verify every CRC (and the delta chain), compare two checkpoints
 * tensor by tensor. Thin: the work is in src/ckpt. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "frugal/ckpt.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: frugal ckpt info PATH        checkpoint file or directory: steps, kinds, sizes, tensors\n"
               "       frugal ckpt verify PATH      verify every CRC and delta chain; exit 1 if any file fails\n"
               "       frugal ckpt diff A B         compare the tensors and metadata of two checkpoint files\n"
               "                                    (exit 0 identical, 1 different)\n");
    return code;
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void print_file_info(const fg_ckpt_info *in, const char *path)
{
    char b1[32], b2[32];
    uint64_t raw = 0;
    for (int i = 0; i < in->n_tensor; i++)
        raw += in->tensors[i].bytes;
    printf("file      %s\nversion   %d\nstep      %ld\nkind      %s\nuid       %016" PRIx64 "\n", path, in->version,
           in->step, in->delta ? "delta" : "full", in->uid);
    if (in->delta)
        printf("base      %s (step %ld, uid %016" PRIx64 ")\n", in->base_file, in->base_step, in->base_uid);
    printf("size      %s on disk, %s of tensors (%.3f)\n", fg_fmt_bytes(b1, sizeof b1, (double)in->file_bytes),
           fg_fmt_bytes(b2, sizeof b2, (double)raw), raw ? (double)in->file_bytes / (double)raw : 0.0);
    printf("tensors   %d\n", in->n_tensor);
    printf("  %-32s %14s %14s %-18s %8s\n", "name", "bytes", "stored", "encoding", "crc32");
    for (int i = 0; i < in->n_tensor; i++) {
        const fg_ckpt_entry *e = &in->tensors[i];
        printf("  %-32s %14" PRIu64 " %14" PRIu64 " %-18s %08" PRIx32 "\n", e->name, e->bytes, e->stored_bytes,
               fg_ckpt_encoding_name(e->encoding), e->crc32);
    }
    printf("meta      %s\n", in->meta_json[0] ? in->meta_json : "(none)");
}

static int cmd_info(const char *path)
{
    if (!is_dir(path)) {
        fg_ckpt_info in;
        fg_status st = fg_ckpt_info_read(path, &in);
        if (st != FG_OK)
            return fg_cli_fail("ckpt info", st, "is it a frugal checkpoint file (ckpt-*.fgck)?");
        print_file_info(&in, path);
        fg_ckpt_info_free(&in);
        return 0;
    }
    char **paths;
    int n;
    fg_status st = fg_ckpt_list(path, &paths, &n);
    if (st != FG_OK)
        return fg_cli_fail("ckpt info", st, NULL);
    char line[256];
    bool bad_latest = fg_ckpt_read_latest(path, line, sizeof line) != FG_OK;
    if (bad_latest) /* harmless for loading, but never printed raw */
        fprintf(stderr, "frugal ckpt info: warning: %s\n", fg_last_error());
    printf("directory %s: %d checkpoint file(s), latest -> %s\n", path, n,
           bad_latest ? "(invalid, see the warning)"
           : line[0]  ? line
                      : "(none)");
    printf("  %-30s %10s %-6s %10s %12s %12s %7s\n", "file", "step", "kind", "base", "on disk", "tensors", "ratio");
    for (int i = 0; i < n; i++) {
        const char *name = strrchr(paths[i], '/') + 1;
        fg_ckpt_info in;
        if (fg_ckpt_info_read(paths[i], &in) != FG_OK) {
            printf("  %-30s unreadable: %s\n", name, fg_last_error());
            continue;
        }
        uint64_t raw = 0;
        for (int k = 0; k < in.n_tensor; k++)
            raw += in.tensors[k].bytes;
        char base[24] = "-";
        if (in.delta)
            snprintf(base, sizeof base, "%ld", in.base_step);
        printf("  %-30s %10ld %-6s %10s %12" PRIu64 " %12" PRIu64 " %7.3f\n", name, in.step,
               in.delta ? "delta" : "full", base, in.file_bytes, raw, raw ? (double)in.file_bytes / (double)raw : 0.0);
        fg_ckpt_info_free(&in);
    }
    fg_ckpt_list_free(paths, n);
    return 0;
}

static int cmd_verify(const char *path)
{
    if (!is_dir(path)) {
        fg_status st = fg_ckpt_verify(path);
        if (st != FG_OK)
            return fg_cli_fail("ckpt verify", st, "this checkpoint cannot be loaded; an older one may still verify");
        printf("%s: OK\n", path);
        return 0;
    }
    char **paths;
    int n, bad = 0;
    fg_status st = fg_ckpt_list(path, &paths, &n);
    if (st != FG_OK)
        return fg_cli_fail("ckpt verify", st, NULL);
    const char *newest_ok = NULL;
    for (int i = 0; i < n; i++) {
        st = fg_ckpt_verify(paths[i]);
        if (st == FG_OK) {
            printf("OK    %s\n", paths[i]);
            newest_ok = paths[i];
        } else {
            printf("FAIL  %s: %s\n", paths[i], fg_last_error());
            bad++;
        }
    }
    if (n == 0)
        printf("%s: no checkpoint files\n", path);
    else
        printf("%d of %d verify; --resume would load %s\n", n - bad, n, newest_ok ? newest_ok : "nothing");
    fg_ckpt_list_free(paths, n);
    return bad || n == 0 ? 1 : 0;
}

/* Element-wise comparison of two tensors as fp32 words (the tail bytes as bytes). */
static void compare(const char *name, const uint8_t *a, const uint8_t *b, size_t bytes, int *ndiff)
{
    size_t n4 = bytes / 4, diff = 0;
    double max_abs = 0, max_ref = 0;
    for (size_t i = 0; i < n4; i++) {
        if (memcmp(a + 4 * i, b + 4 * i, 4) == 0)
            continue;
        float x, y;
        memcpy(&x, a + 4 * i, 4);
        memcpy(&y, b + 4 * i, 4);
        diff++;
        double d = fabs((double)x - (double)y);
        if (d > max_abs || isnan(d))
            max_abs = d;
        if (fabs((double)y) > max_ref)
            max_ref = fabs((double)y);
    }
    for (size_t i = 4 * n4; i < bytes; i++)
        diff += a[i] != b[i];
    if (diff) {
        (*ndiff)++;
        printf("  %-32s %zu of %zu words differ, max |a-b| %.6g (max |b| there %.6g)\n", name, diff, n4 ? n4 : bytes,
               max_abs, max_ref);
    } else {
        printf("  %-32s identical\n", name);
    }
}

static int cmd_diff(const char *pa, const char *pb)
{
    fg_ckpt_info a, b;
    fg_status st = fg_ckpt_info_read(pa, &a);
    if (st != FG_OK)
        return fg_cli_fail("ckpt diff", st, NULL);
    st = fg_ckpt_info_read(pb, &b);
    if (st != FG_OK) {
        fg_ckpt_info_free(&a);
        return fg_cli_fail("ckpt diff", st, NULL);
    }
    int ndiff = 0, rc = 0;
    printf("a: %s (step %ld, %s)\nb: %s (step %ld, %s)\n", pa, a.step, a.delta ? "delta" : "full", pb, b.step,
           b.delta ? "delta" : "full");
    for (int i = 0; i < a.n_tensor && rc == 0; i++) {
        const char *name = a.tensors[i].name;
        void *da = NULL, *db = NULL;
        size_t na = 0, nb = 0;
        bool in_b = false;
        for (int k = 0; k < b.n_tensor; k++)
            in_b = in_b || !strcmp(b.tensors[k].name, name);
        if (!in_b) {
            printf("  %-32s only in a\n", name);
            ndiff++;
            continue;
        }
        st = fg_ckpt_read_tensor(pa, name, &da, &na);
        if (st == FG_OK)
            st = fg_ckpt_read_tensor(pb, name, &db, &nb);
        if (st != FG_OK)
            rc = fg_cli_fail("ckpt diff", st, NULL);
        else if (na != nb) {
            printf("  %-32s sizes differ: %zu vs %zu bytes\n", name, na, nb);
            ndiff++;
        } else
            compare(name, da, db, na, &ndiff);
        fg_free(da);
        fg_free(db);
    }
    for (int k = 0; k < b.n_tensor && rc == 0; k++) {
        bool in_a = false;
        for (int i = 0; i < a.n_tensor; i++)
            in_a = in_a || !strcmp(a.tensors[i].name, b.tensors[k].name);
        if (!in_a) {
            printf("  %-32s only in b\n", b.tensors[k].name);
            ndiff++;
        }
    }
    if (rc == 0) {
        bool meta_same = !strcmp(a.meta_json, b.meta_json);
        printf("  %-32s %s\n", "(meta)", meta_same ? "identical" : "differs");
        ndiff += !meta_same;
        printf("%d difference(s)\n", ndiff);
        rc = ndiff ? 1 : 0;
    }
    fg_ckpt_info_free(&a);
    fg_ckpt_info_free(&b);
    return rc;
}

int fg_cmd_ckpt(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
    static const struct {
        const char *name, *usage;
        int n_args;
    } subs[] = {
        {"info", "usage: frugal ckpt info PATH        checkpoint file or directory: steps, kinds, sizes, tensors\n", 1},
        {"verify", "usage: frugal ckpt verify PATH      verify every CRC and delta chain; exit 1 if any file fails\n",
         1},
        {"diff",
         "usage: frugal ckpt diff A B         compare the tensors and metadata of two checkpoint files\n"
         "                                    (exit 0 identical, 1 different)\n",
         2},
    };
    for (size_t k = 0; k < sizeof subs / sizeof subs[0]; k++) {
        if (strcmp(argv[1], subs[k].name) != 0)
            continue;
        char cmd[32];
        snprintf(cmd, sizeof cmd, "ckpt %s", subs[k].name);
        const char *pos[2];
        fg_cli_spec spec = {cmd, subs[k].usage, NULL, NULL, 0, NULL};
        fg_opt_args a = {.pos = pos, .max_pos = subs[k].n_args};
        int rc = fg_cli_parse(&spec, argc - 1, argv + 1, &a);
        if (rc >= 0)
            return rc;
        if (a.n_pos != subs[k].n_args) {
            fprintf(stderr, "frugal %s: error: expected %d path(s), got %d\n%s", cmd, subs[k].n_args, a.n_pos,
                    subs[k].usage);
            return 2;
        }
        if (k == 0)
            return cmd_info(pos[0]);
        if (k == 1)
            return cmd_verify(pos[0]);
        return cmd_diff(pos[0], pos[1]);
    }
    fprintf(stderr, "frugal ckpt: error: unknown subcommand '%s' (info, verify or diff)\n", argv[1]);
    return usage(stderr, 2);
}
