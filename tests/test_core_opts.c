/* test_core_opts.c: option tables (opts.h): every type from text, argv and JSON, range
 * and type errors naming the knob, positional arguments, help, environment overrides. */
#include <stdlib.h>
#include <string.h>

#include "frugal/opts.h"
#include "harness.h"

typedef struct tcfg {
    int epochs;
    long steps;
    uint64_t seed;
    float lr;
    double secs;
    int verbose;
    char out[16];
    int mode;
    size_t mem;
    int touched; /* set by the after_set hook of mode */
} tcfg;

static const char *const modes[] = {"fast", "exact", NULL};

static fg_status mode_hook(void *obj, const char *where)
{
    ((tcfg *)obj)->touched = 1;
    return FG_OK;
}

static const fg_opt T[] = {
    {"epochs", FG_OPT_INT, FG_OPT_FIELD(tcfg, epochs), .min = 1, .max = 1000, .help = "passes"},
    {"steps", FG_OPT_LONG, FG_OPT_FIELD(tcfg, steps), .min = 0, .max = FG_OPT_INF, .help = "steps"},
    {"seed", FG_OPT_U64, FG_OPT_FIELD(tcfg, seed), .help = "seed"},
    {"lr", FG_OPT_FLOAT, FG_OPT_FIELD(tcfg, lr), .min = 0, .max = 10, .min_excl = 1, .help = "rate",
     .env = "FG_TEST_OPTS_LR"},
    {"max_secs", FG_OPT_DOUBLE, FG_OPT_FIELD(tcfg, secs), .help = "budget"},
    {"verbose", FG_OPT_BOOL, FG_OPT_FIELD(tcfg, verbose), .help = "talk"},
    {"out", FG_OPT_STR, FG_OPT_FIELD(tcfg, out), .help = "file"},
    {"mode", FG_OPT_ENUM, FG_OPT_FIELD(tcfg, mode), .choices = modes, .help = "how", .after_set = mode_hook,
     .flags = FG_OPT_FIRST},
    {"mem", FG_OPT_SIZE, FG_OPT_FIELD(tcfg, mem), .min = 1024, .max = 1e12, .help = "memory"},
};
#define NT FG_OPT_COUNT(T)

static tcfg defaults(void)
{
    tcfg c;
    memset(&c, 0, sizeof c);
    c.epochs = 1;
    c.lr = 0.5f;
    strcpy(c.out, "a.out");
    c.mem = 4096;
    return c;
}

static void expect_err(const tcfg *c0, const char *key, const char *value, const char *where, const char *want)
{
    tcfg c = *c0;
    fg_status st = fg_opts_set(T, NT, &c, key, value, where);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), want), "%s=%s: want '%s', got '%s'", key, value, want,
             fg_last_error());
    FG_CHECK(!memcmp(&c, c0, sizeof c), "%s=%s: field unchanged on failure", key, value);
}

static void test_set_text(void)
{
    tcfg c = defaults(), d = c;
    FG_CHECK(fg_opts_set(T, NT, &c, "epochs", "7", NULL) == FG_OK && c.epochs == 7, "int");
    FG_CHECK(fg_opts_set(T, NT, &c, "steps", "1e3", NULL) == FG_OK && c.steps == 1000, "long from 1e3");
    FG_CHECK(fg_opts_set(T, NT, &c, "seed", "18446744073709551615", NULL) == FG_OK && c.seed == UINT64_MAX,
             "u64 exact beyond 2^53");
    FG_CHECK(fg_opts_set(T, NT, &c, "lr", "3e-4", NULL) == FG_OK && c.lr == 3e-4f, "float");
    FG_CHECK(fg_opts_set(T, NT, &c, "max-secs", "2.5", NULL) == FG_OK && c.secs == 2.5, "dashes read as underscores");
    FG_CHECK(fg_opts_set(T, NT, &c, "verbose", "yes", NULL) == FG_OK && c.verbose == 1, "bool yes");
    FG_CHECK(fg_opts_set(T, NT, &c, "verbose", "off", NULL) == FG_OK && c.verbose == 0, "bool off");
    FG_CHECK(fg_opts_set(T, NT, &c, "out", "b.bin", NULL) == FG_OK && !strcmp(c.out, "b.bin"), "string");
    FG_CHECK(fg_opts_set(T, NT, &c, "mode", "exact", NULL) == FG_OK && c.mode == 1 && c.touched, "enum + hook");
    FG_CHECK(fg_opts_set(T, NT, &c, "mem", "64M", NULL) == FG_OK && c.mem == ((size_t)64 << 20), "size 64M");
    FG_CHECK(fg_opts_set(T, NT, &c, "mem", "2KiB", NULL) == FG_OK && c.mem == 2048, "size 2KiB");

    expect_err(&d, "epochs", "abc", NULL, "--epochs: expected a number, got 'abc'");
    expect_err(&d, "epochs", "", NULL, "--epochs: expected a number");
    expect_err(&d, "epochs", "2.5", NULL, "--epochs: must be a whole number (got 2.5)");
    expect_err(&d, "epochs", "0", NULL, "--epochs: must be >= 1 (got 0)");
    expect_err(&d, "epochs", "1001", NULL, "--epochs: must be <= 1000 (got 1001)");
    expect_err(&d, "epochs", "1e10", NULL, "--epochs: must be <= 1000");
    expect_err(&d, "seed", "-1", NULL, "--seed: must be >= 0 (got -1)");
    expect_err(&d, "lr", "0", "FG_TEST_OPTS_LR", "FG_TEST_OPTS_LR: must be > 0 (got 0)");
    expect_err(&d, "lr", "nan", NULL, "--lr: expected a number, got NaN");
    expect_err(&d, "max_secs", "1e999", NULL, "--max-secs: expected a number, got '1e999'");
    expect_err(&d, "verbose", "maybe", NULL, "--verbose: expected true or false");
    expect_err(&d, "out", "0123456789abcdefXYZ", NULL, "--out: value longer than 15 bytes");
    expect_err(&d, "mode", "slow", NULL, "--mode: must be one of fast, exact (got 'slow')");
    expect_err(&d, "mem", "1", NULL, "--mem: must be >= 1024 (got 1)");
    expect_err(&d, "mem", "12Q", NULL, "--mem: expected a number, got '12Q'");
    expect_err(&d, "nope", "1", "cfg", "cfg: unknown key 'nope'");
    FG_CHECK(fg_opts_find(T, NT, "max-secs") == &T[4] && fg_opts_find(T, NT, "zzz") == NULL, "find");
}

static void test_args(void)
{
    tcfg c = defaults();
    char *argv[] = {"prog",   "in.txt", "--epochs", "3",  "--lr=0.25",   "--verbose",
                    "--mode", "exact",  "more.txt", "--", "--not-a-flag"};
    const char *pos[4];
    fg_opt_args a = {.pos = pos, .max_pos = 4};
    fg_opt_table t = {T, NT, &c};
    fg_status st = fg_opts_parse_args(&t, 1, FG_OPT_COUNT(argv), argv, &a);
    FG_CHECK(st == FG_OK, "parse: %s", fg_last_error());
    FG_CHECK(c.epochs == 3 && c.lr == 0.25f && c.verbose == 1 && c.mode == 1, "values");
    FG_CHECK(a.n_pos == 3 && !strcmp(pos[0], "in.txt") && !strcmp(pos[1], "more.txt") &&
                 !strcmp(pos[2], "--not-a-flag"),
             "positionals (%d)", a.n_pos);
    FG_CHECK(!a.help, "no help");

    /* a boolean followed by an explicit value */
    char *argv2[] = {"prog", "--verbose", "false", "--epochs", "abc"};
    c = defaults();
    st = fg_opts_parse_args(&t, 1, 5, argv2, &a);
    FG_CHECK(st == FG_ERR_INVALID && !strcmp(fg_last_error(), "--epochs: expected a number, got 'abc'"),
             "bad number named: %s", fg_last_error());
    FG_CHECK(c.verbose == 0, "--verbose false");

    char *argv3[] = {"prog", "--bogus", "1"};
    FG_CHECK(fg_opts_parse_args(&t, 1, 3, argv3, &a) == FG_ERR_INVALID && strstr(fg_last_error(), "--bogus"),
             "unknown flag named: %s", fg_last_error());
    char *argv4[] = {"prog", "--epochs"};
    FG_CHECK(fg_opts_parse_args(&t, 1, 2, argv4, &a) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "--epochs: missing value"),
             "missing value: %s", fg_last_error());
    char *argv5[] = {"prog", "--epochs", "2", "-h", "--bogus"};
    FG_CHECK(fg_opts_parse_args(&t, 1, 5, argv5, &a) == FG_OK && a.help, "-h detected");
    char *argv6[] = {"prog", "x"};
    fg_opt_args none = {0};
    FG_CHECK(fg_opts_parse_args(&t, 1, 2, argv6, &none) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "unexpected argument 'x'"),
             "positional refused when none allowed: %s", fg_last_error());
    char *argv7[] = {"prog", "-x"};
    FG_CHECK(fg_opts_parse_args(&t, 1, 2, argv7, &a) == FG_ERR_INVALID && strstr(fg_last_error(), "-x"),
             "short unknown flag: %s", fg_last_error());

    /* two tables: the command's own options next to a shared one */
    typedef struct own {
        int iters;
    } own;
    static const fg_opt O[] = {{"iters", FG_OPT_INT, FG_OPT_FIELD(own, iters), .min = 1, .max = 100, .help = "n"}};
    own o = {5};
    c = defaults();
    fg_opt_table two[] = {{O, 1, &o}, {T, NT, &c}};
    char *argv8[] = {"prog", "--iters", "9", "--epochs", "4"};
    FG_CHECK(fg_opts_parse_args(two, 2, 5, argv8, &a) == FG_OK && o.iters == 9 && c.epochs == 4, "two tables: %s",
             fg_last_error());
}

static void test_env(void)
{
    tcfg c = defaults();
    setenv("FG_TEST_OPTS_LR", "0.125", 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/env.txt", fg_test_tmpdir());
    FILE *f = fopen(path, "w+");
    FG_CHECK(fg_opts_apply_env(T, NT, &c, f) == FG_OK && c.lr == 0.125f, "env applied");
    char line[256] = "";
    rewind(f);
    FG_CHECK(fgets(line, sizeof line, f) && strstr(line, "FG_TEST_OPTS_LR=0.125 sets lr"), "env reported: %s", line);
    fclose(f);
    setenv("FG_TEST_OPTS_LR", "fast", 1);
    c = defaults();
    FG_CHECK(fg_opts_apply_env(T, NT, &c, NULL) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "FG_TEST_OPTS_LR: expected a number, got 'fast'"),
             "bad env value names the variable: %s", fg_last_error());
    FG_CHECK(c.lr == 0.5f, "bad env leaves the default");
    unsetenv("FG_TEST_OPTS_LR");
}

static void test_json(void)
{
    tcfg c = defaults();
    c.epochs = 12;
    c.seed = 9000000000000000001ull;
    c.lr = 3e-4f;
    c.secs = 1.5;
    c.verbose = 1;
    strcpy(c.out, "x\"y");
    c.mode = 1;
    c.mem = (size_t)3 << 30;
    char *js = fg_opts_to_json(T, NT, &c);
    FG_CHECK(js && strstr(js, "\"mode\": \"exact\"") && strstr(js, "\"verbose\": true"), "to json: %s",
             js ? js : "(null)");
    tcfg d = defaults();
    FG_CHECK(js && fg_opts_load_json_text(T, NT, &d, js, "rt", 0) == FG_OK, "reload: %s", fg_last_error());
    d.touched = c.touched;
    for (int i = 0; i < NT; i++)
        FG_CHECK(fg_opt_equal(&T[i], &c, &d), "round trip of %s", T[i].name);
    fg_free(js);

    d = defaults();
    const char *bad = "{\"epochs\": 3,\n  \"lr\": \"fast\"}";
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, bad, "b.json", 0) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "b.json:2:3: key 'lr': expected a number"),
             "json type error: %s", fg_last_error());
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"epochs\": 0}", "r.json", 0) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "r.json:1:2: key 'epochs': must be >= 1 (got 0)"),
             "json range: %s", fg_last_error());
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"zz\": 0}", "u.json", 0) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "u.json:1:2: unknown key 'zz'"),
             "json unknown: %s", fg_last_error());
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"zz\": 0, \"epochs\": 4}", "u.json", 1) == FG_OK && d.epochs == 4,
             "json unknown skipped on request");
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"max-secs\": 1}", "d.json", 0) == FG_ERR_INVALID,
             "json keys are spelled with underscores");
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"epochs\": 1,", "s.json", 0) == FG_ERR_FORMAT &&
                 strstr(fg_last_error(), "s.json:1:"),
             "json syntax: %s", fg_last_error());
    FG_CHECK(fg_opts_load_json_text(T, NT, &d, "{\"mem\": \"1G\", \"verbose\": 0}", "m.json", 0) == FG_OK &&
                 d.mem == ((size_t)1 << 30) && d.verbose == 0,
             "json size string, bool as 0");
}

static void test_help(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/help.txt", fg_test_tmpdir());
    FILE *f = fopen(path, "w+");
    tcfg d = defaults();
    fg_opts_print_help(f, T, NT, &d);
    long n = ftell(f);
    rewind(f);
    char buf[4096] = "";
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    FG_CHECK(n > 0 && got == (size_t)n, "help written");
    FG_CHECK(strstr(buf, "--epochs") && strstr(buf, "[1, 1000]"), "help: name and range");
    FG_CHECK(strstr(buf, "--max-secs"), "help: dashes");
    FG_CHECK(strstr(buf, "(0, 10]") && strstr(buf, "(env FG_TEST_OPTS_LR)"), "help: exclusive range, env");
    FG_CHECK(strstr(buf, "[fast|exact]") && strstr(buf, "\"a.out\""), "help: choices, string default");
    FG_CHECK(strstr(buf, "[0, inf)"), "help: open range");
}

int main(void)
{
    FG_TEST_BEGIN("core_opts");
    test_set_text();
    test_args();
    test_env();
    test_json();
    test_help();
    return fg_test_end();
}
