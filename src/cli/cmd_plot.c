/* cmd_plot.c: `frugal plot RUN [RUN...]`: reads each run's metrics.jsonl and draws train
 * and validation loss, LR, tokens/s, grad norm and (MoE) expert load against steps and
 * against training time, runs overlaid, to SVG and PNG through gnuplot (Debian gnuplot-nox). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

typedef struct plot_opts {
    char out[4096], gnuplot[4096], title[256];
    int width, height;
} plot_opts;

#define PF(field) FG_OPT_FIELD(plot_opts, field)
static const fg_opt plot_table[] = {
    {"out", FG_OPT_STR, PF(out),
     .help = "output prefix: OUT.svg, OUT.png, OUT.gp (the gnuplot script) and OUT.data/ (default FIRST_RUN/plot)"},
    {"gnuplot", FG_OPT_STR, PF(gnuplot), .help = "the gnuplot program (default: gnuplot on PATH)"},
    {"title", FG_OPT_STR, PF(title), .help = "title above the plots (default: the run names)"},
    {"width", FG_OPT_INT, PF(width), .min = 320, .max = 10000, .help = "image width in pixels"},
    {"height", FG_OPT_INT, PF(height), .min = 240, .max = 20000, .help = "image height in pixels"},
};
#undef PF

/* The program to run: an explicit path, or the first `name` on PATH (NULL if none). */
static char *find_program(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? fg_strdup(name) : NULL;
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    char buf[8192];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", name);
        if (access(buf, X_OK) == 0)
            return fg_strdup(buf);
        p += n + (e != NULL);
    }
    return NULL;
}

typedef struct run_series {
    long rows, val_rows;
    int has_moe, has_lr, has_tps, has_norm;
} run_series;

static void put_num(FILE *f, json_t *v)
{
    if (json_is_number(v))
        fprintf(f, " %.9g", json_number_value(v));
    else
        fprintf(f, " ?"); /* gnuplot's missing value (`set datafile missing "?"`) */
}

/* Reads RUN/metrics.jsonl into two whitespace tables: step lines (step, seconds of
 * training so far, loss, lr, tokens/s, grad norm, expert load max/mean, load cv) and
 * validation lines (step, seconds, val_loss). Seconds are the running sum of step_s, so
 * a resumed run goes on from where it stopped. */
static fg_status read_run(const char *run, const char *train_dat, const char *val_dat, run_series *s)
{
    memset(s, 0, sizeof *s);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *in = fopen(path, "r");
    if (!in)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s (is %s a `frugal train` run directory?)", path, strerror(errno),
                        run);
    FILE *ft = fopen(train_dat, "w"), *fv = fopen(val_dat, "w");
    fg_status st =
        ft && fv ? FG_OK : fg_error(FG_ERR_IO, "%s: cannot write: %s", ft ? val_dat : train_dat, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    double secs = 0.0;
    ssize_t n;
    while (st == FG_OK && (n = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (n <= 1)
            continue;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o)) {
            st = fg_error(FG_ERR_FORMAT, "%s:%ld:%d: not a JSON object: %s", path, lineno, err.column, err.text);
            json_decref(o);
            break;
        }
        json_t *step = json_object_get(o, "step");
        if (!json_is_integer(step)) {
            st = fg_error(FG_ERR_FORMAT, "%s:%ld: no integer \"step\"", path, lineno);
            json_decref(o);
            break;
        }
        json_t *val = json_object_get(o, "val_loss");
        if (val) {
            fprintf(fv, "%lld %.6f", (long long)json_integer_value(step), secs);
            put_num(fv, val);
            fputc('\n', fv);
            s->val_rows++;
        } else if (json_object_get(o, "loss")) {
            json_t *dt = json_object_get(o, "step_s");
            if (json_is_number(dt))
                secs += json_number_value(dt);
            fprintf(ft, "%lld %.6f", (long long)json_integer_value(step), secs);
            const char *keys[] = {"loss", "lr", "tokens_per_s", "grad_norm", "moe_load_max_over_mean", "moe_load_cv"};
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                put_num(ft, json_object_get(o, keys[k]));
            fputc('\n', ft);
            s->rows++;
            s->has_lr |= json_is_number(json_object_get(o, "lr"));
            s->has_tps |= json_is_number(json_object_get(o, "tokens_per_s"));
            s->has_norm |= json_is_number(json_object_get(o, "grad_norm"));
            s->has_moe |= json_is_number(json_object_get(o, "moe_load_max_over_mean"));
        }
        json_decref(o);
    }
    free(line); /* getline's */
    fclose(in);
    if (ft && fclose(ft) != 0 && st == FG_OK)
        st = fg_error(FG_ERR_IO, "%s: write failed: %s", train_dat, strerror(errno));
    if (fv && fclose(fv) != 0 && st == FG_OK)
        st = fg_error(FG_ERR_IO, "%s: write failed: %s", val_dat, strerror(errno));
    if (st == FG_OK && s->rows == 0 && s->val_rows == 0)
        st = fg_error(FG_ERR_FORMAT, "%s: no training or validation lines", path);
    return st;
}

/* gnuplot string literal: single quotes, '' for a quote. */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* The name a run has in the legend: its directory's last component. */
static const char *run_name(const char *run)
{
    size_t n = strlen(run);
    while (n > 1 && run[n - 1] == '/')
        n--;
    const char *b = run + n;
    while (b > run && b[-1] != '/')
        b--;
    static char name[256]; /* the CLI is one thread; the name is printed before the next call */
    snprintf(name, sizeof name, "%.*s", (int)(run + n - b), b);
    return name;
}

/* One panel: column `col` of every run's table against step (x = 1) or seconds (x = 2).
 * Loss panels add the validation points. A run without the column (no MoE load in a
 * dense run) is left out of the panel rather than drawn empty (gnuplot warns on it). */
static void gp_panel(FILE *f, int n_runs, const char *const *runs, const run_series *s, const char *data, int x,
                     int col, const char *ylabel, int val, int logy)
{
    fprintf(f, "set xlabel %s\nset ylabel ", x == 1 ? "'step'" : "'training seconds'");
    gp_str(f, ylabel);
    fprintf(f, "\n%s\nplot ", logy ? "set logscale y" : "unset logscale y");
    int clauses = 0;
    for (int i = 0; i < n_runs; i++) {
        int has = s[i].rows > 0 && (col == 3 || (col == 4 && s[i].has_lr) || (col == 5 && s[i].has_tps) ||
                                    (col == 6 && s[i].has_norm) || (col >= 7 && s[i].has_moe));
        char p[4300];
        if (has) {
            snprintf(p, sizeof p, "%s/run%d.train.dat", data, i);
            fprintf(f, "%s", clauses++ ? ", \\\n     " : "");
            gp_str(f, p);
            fprintf(f, " using %d:%d with lines lw 1.5 lc %d title ", x, col, i + 1);
            gp_str(f, val ? "" : run_name(runs[i]));
        }
        if (val && s[i].val_rows > 0) {
            fprintf(f, "%s", clauses++ ? ", \\\n     " : "");
            snprintf(p, sizeof p, "%s/run%d.val.dat", data, i);
            gp_str(f, p);
            fprintf(f, " using %d:3 with linespoints pt 7 ps 0.6 lw 2 dt 2 lc %d title ", x, i + 1);
            char t[300];
            snprintf(t, sizeof t, "%s (val)", run_name(runs[i]));
            gp_str(f, t);
        }
    }
    if (!clauses) /* no run has this metric: an empty frame keeps the grid of panels */
        fprintf(f, "[0:1] [0:1] 2 notitle");
    fprintf(f, "\n");
}

static fg_status write_script(const char *gp, const char *out, const char *data, int n_runs, const char *const *runs,
                              const run_series *s, const plot_opts *o)
{
    int moe = 0;
    for (int i = 0; i < n_runs; i++)
        moe |= s[i].has_moe;
    FILE *f = fopen(gp, "w");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot write: %s", gp, strerror(errno));
    int rows = moe ? 5 : 4;
    int h = o->height ? o->height : 330 * rows;
    char title[600];
    if (o->title[0])
        snprintf(title, sizeof title, "%s", o->title);
    else {
        title[0] = '\0';
        for (int i = 0; i < n_runs; i++)
            snprintf(title + strlen(title), sizeof title - strlen(title), "%s%s", i ? ", " : "", run_name(runs[i]));
    }
    fprintf(f, "# written by `frugal plot`: rerun with gnuplot %s\n", gp);
    fprintf(f, "set datafile missing '?'\nset grid\nset key top right font ',9'\nset tics font ',9'\n");
    for (int pass = 0; pass < 2; pass++) {
        char file[4300];
        snprintf(file, sizeof file, "%s.%s", out, pass ? "png" : "svg");
        if (pass)
            fprintf(f, "set terminal pngcairo size %d,%d font ',10'\n", o->width, h);
        else
            fprintf(f, "set terminal svg size %d,%d dynamic font ',10'\n", o->width, h);
        fprintf(f, "set output ");
        gp_str(f, file);
        fprintf(f, "\nset multiplot layout %d,2 title ", rows);
        gp_str(f, title);
        fprintf(f, "\n");
        struct {
            int col;
            const char *label;
            int val, logy;
        } panels[] = {{3, "loss (train; val dashed)", 1, 0},
                      {4, "learning rate", 0, 0},
                      {5, "tokens/s (mean so far)", 0, 0},
                      {6, "grad norm (before clipping)", 0, 1},
                      {7, "expert load max/mean", 0, 0}};
        /* multiplot fills by row: each metric against step, then against seconds */
        for (int p = 0; p < rows; p++)
            for (int x = 1; x <= 2; x++)
                gp_panel(f, n_runs, runs, s, data, x, panels[p].col, panels[p].label, panels[p].val, panels[p].logy);
        fprintf(f, "unset multiplot\nset output\n");
    }
    if (fclose(f) != 0)
        return fg_error(FG_ERR_IO, "%s: write failed: %s", gp, strerror(errno));
    return FG_OK;
}

int fg_cmd_plot(int argc, char **argv)
{
    plot_opts o = {.width = 1400}, def = o;
    fg_opt_table t = {plot_table, FG_OPT_COUNT(plot_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"plot",
                        "usage: frugal plot RUN [RUN...] [--out PREFIX]\n"
                        "  draws each run's metrics.jsonl (loss, val loss, LR, tokens/s, grad norm, MoE expert load)\n"
                        "  against step and against training seconds, runs overlaid; needs gnuplot (gnuplot-nox)\n",
                        &t,
                        defs,
                        1,
                        NULL};
    const char *pos[64];
    fg_opt_args a = {.pos = pos, .max_pos = 64};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.n_pos < 1)
        return fg_cli_fail("plot", fg_error(FG_ERR_INVALID, "give at least one run directory"), "frugal plot --help");
    char *gnuplot = find_program(o.gnuplot[0] ? o.gnuplot : "gnuplot");
    if (!gnuplot)
        return fg_cli_fail("plot",
                           fg_error(FG_ERR_IO, "%s not found%s: `frugal plot` draws through gnuplot",
                                    o.gnuplot[0] ? o.gnuplot : "gnuplot", o.gnuplot[0] ? "" : " on PATH"),
                           "install it: apt-get install gnuplot-nox (scripts/deps.sh does), or give --gnuplot PATH");
    int n_runs = a.n_pos;
    const char *const *runs = a.pos;
    char out[4096], data[4200], gp[4200];
    snprintf(out, sizeof out, "%s", o.out);
    if (!o.out[0])
        snprintf(out, sizeof out, "%.4000s/plot", runs[0]);
    snprintf(data, sizeof data, "%s.data", out);
    snprintf(gp, sizeof gp, "%s.gp", out);
    int code = 0;
    run_series *s = fg_calloc((size_t)n_runs, sizeof *s);
    fg_status st = s ? FG_OK : FG_ERR_NOMEM;
    for (int i = 0; st == FG_OK && i < n_runs; i++) { /* every run named before anything is written */
        char m[4300];
        snprintf(m, sizeof m, "%s/metrics.jsonl", runs[i]);
        if (access(m, R_OK) != 0)
            st = fg_error(FG_ERR_IO, "%s: cannot open: %s (is %s a `frugal train` run directory?)", m, strerror(errno),
                          runs[i]);
    }
    if (st == FG_OK && mkdir(data, 0777) != 0 && errno != EEXIST)
        st = fg_error(FG_ERR_IO, "%s: cannot create: %s", data, strerror(errno));
    for (int i = 0; st == FG_OK && i < n_runs; i++) {
        char tr[4300], va[4300];
        snprintf(tr, sizeof tr, "%s/run%d.train.dat", data, i);
        snprintf(va, sizeof va, "%s/run%d.val.dat", data, i);
        st = read_run(runs[i], tr, va, &s[i]);
    }
    if (st == FG_OK)
        st = write_script(gp, out, data, n_runs, runs, s, &o);
    if (st == FG_OK) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(gnuplot, gnuplot, gp, (char *)NULL);
            _exit(127);
        }
        int ws = 0;
        if (pid < 0 || waitpid(pid, &ws, 0) < 0)
            st = fg_error(FG_ERR_IO, "cannot run %s: %s", gnuplot, strerror(errno));
        else if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
            st = fg_error(FG_ERR_IO, "%s %s failed (exit %d): see its messages above", gnuplot, gp,
                          WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    }
    if (st != FG_OK)
        code = fg_cli_fail("plot", st, NULL);
    else {
        for (int i = 0; i < n_runs; i++)
            printf("plot: %s: %ld steps, %ld validations%s\n", runs[i], s[i].rows, s[i].val_rows,
                   s[i].has_moe ? ", MoE" : "");
        printf("plot: %s.svg %s.png (script %s)\n", out, out, gp);
    }
    fg_free(s);
    fg_free(gnuplot);
    return code;
}
