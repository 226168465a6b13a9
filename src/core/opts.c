/* opts.c: option tables (opts.h): setting a struct's fields from flags, environment
 * variables and JSON with one parser and one range check per row, help and JSON out. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/opts.h"

#define KEY_MAX 64

/* key with dashes read as underscores into k[KEY_MAX]; 0 when too long or empty */
static int norm_key(const char *key, size_t n, char *k)
{
    if (n == 0 || n >= KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        k[i] = key[i] == '-' ? '_' : key[i];
    k[n] = '\0';
    return 1;
}

const fg_opt *fg_opts_find(const fg_opt *opts, int n, const char *key)
{
    char k[KEY_MAX];
    if (!key || !norm_key(key, strlen(key), k))
        return NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(opts[i].name, k))
            return &opts[i];
    return NULL;
}

static void *field_of(const fg_opt *o, void *obj)
{
    return (char *)obj + o->off;
}

static const void *cfield_of(const fg_opt *o, const void *obj)
{
    return (const char *)obj + o->off;
}

static int is_integral(fg_opt_type t)
{
    return t == FG_OPT_INT || t == FG_OPT_LONG || t == FG_OPT_U64 || t == FG_OPT_BOOL || t == FG_OPT_SIZE;
}

/* The type's own limits, so that a value in the row's range always fits the field. */
static void type_limits(fg_opt_type t, double *lo, double *hi)
{
    switch (t) {
    case FG_OPT_INT: *lo = INT_MIN, *hi = INT_MAX; break;
    case FG_OPT_LONG: *lo = (double)LONG_MIN, *hi = (double)LONG_MAX; break;
    case FG_OPT_U64: *lo = 0, *hi = 18446744073709551615.0; break;
    case FG_OPT_SIZE: *lo = 0, *hi = (double)SIZE_MAX; break;
    case FG_OPT_BOOL: *lo = 0, *hi = 1; break;
    case FG_OPT_FLOAT: *lo = -3.4e38, *hi = 3.4e38; break;
    default: *lo = -HUGE_VAL, *hi = HUGE_VAL; break;
    }
}

static fg_status check_range(const fg_opt *o, double v, const char *where)
{
    if (isnan(v))
        return fg_error(FG_ERR_INVALID, "%s: expected a number, got NaN", where);
    if (is_integral(o->type) && v != floor(v))
        return fg_error(FG_ERR_INVALID, "%s: must be a whole number (got %.15g)", where, v);
    double lo, hi;
    type_limits(o->type, &lo, &hi);
    int excl = 0;
    if ((o->min != 0 || o->max != 0) && o->type != FG_OPT_BOOL) {
        if (o->min > lo || (o->min == lo && o->min_excl))
            lo = o->min, excl = o->min_excl;
        if (o->max < hi)
            hi = o->max;
    }
    if (excl ? !(v > lo) : !(v >= lo))
        return fg_error(FG_ERR_INVALID, "%s: must be %s %.15g (got %.15g)", where, excl ? ">" : ">=", lo, v);
    if (!(v <= hi))
        return fg_error(FG_ERR_INVALID, "%s: must be <= %.15g (got %.15g)", where, hi, v);
    return FG_OK;
}

/* Stores a checked number. `exact` carries integers beyond double's 53 bits. */
static fg_status store_number(const fg_opt *o, void *obj, double v, const unsigned long long *exact, const char *where)
{
    fg_status st = check_range(o, v, where);
    if (st != FG_OK)
        return st;
    if (exact && o->type == FG_OPT_LONG && *exact > (unsigned long long)LONG_MAX)
        return fg_error(FG_ERR_INVALID, "%s: must be <= %ld (got %llu)", where, LONG_MAX, *exact);
    void *f = field_of(o, obj);
    switch (o->type) {
    case FG_OPT_INT:
    case FG_OPT_BOOL:
    case FG_OPT_ENUM: *(int *)f = (int)v; break;
    case FG_OPT_LONG: *(long *)f = exact ? (long)(long long)*exact : (long)v; break;
    case FG_OPT_U64: *(uint64_t *)f = exact ? (uint64_t)*exact : (uint64_t)v; break;
    case FG_OPT_SIZE: *(size_t *)f = exact ? (size_t)*exact : (size_t)v; break;
    case FG_OPT_FLOAT: *(float *)f = (float)v; break;
    case FG_OPT_DOUBLE: *(double *)f = v; break;
    default: return fg_error(FG_ERR_INTERNAL, "%s: option '%s' is not numeric", where, o->name);
    }
    return FG_OK;
}

static fg_status set_enum(const fg_opt *o, void *obj, const char *s, const char *where)
{
    for (int i = 0; o->choices && o->choices[i]; i++)
        if (!strcmp(s, o->choices[i])) {
            *(int *)field_of(o, obj) = i;
            return FG_OK;
        }
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; o->choices && o->choices[i] && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", o->choices[i]);
    return fg_error(FG_ERR_INVALID, "%s: must be one of %s (got '%s')", where, list, s);
}

static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(s, yes[i]))
            return 1;
        if (!strcmp(s, no[i]))
            return 0;
    }
    return -1;
}

/* Parses text as a number of the row's type: integers exactly (also beyond 2^53), else
 * strtod ("1e3" is a valid step count); sizes may end in K, M, G or T (x1024^n). */
static fg_status set_number_text(const fg_opt *o, void *obj, const char *s, const char *where)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return fg_error(FG_ERR_INVALID, "%s: expected a number, got '%s'", where, s);
    char *end = NULL;
    double mult = 1;
    if (is_integral(o->type) && *p != '-') {
        errno = 0;
        unsigned long long u = strtoull(p, &end, 10);
        const char *rest = end;
        if (o->type == FG_OPT_SIZE && end != p && *rest) {
            static const char units[] = "KMGT";
            const char *k = strchr(units, *rest);
            if (k && *k) {
                mult = pow(1024.0, (double)(k - units + 1));
                rest++;
                if (*rest == 'i')
                    rest++;
                if (*rest == 'B')
                    rest++;
            }
        }
        if (end != p && *rest == '\0' && errno != ERANGE) {
            if (mult == 1)
                return store_number(o, obj, (double)u, &u, where);
            return store_number(o, obj, (double)u * mult, NULL, where);
        }
    }
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || *end != '\0' || errno == ERANGE)
        return fg_error(FG_ERR_INVALID, "%s: expected a number, got '%s'", where, s);
    return store_number(o, obj, v, NULL, where);
}

static fg_status set_text(const fg_opt *o, void *obj, const char *value, const char *where)
{
    switch (o->type) {
    case FG_OPT_STR:
        if (strlen(value) >= o->size)
            return fg_error(FG_ERR_INVALID, "%s: value longer than %zu bytes", where, o->size - 1);
        memcpy(field_of(o, obj), value, strlen(value) + 1);
        return FG_OK;
    case FG_OPT_ENUM: return set_enum(o, obj, value, where);
    case FG_OPT_BOOL: {
        int b = parse_bool(value);
        if (b < 0)
            return fg_error(FG_ERR_INVALID, "%s: expected true or false (1/0, yes/no), got '%s'", where, value);
        *(int *)field_of(o, obj) = b;
        return FG_OK;
    }
    default: return set_number_text(o, obj, value, where);
    }
}

static fg_status after(const fg_opt *o, void *obj, const char *where, fg_status st)
{
    if (st == FG_OK && o->after_set)
        st = o->after_set(obj, where);
    return st;
}

fg_status fg_opt_set(const fg_opt *o, void *obj, const char *value, const char *where)
{
    char flag[KEY_MAX + 2];
    if (!where) {
        snprintf(flag, sizeof flag, "--%s", o->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        where = flag;
    }
    if (!value)
        return fg_error(FG_ERR_INVALID, "%s: missing value", where);
    return after(o, obj, where, set_text(o, obj, value, where));
}

fg_status fg_opts_set(const fg_opt *opts, int n, void *obj, const char *key, const char *value, const char *where)
{
    const fg_opt *o = fg_opts_find(opts, n, key);
    if (!o)
        return fg_error(FG_ERR_INVALID, "%s: unknown key '%s'", where ? where : "option", key);
    return fg_opt_set(o, obj, value, where);
}

/* ---- argv ---- */

static const fg_opt *find_in(const fg_opt_table *t, int nt, const char *key, void **obj)
{
    for (int i = 0; i < nt; i++) {
        const fg_opt *o = fg_opts_find(t[i].opts, t[i].n, key);
        if (o) {
            *obj = t[i].obj;
            return o;
        }
    }
    return NULL;
}

static fg_status add_pos(fg_opt_args *a, const char *arg)
{
    if (a->n_pos >= a->max_pos || !a->pos)
        return fg_error(FG_ERR_INVALID, "unexpected argument '%s'", arg);
    a->pos[a->n_pos++] = arg;
    return FG_OK;
}

fg_status fg_opts_parse_args(const fg_opt_table *tables, int n_tables, int argc, char **argv, fg_opt_args *a)
{
    a->n_pos = 0;
    a->help = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        fg_status st;
        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            if ((st = add_pos(a, arg)) != FG_OK)
                return st;
            continue;
        }
        if (!strcmp(arg, "--")) {
            only_pos = 1;
            continue;
        }
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            a->help = 1;
            return FG_OK;
        }
        if (arg[1] != '-')
            return fg_error(FG_ERR_INVALID, "unknown option %s (options are --name; --help lists them)", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        char key[KEY_MAX], where[KEY_MAX + 2];
        if (!norm_key(name, n, key))
            return fg_error(FG_ERR_INVALID, "bad option '%s'", arg);
        snprintf(where, sizeof where, "--%.*s", (int)n, name);
        void *obj = NULL;
        const fg_opt *o = find_in(tables, n_tables, key, &obj);
        if (!o)
            return fg_error(FG_ERR_INVALID, "unknown option %s (--help lists them)", where);
        const char *value = eq ? eq + 1 : NULL;
        if (!value && o->type == FG_OPT_BOOL) {
            /* a boolean alone, or followed by an explicit 0/1/true/false */
            if (i + 1 < argc && parse_bool(argv[i + 1]) >= 0)
                value = argv[++i];
            else
                value = "1";
        } else if (!value) {
            if (i + 1 >= argc)
                return fg_error(FG_ERR_INVALID, "%s: missing value", where);
            value = argv[++i];
        }
        if ((st = fg_opt_set(o, obj, value, where)) != FG_OK)
            return st;
    }
    return FG_OK;
}

/* ---- environment ---- */

fg_status fg_opts_apply_env(const fg_opt *opts, int n, void *obj, FILE *report)
{
    for (int i = 0; i < n; i++) {
        const fg_opt *o = &opts[i];
        if (!o->env)
            continue;
        const char *v = getenv(o->env);
        if (!v || !*v)
            continue;
        fg_status st = fg_opt_set(o, obj, v, o->env);
        if (st != FG_OK)
            return st;
        if (report)
            fprintf(report, "environment: %s=%s sets %s\n", o->env, v, o->name);
        FG_INFO("environment: %s=%s sets %s", o->env, v, o->name);
    }
    return FG_OK;
}

/* ---- text out ---- */

const char *fg_opt_format(const fg_opt *o, const void *obj, char *buf, size_t cap)
{
    const void *f = cfield_of(o, obj);
    switch (o->type) {
    case FG_OPT_INT: snprintf(buf, cap, "%d", *(const int *)f); break;
    case FG_OPT_BOOL: snprintf(buf, cap, "%s", *(const int *)f ? "true" : "false"); break;
    case FG_OPT_LONG: snprintf(buf, cap, "%ld", *(const long *)f); break;
    case FG_OPT_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case FG_OPT_SIZE: snprintf(buf, cap, "%zu", *(const size_t *)f); break;
    case FG_OPT_FLOAT: snprintf(buf, cap, "%.9g", (double)*(const float *)f); break;
    case FG_OPT_DOUBLE: snprintf(buf, cap, "%.17g", *(const double *)f); break;
    case FG_OPT_STR: snprintf(buf, cap, "%s", (const char *)f); break;
    case FG_OPT_ENUM: {
        int k = *(const int *)f, m = 0;
        while (o->choices && o->choices[m])
            m++;
        snprintf(buf, cap, "%s", k >= 0 && k < m ? o->choices[k] : "?");
        break;
    }
    }
    return buf;
}

int fg_opt_equal(const fg_opt *o, const void *a, const void *b)
{
    const void *x = cfield_of(o, a), *y = cfield_of(o, b);
    if (o->type == FG_OPT_STR)
        return strcmp((const char *)x, (const char *)y) == 0;
    return memcmp(x, y, o->size) == 0;
}

static void print_range(FILE *f, const fg_opt *o)
{
    if (o->type == FG_OPT_ENUM) {
        fprintf(f, " [");
        for (int i = 0; o->choices && o->choices[i]; i++)
            fprintf(f, "%s%s", i ? "|" : "", o->choices[i]);
        fprintf(f, "]");
        return;
    }
    if (o->type == FG_OPT_STR || o->type == FG_OPT_BOOL || (o->min == 0 && o->max == 0))
        return;
    if (o->max >= FG_OPT_INF)
        fprintf(f, " %s%.15g, inf)", o->min_excl ? "(" : "[", o->min);
    else
        fprintf(f, " %s%.15g, %.15g]", o->min_excl ? "(" : "[", o->min, o->max);
}

void fg_opts_print_help(FILE *f, const fg_opt *opts, int n, const void *defaults)
{
    for (int i = 0; i < n; i++) {
        const fg_opt *o = &opts[i];
        char flag[KEY_MAX + 2], def[96] = "";
        snprintf(flag, sizeof flag, "%s", o->name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        if (defaults) {
            char v[80];
            fg_opt_format(o, defaults, v, sizeof v);
            if (o->type == FG_OPT_STR)
                snprintf(def, sizeof def, "\"%.58s\"", v);
            else if (o->type == FG_OPT_FLOAT || o->type == FG_OPT_DOUBLE)
                snprintf(def, sizeof def, "%g",
                         o->type == FG_OPT_FLOAT ? (double)*(const float *)cfield_of(o, defaults)
                                                 : *(const double *)cfield_of(o, defaults));
            else
                snprintf(def, sizeof def, "%s", v);
        }
        fprintf(f, "  --%-20s %-12s %s", flag, def, o->help ? o->help : "");
        print_range(f, o);
        if (o->env)
            fprintf(f, " (env %s)", o->env);
        fputc('\n', f);
    }
}

/* ---- JSON ---- */

/* Line and column (1-based) of the top-level key `key` in JSON text, found by a
 * small scan that skips strings and nested values; jansson reports positions only
 * for syntax errors, not for the values of a parsed object. 0:0 when not found. */
static void key_position(const char *text, const char *key, int *line, int *col)
{
    int depth = 0, ln = 1, cl = 1;
    size_t klen = strlen(key);
    *line = *col = 0;
    for (const char *p = text; *p; p++, cl++) {
        if (*p == '\n') {
            ln++;
            cl = 0;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *s = p + 1, *q = s;
            while (*q && *q != '"') {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            const char *aft = *q ? q + 1 : q;
            while (*aft == ' ' || *aft == '\t' || *aft == '\r' || *aft == '\n')
                aft++;
            if (depth == 1 && *aft == ':' && (size_t)(q - s) == klen && !strncmp(s, key, klen)) {
                *line = ln;
                *col = cl;
                return;
            }
            cl += (int)(q - p);
            p = *q ? q : q - 1;
        }
    }
}

static fg_status apply_json_value(const fg_opt *o, void *obj, json_t *v, const char *where)
{
    fg_status st;
    switch (o->type) {
    case FG_OPT_STR:
    case FG_OPT_ENUM:
        if (!json_is_string(v))
            return fg_error(FG_ERR_INVALID, "%s: expected a string", where);
        st = set_text(o, obj, json_string_value(v), where);
        break;
    case FG_OPT_SIZE:
        if (json_is_string(v)) {
            st = set_text(o, obj, json_string_value(v), where);
            break;
        }
        /* fall through */
    default:
        if (o->type == FG_OPT_BOOL && json_is_boolean(v)) {
            *(int *)field_of(o, obj) = json_is_true(v) ? 1 : 0;
            st = FG_OK;
            break;
        }
        if (!json_is_number(v))
            return fg_error(FG_ERR_INVALID, "%s: expected a %s", where, o->type == FG_OPT_BOOL ? "boolean" : "number");
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            unsigned long long u = (unsigned long long)json_integer_value(v);
            st = store_number(o, obj, (double)u, &u, where);
        } else {
            st = store_number(o, obj, json_number_value(v), NULL, where);
        }
    }
    return after(o, obj, where, st);
}

fg_status fg_opts_load_json_text(const fg_opt *opts, int n, void *obj, const char *text, const char *name,
                                 int skip_unknown)
{
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", name, err.line, err.column, err.text);
    fg_status st = FG_OK;
    if (!json_is_object(root)) {
        st = fg_error(FG_ERR_FORMAT, "%s:1:1: expected a JSON object of options", name);
        goto out;
    }
    for (int pass = 0; pass < 2 && st == FG_OK; pass++) {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v)
        {
            const fg_opt *o = strchr(key, '-') ? NULL : fg_opts_find(opts, n, key);
            if (o && (pass == 0) != ((o->flags & FG_OPT_FIRST) != 0))
                continue;
            if (!o && (pass == 0 || skip_unknown))
                continue;
            int line, col;
            key_position(text, key, &line, &col);
            char where[1200];
            if (!o) {
                st = fg_error(FG_ERR_INVALID, "%s:%d:%d: unknown key '%s'", name, line, col, key);
                break;
            }
            snprintf(where, sizeof where, "%s:%d:%d: key '%s'", name, line, col, key);
            if ((st = apply_json_value(o, obj, v, where)) != FG_OK)
                break;
        }
    }
out:
    json_decref(root);
    return st;
}

char *fg_opts_to_json(const fg_opt *opts, int n, const void *obj)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    for (int i = 0; i < n; i++) {
        const fg_opt *o = &opts[i];
        const void *f = cfield_of(o, obj);
        json_t *v = NULL;
        char buf[128];
        switch (o->type) {
        case FG_OPT_INT: v = json_integer(*(const int *)f); break;
        case FG_OPT_BOOL: v = json_boolean(*(const int *)f); break;
        case FG_OPT_LONG: v = json_integer(*(const long *)f); break;
        case FG_OPT_U64: v = json_integer((json_int_t) * (const uint64_t *)f); break;
        case FG_OPT_SIZE: v = json_integer((json_int_t) * (const size_t *)f); break;
        case FG_OPT_FLOAT: v = json_real(*(const float *)f); break;
        case FG_OPT_DOUBLE: v = json_real(*(const double *)f); break;
        case FG_OPT_STR: v = json_string((const char *)f); break;
        case FG_OPT_ENUM: v = json_string(fg_opt_format(o, obj, buf, sizeof buf)); break;
        }
        if (!v || json_object_set_new(root, o->name, v) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s)
        return NULL;
    char *out = fg_strdup(s);
    free(s); /* jansson's allocator */
    return out;
}
