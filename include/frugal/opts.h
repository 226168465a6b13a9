/* opts.h: option tables: one row per setting of a struct (name, type, field, range,
 * help, optional environment override) that serves flags, JSON files, --help and
 * the JSON record of what a run used. Part of the core module (fg_core).
 *
 * Usage:
 *   typedef struct my_cfg { int epochs; float lr; char out[256]; int mode; } my_cfg;
 *   static const char *const modes[] = {"fast", "exact", NULL};
 *   static const fg_opt my_opts[] = {
 *       {"epochs", FG_OPT_INT, FG_OPT_FIELD(my_cfg, epochs), .min = 1, .max = 1000, .help = "passes over the data"},
 *       {"lr", FG_OPT_FLOAT, FG_OPT_FIELD(my_cfg, lr), .min = 0, .min_excl = 1, .max = 10, .help = "learning rate"},
 *       {"out", FG_OPT_STR, FG_OPT_FIELD(my_cfg, out), .help = "output file"},
 *       {"mode", FG_OPT_ENUM, FG_OPT_FIELD(my_cfg, mode), .choices = modes, .help = "how"},
 *   };
 *   my_cfg c = {.epochs = 1, .lr = 0.1f, .out = "a.out"}, defaults = c;
 *   fg_opt_table t = {my_opts, FG_OPT_COUNT(my_opts), &c};
 *   const char *pos[8];
 *   fg_opt_args a = {.pos = pos, .max_pos = 8};
 *   fg_status st = fg_opts_parse_args(&t, 1, argc, argv, &a);   // argv[0] is skipped
 *   if (st == FG_OK && a.help) fg_opts_print_help(stdout, my_opts, FG_OPT_COUNT(my_opts), &defaults);
 *   // st != FG_OK: fg_last_error() is e.g. "--epochs: expected a number, got 'abc'"
 *
 * Conventions: keys are snake_case; a flag is "--" + the key with '_' or '-' (both
 * read as '_'); JSON keys must be spelled with '_'. Every message starts with the
 * knob as the user gave it: "--lr: must be > 0 (got -1)", "run.json:3:5: key 'lr':
 * ...", "FG_CKPT_KEEP: expected a number, got 'x'". Nothing here exits or prints
 * except the help and report functions, to the FILE* they are given.
 */
#ifndef FRUGAL_OPTS_H
#define FRUGAL_OPTS_H

#include <stddef.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fg_opt_type {
    FG_OPT_INT,    /* int */
    FG_OPT_LONG,   /* long */
    FG_OPT_U64,    /* uint64_t */
    FG_OPT_FLOAT,  /* float */
    FG_OPT_DOUBLE, /* double */
    FG_OPT_BOOL,   /* int 0/1; text: 1/0, true/false, yes/no, on/off; a flag may stand alone */
    FG_OPT_STR,    /* char[size] (NUL-terminated; longer values refused) */
    FG_OPT_ENUM,   /* int index into choices (NULL-terminated names) */
    FG_OPT_SIZE,   /* size_t bytes; text takes a K/M/G suffix (powers of 1024): "64M" */
} fg_opt_type;

/* Flags of a row. */
#define FG_OPT_FIRST 1u /* in a JSON object, applied before the other keys (e.g. a layout that sets defaults) */

typedef struct fg_opt {
    const char *name; /* key, snake_case */
    fg_opt_type type;
    size_t off, size;           /* the field inside the settings struct: FG_OPT_FIELD(type, field) */
    double min, max;            /* numbers: allowed range, inclusive; both 0: only the type's own limits;
                                   no upper bound: .max = FG_OPT_INF */
    int min_excl;               /* 1: value must be > min */
    const char *help;           /* one line for --help */
    const char *const *choices; /* FG_OPT_ENUM: the names, NULL-terminated */
    const char *env;            /* optional environment variable that overrides it (fg_opts_apply_env) */
    /* optional: called after the field is set (e.g. a layout bringing its own defaults); its
     * failure is the setter's */
    fg_status (*after_set)(void *obj, const char *where);
    unsigned flags; /* FG_OPT_FIRST; bits 16 and up are the table owner's own (e.g. train's RESUMABLE) */
} fg_opt;

#define FG_OPT_INF 1e300
#define FG_OPT_FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)
#define FG_OPT_COUNT(arr) ((int)(sizeof(arr) / sizeof((arr)[0])))

/* A table bound to the struct it fills. Parsing may take several (e.g. a command's own
 * options next to the training config's). */
typedef struct fg_opt_table {
    const fg_opt *opts;
    int n;
    void *obj;
} fg_opt_table;

/* The row for key (dashes read as underscores), or NULL. */
const fg_opt *fg_opts_find(const fg_opt *opts, int n, const char *key);

/* Sets one option from text, as a flag or an environment variable gives it. `where`
 * starts every message ("--lr", "FG_CKPT_KEEP", "cfg.json:2:3: key 'lr'"); NULL means
 * "--<key>". Unknown key: FG_ERR_INVALID "<where>: unknown key 'x'". Bad number:
 * "<where>: expected a number, got 'abc'"; out of range: "<where>: must be >= 1 (got 0)";
 * fractional for an integer: "<where>: must be a whole number (got 2.5)"; enum:
 * "<where>: must be one of a, b (got 'c')". The field is unchanged on failure. */
fg_status fg_opts_set(const fg_opt *opts, int n, void *obj, const char *key, const char *value, const char *where);
/* The same for a row already found. */
fg_status fg_opt_set(const fg_opt *o, void *obj, const char *value, const char *where);

/* Result of fg_opts_parse_args. Fill pos/max_pos before the call. */
typedef struct fg_opt_args {
    const char **pos; /* caller's array: positional arguments, in order (may be NULL when max_pos 0) */
    int max_pos;      /* its capacity; one more positional: FG_ERR_INVALID "unexpected argument 'x'" */
    int n_pos;        /* out: positional arguments found */
    int help;         /* out: 1 when -h or --help was seen (parsing stops there, FG_OK) */
} fg_opt_args;

/* Parses argv[1..argc) into the tables, in order: "--key value", "--key=value", a
 * boolean alone ("--resume") or followed by 0/1/true/false/yes/no; "--" ends options (the
 * rest are positional); anything not starting with "-" is positional. A key found in no
 * table: FG_ERR_INVALID "unknown option --x". The first table holding a key wins. */
fg_status fg_opts_parse_args(const fg_opt_table *tables, int n_tables, int argc, char **argv, fg_opt_args *a);

/* Applies each row's environment override that is set (non-empty), through fg_opt_set with
 * the variable's name as `where`: a bad value is an error naming the variable. Each one
 * applied is reported as "environment: FG_X=v sets key" to `report` (may be NULL) and at
 * INFO level in the log. Returns the first error. */
fg_status fg_opts_apply_env(const fg_opt *opts, int n, void *obj, FILE *report);

/* One line per option: "  --flag  default  help [range] (env VAR)"; defaults is a struct
 * holding the default values (may be NULL: no default column). */
void fg_opts_print_help(FILE *f, const fg_opt *opts, int n, const void *defaults);

/* Writes the option's value as text into buf ("0.001", "llama", "true"; sizes in bytes).
 * Returns buf. */
const char *fg_opt_format(const fg_opt *o, const void *obj, char *buf, size_t cap);

/* 1 when the two structs hold the same value for the option (floats compared as stored). */
int fg_opt_equal(const fg_opt *o, const void *a, const void *b);

/* ---- JSON (jansson inside fg_core; nothing of it in this header) ---- */
/* Applies a flat JSON object of options (keys spelled with '_'): FG_OPT_FIRST rows first,
 * then the rest in file order. `name` stands for the file in messages, which carry the
 * key's line:column: "NAME:3:5: unknown key 'x'", "NAME:1:2: key 'lr': expected a number",
 * syntax errors "NAME:LINE:COL: <jansson's text>" (FG_ERR_FORMAT). When skip_unknown is 1,
 * unknown keys are ignored instead (reading a record written by a newer version). */
fg_status fg_opts_load_json_text(const fg_opt *opts, int n, void *obj, const char *text, const char *name,
                                 int skip_unknown);
/* Every option as one JSON object, in table order, 2-space indent (fg_malloc'd text,
 * NULL on failure). Loading it back gives the same values. */
char *fg_opts_to_json(const fg_opt *opts, int n, const void *obj);

#ifdef __cplusplus
}
#endif
#endif
