/* cli_args.c: what every subcommand shares: argv through its option tables (help to
 * stdout and exit 0, a bad value named and exit 2), the check that no output
 * overwrites an input, and where the default rules file lives. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "frugal/data.h"

void fg_cli_print_help(const fg_cli_spec *s, FILE *f)
{
    fputs(s->usage, f);
    for (int t = 0; t < s->n_tables; t++)
        if (s->tables[t].n > 0) {
            fprintf(f, "options:\n");
            break;
        }
    for (int t = 0; t < s->n_tables; t++)
        fg_opts_print_help(f, s->tables[t].opts, s->tables[t].n, s->defaults ? s->defaults[t] : NULL);
}

/* ---- the reader's limits ---- */

#define RF(field) FG_OPT_FIELD(fg_cli_reader_opts, field)
static const fg_opt reader_opts[] = {
    {"max_doc_mb", FG_OPT_DOUBLE, RF(max_doc_mb), .min = 0, .min_excl = 1, .max = 1 << 30,
     .help = "a larger document is doc_too_large: read past, never held whole, MB"},
    {"max_file_mb", FG_OPT_DOUBLE, RF(max_file_mb), .min = 0, .min_excl = 1, .max = 1 << 30,
     .help = "decoded bytes read from one .gz/.zst input, then file_too_large, MB"},
    {"fail_on_read_error", FG_OPT_BOOL, RF(fail_on_read_error),
     .help = "a corrupt, truncated or unreadable input fails the command (default: warned, counted, skipped)"},
};
#undef RF

fg_opt_table fg_cli_reader_table(fg_cli_reader_opts *o)
{
    return (fg_opt_table){reader_opts, FG_OPT_COUNT(reader_opts), o};
}

void fg_cli_reader_opts_init(fg_cli_reader_opts *o, size_t max_doc_bytes, uint64_t max_file_bytes, bool fail)
{
    o->max_doc_mb = (double)max_doc_bytes / 1048576.0;
    o->max_file_mb = (double)(max_file_bytes ? max_file_bytes : FG_DATA_DEFAULT_MAX_FILE_BYTES) / 1048576.0;
    o->fail_on_read_error = fail;
}

void fg_cli_reader_opts_apply(const fg_cli_reader_opts *o, size_t *max_doc_bytes, uint64_t *max_file_bytes, bool *fail)
{
    *max_doc_bytes = (size_t)(o->max_doc_mb * 1048576.0);
    *max_file_bytes = (uint64_t)(o->max_file_mb * 1048576.0);
    *fail = o->fail_on_read_error != 0;
}

int fg_cli_parse(const fg_cli_spec *s, int argc, char **argv, fg_opt_args *a)
{
    /* short aliases become their long names in a copy of argv (up to a "--") */
    char **av = fg_calloc((size_t)argc + 1, sizeof *av);
    if (!av)
        return fg_cli_fail(s->cmd, FG_ERR_NOMEM, NULL);
    bool opts_done = false;
    for (int i = 0; i < argc; i++) {
        av[i] = argv[i];
        if (i == 0 || opts_done || !s->aliases)
            continue;
        if (!strcmp(argv[i], "--"))
            opts_done = true;
        for (int k = 0; s->aliases[k] && s->aliases[k + 1]; k += 2)
            if (!strcmp(argv[i], s->aliases[k]))
                av[i] = (char *)s->aliases[k + 1];
    }
    fg_clear_error();
    fg_status st = fg_opts_parse_args(s->tables, s->n_tables, argc, av, a);
    fg_free(av);
    if (st != FG_OK) {
        char hint[128];
        snprintf(hint, sizeof hint, "frugal %s --help lists the options", s->cmd);
        int rc = fg_cli_fail(s->cmd, st, hint);
        return rc == 1 ? 2 : rc; /* argv that does not parse is a usage error whatever the status */
    }
    if (a->help) {
        fg_cli_print_help(s, stdout);
        return 0;
    }
    return -1;
}

/* ---- outputs must not be inputs ---- */

/* Absolute form of p without requiring it to exist: realpath of its directory + name. */
static bool abs_path(const char *p, char *out, size_t cap)
{
    char buf[PATH_MAX];
    if (realpath(p, buf)) {
        snprintf(out, cap, "%s", buf);
        return true;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", p);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : p;
    if (slash == dir)
        snprintf(dir, sizeof dir, "/");
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, buf))
        return false;
    int n = snprintf(out, cap, "%s/%s", strcmp(buf, "/") ? buf : "", name);
    return n > 0 && (size_t)n < cap;
}

/* 1 when out names the file in (existing or not), or, with inside_dirs, a file under the
 * directory in */
static bool same_or_under(const char *out, const char *in, bool inside_dirs)
{
    struct stat so, si;
    bool out_exists = stat(out, &so) == 0;
    if (stat(in, &si) != 0)
        memset(&si, 0, sizeof si); /* two outputs not created yet: compared by name */
    if (out_exists && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
        return true;
    char ao[PATH_MAX], ai[PATH_MAX];
    if (!abs_path(out, ao, sizeof ao) || !abs_path(in, ai, sizeof ai))
        return false;
    if (!strcmp(ao, ai))
        return true;
    size_t n = strlen(ai);
    /* inside an input directory: the reader may pick the file up while it is written */
    return inside_dirs && S_ISDIR(si.st_mode) && !strncmp(ao, ai, n) && (ao[n] == '/' || (n == 1 && ai[0] == '/'));
}

fg_status fg_cli_check_outputs(const char *const *outputs, int n_out, const char *const *inputs, int n_in,
                               bool inside_dirs)
{
    for (int o = 0; o < n_out; o++) {
        if (!outputs[o] || !outputs[o][0])
            continue;
        for (int i = 0; i < n_in; i++)
            if (same_or_under(outputs[o], inputs[i], inside_dirs))
                return fg_error(FG_ERR_INVALID,
                                "output %s is the input %s (or inside it): refusing to overwrite an input", outputs[o],
                                inputs[i]);
        for (int k = 0; k < o; k++)
            if (outputs[k] && same_or_under(outputs[o], outputs[k], false))
                return fg_error(FG_ERR_INVALID, "outputs %s and %s are the same file", outputs[k], outputs[o]);
    }
    return FG_OK;
}

/* ---- default rules ---- */

#ifndef FG_INSTALL_CONFIGDIR
#define FG_INSTALL_CONFIGDIR ""
#endif
#ifndef FG_BUILD_CONFIGDIR
#define FG_BUILD_CONFIGDIR ""
#endif

const char *fg_cli_default_rules(void)
{
    static char found[PATH_MAX + 64];
    char tried[4 * (PATH_MAX + 64)] = "";
    char dirs[4][PATH_MAX + 32];
    int n = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *s = strrchr(exe, '/');
        if (s)
            *s = 0;
        snprintf(dirs[n++], sizeof dirs[0], "%s/../configs", exe);              /* build/frugal */
        snprintf(dirs[n++], sizeof dirs[0], "%s/../share/frugal/configs", exe); /* PREFIX/bin/frugal */
    }
    if (FG_INSTALL_CONFIGDIR[0])
        snprintf(dirs[n++], sizeof dirs[0], "%s", FG_INSTALL_CONFIGDIR);
    if (FG_BUILD_CONFIGDIR[0])
        snprintf(dirs[n++], sizeof dirs[0], "%s", FG_BUILD_CONFIGDIR);
    for (int i = 0; i < n; i++) {
        snprintf(found, sizeof found, "%.*s/clean_rules.conf", (int)(sizeof found - 20), dirs[i]);
        if (access(found, R_OK) == 0)
            return found;
        size_t t = strlen(tried);
        snprintf(tried + t, sizeof tried - t, "%s%s", t ? ", " : "", found);
    }
    fg_error(FG_ERR_IO, "no default rules file (looked for %s)", n ? tried : "nothing: no /proc/self/exe");
    return NULL;
}
