/* rules.c: the editable rules file (parse with file:line:col errors) and applying it to
 * a document: PCRE2 (JIT) substitutions, multi-line line filters, document rejects,
 * HTML entity decoding, utf8proc NFC/NFKC normalization, blank-line trimming.
 * Left out: per-format rule sections (every rule applies to every document). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#include "data_impl.h"

static const char *q_names[FG_Q_COUNT] = {
    "min_words",        "max_words",          "min_mean_word_len", "max_mean_word_len", "max_symbol_ratio",
    "max_bullet_lines", "max_ellipsis_lines", "min_alpha_words",   "max_dup_lines",     "max_dup_line_chars",
    "max_top_2gram",    "max_top_3gram",      "max_top_4gram",     "max_dup_5gram",     "max_dup_6gram",
    "max_dup_7gram",    "max_dup_8gram",      "max_dup_9gram",     "max_dup_10gram",    "min_stopwords",
    "max_dup_paras",    "max_dup_para_chars"};

const char *fg_data_quality_name(fg_quality_id q)
{
    return (q >= 0 && q < FG_Q_COUNT) ? q_names[q] : "?";
}

void fg_data_rules_delete(fg_data_rules *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_rules; i++) {
        pcre2_code_free(r->rules[i].re);
        fg_free(r->rules[i].repl);
    }
    fg_free(r->rules);
    fg_free(r);
}

int fg_data_rules_count(const fg_data_rules *r)
{
    return r->n_rules;
}
const char *fg_data_rules_name(const fg_data_rules *r, int i)
{
    return r->rules[i].name;
}
bool fg_data_rules_utf8_reject(const fg_data_rules *r)
{
    return r->utf8_reject;
}
void fg_data_rules_thresholds(const fg_data_rules *r, double *accept, double *reject)
{
    *accept = r->accept;
    *reject = r->reject;
}

/* ---- parsing ---- */
typedef struct parser {
    const char *name;
    int line;
    const char *line_start;
    const char *p, *end; /* cursor within the current line */
} parser;

static fg_status perr(const parser *ps, const char *at, const char *what)
{
    return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", ps->name, ps->line, (int)(at - ps->line_start) + 1, what);
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
        ps->p++;
}

/* Next whitespace-delimited token into out; false at end of line. */
static bool token(parser *ps, char *out, size_t cap, const char **at)
{
    skip_ws(ps);
    *at = ps->p;
    if (ps->p >= ps->end)
        return false;
    size_t k = 0;
    while (ps->p < ps->end && *ps->p != ' ' && *ps->p != '\t') {
        if (k + 1 < cap)
            out[k++] = *ps->p;
        ps->p++;
    }
    out[k] = 0;
    return true;
}

/* Reads a delimited field starting at ps->p (which is just after the opening delimiter)
 * up to the next unescaped delim. The field is returned raw (escapes kept) in *s,*n. */
static bool delimited(parser *ps, char delim, const char **s, size_t *n)
{
    const char *st = ps->p;
    while (ps->p < ps->end) {
        if (*ps->p == '\\' && ps->p + 1 < ps->end) {
            ps->p += 2;
            continue;
        }
        if (*ps->p == delim) {
            *s = st;
            *n = (size_t)(ps->p - st);
            ps->p++;
            return true;
        }
        ps->p++;
    }
    return false;
}

static fg_status compile_re(parser *ps, const char *at, const char *pat, size_t n, const char *flags, size_t nflags,
                            bool multiline, pcre2_code **out)
{
    uint32_t opt = PCRE2_UTF;
    if (multiline)
        opt |= PCRE2_MULTILINE;
    for (size_t i = 0; i < nflags; i++) {
        switch (flags[i]) {
        case 'i': opt |= PCRE2_CASELESS; break;
        case 's': opt |= PCRE2_DOTALL; break;
        case 'm': opt |= PCRE2_MULTILINE; break;
        case 'x': opt |= PCRE2_EXTENDED; break;
        case 'u': opt |= PCRE2_UCP; break;
        case 'g': break; /* substitutions are always global */
        default: return perr(ps, at, "unknown regex flag (known: i s m x u g)");
        }
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, opt, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        char m[400];
        snprintf(m, sizeof m, "regex error at pattern offset %zu: %s", (size_t)eo, (const char *)msg);
        return perr(ps, at + 1 + eo, m);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is unavailable */
    *out = re;
    return FG_OK;
}

/* Records the pattern's required code unit when it is ASCII (both cases, since inline
 * (?i) may make it caseless): a memchr then skips documents the rule cannot match. */
static void set_required(rule *ru)
{
    uint32_t type = 0, cu = 0;
    ru->req[0] = ru->req[1] = -1;
    if (pcre2_pattern_info(ru->re, PCRE2_INFO_LASTCODETYPE, &type) != 0 || type != 1 ||
        pcre2_pattern_info(ru->re, PCRE2_INFO_LASTCODEUNIT, &cu) != 0 || cu >= 0x80)
        return;
    ru->req[0] = (int)cu;
    ru->req[1] = isalpha((int)cu) ? (islower((int)cu) ? toupper((int)cu) : tolower((int)cu)) : (int)cu;
}

/* false when the rule's required byte is absent from s[0..n): no match is possible. */
static bool may_match(const rule *ru, const char *s, size_t n)
{
    if (ru->req[0] < 0)
        return true;
    return memchr(s, ru->req[0], n) || (ru->req[1] != ru->req[0] && memchr(s, ru->req[1], n));
}

static fg_status add_rule(fg_data_rules *r, const rule *ru)
{
    rule *nr = fg_realloc(r->rules, (size_t)(r->n_rules + 1) * sizeof *nr);
    if (!nr)
        return FG_ERR_NOMEM;
    r->rules = nr;
    r->rules[r->n_rules++] = *ru;
    return FG_OK;
}

bool fg_data_rules_compat_datatrove(const fg_data_rules *r)
{
    return r->compat_datatrove;
}

/* Defaults: Gopher's thresholds as soft limits, somewhat looser hard limits. */
static void set_defaults(fg_data_rules *r)
{
    r->accept = 0.8;
    r->reject = 0.4;
    static const double d[FG_Q_COUNT][3] = {
        {50, 20, 1},       {100000, 200000, 1}, {3, 2, 0.6},       {10, 14, 0.6},     {0.1, 0.3, 0.6},
        {0.9, 1.0, 0.6},   {0.3, 0.6, 0.6},     {0.8, 0.5, 0.6},   {0.3, 0.6, 0.6},   {0.2, 0.5, 0.6},
        {0.2, 0.4, 0.3},   {0.18, 0.36, 0.3},   {0.16, 0.32, 0.3}, {0.15, 0.4, 0.3},  {0.14, 0.38, 0.3},
        {0.13, 0.36, 0.3}, {0.12, 0.34, 0.3},   {0.11, 0.32, 0.3}, {0.10, 0.30, 0.3}, {2, 0, 0.6},
        {0.3, 0.6, 0.6},   {0.2, 0.5, 0.6}};
    for (int i = 0; i < FG_Q_COUNT; i++) {
        r->q[i].soft = d[i][0];
        r->q[i].hard = d[i][1];
        r->q[i].weight = d[i][2];
        r->q[i].on = false; /* enabled by `quality` lines */
    }
}

static fg_status parse_line(fg_data_rules *r, parser *ps)
{
    char kw[32], name[64], tmp[64];
    const char *at, *nat;
    if (!token(ps, kw, sizeof kw, &at) || kw[0] == '#')
        return FG_OK;
    if (!strcmp(kw, "normalize")) {
        if (!token(ps, tmp, sizeof tmp, &nat))
            return perr(ps, nat, "normalize needs NFC, NFKC or none");
        if (!strcasecmp(tmp, "NFC"))
            r->normalize = 1;
        else if (!strcasecmp(tmp, "NFKC"))
            r->normalize = 2;
        else if (!strcasecmp(tmp, "none"))
            r->normalize = 0;
        else
            return perr(ps, nat, "normalize needs NFC, NFKC or none");
        return FG_OK;
    }
    if (!strcmp(kw, "utf8")) {
        if (!token(ps, tmp, sizeof tmp, &nat) || (strcmp(tmp, "repair") && strcmp(tmp, "reject")))
            return perr(ps, nat, "utf8 needs 'repair' or 'reject'");
        r->utf8_reject = !strcmp(tmp, "reject");
        return FG_OK;
    }
    if (!strcmp(kw, "compat")) {
        if (!token(ps, tmp, sizeof tmp, &nat) || strcmp(tmp, "datatrove"))
            return perr(ps, nat, "compat needs 'datatrove'");
        r->compat_datatrove = true;
        return FG_OK;
    }
    if (!strcmp(kw, "threshold")) {
        char a[32], b[32];
        const char *bat;
        if (!token(ps, a, sizeof a, &nat) || !token(ps, b, sizeof b, &bat))
            return perr(ps, nat, "threshold needs ACCEPT REJECT scores");
        char *e1, *e2;
        double acc = strtod(a, &e1), rej = strtod(b, &e2);
        if (*e1 || *e2 || acc < rej || acc > 1 || rej < 0)
            return perr(ps, nat, "threshold needs numbers with 0 <= REJECT <= ACCEPT <= 1");
        r->accept = acc;
        r->reject = rej;
        return FG_OK;
    }
    if (!strcmp(kw, "quality")) {
        if (!token(ps, name, sizeof name, &nat))
            return perr(ps, nat, "quality needs NAME SOFT HARD [WEIGHT]");
        int q = -1;
        for (int i = 0; i < FG_Q_COUNT; i++)
            if (!strcmp(name, q_names[i]))
                q = i;
        if (q < 0)
            return perr(ps, nat, "unknown quality heuristic (see docs/DATA.md for the list)");
        char v[3][32];
        int nv = 0;
        const char *vat = nat;
        while (nv < 3 && token(ps, v[nv], sizeof v[nv], &vat))
            nv++;
        if (nv < 2)
            return perr(ps, vat, "quality needs NAME SOFT HARD [WEIGHT]");
        double x[3] = {0, 0, r->q[q].weight};
        for (int i = 0; i < nv; i++) {
            char *e;
            x[i] = strtod(v[i], &e);
            if (*e)
                return perr(ps, vat, "quality limits must be numbers");
        }
        bool is_min = !strncmp(name, "min_", 4);
        if (is_min ? x[1] > x[0] : x[1] < x[0])
            return perr(ps, vat,
                        is_min ? "a min_ heuristic needs HARD <= SOFT" : "a max_ heuristic needs HARD >= SOFT");
        r->q[q] = (qlimit){x[0], x[1], x[2], true};
        return FG_OK;
    }
    if (!strcmp(kw, "stopwords")) {
        if (r->n_stoplists >= FG_MAX_STOPLISTS)
            return perr(ps, at, "too many stopwords lists (16 at most)");
        int L = r->n_stoplists;
        if (!token(ps, r->stop_lang[L], sizeof r->stop_lang[L], &nat))
            return perr(ps, nat, "stopwords needs LANG word word ...");
        char w[64];
        while (token(ps, w, sizeof w, &nat)) {
            if (r->n_stop[L] >= FG_MAX_STOPWORDS)
                return perr(ps, nat, "too many stop words in one list (64 at most)");
            uint64_t h = fg_hash_bytes(w, strlen(w), 0x5707) | 1;
            r->stop_hash[L][r->n_stop[L]++] = h;
            size_t i = (size_t)(h >> 20) & (FG_STOP_SLOTS - 1);
            while (r->stop_key[i] && r->stop_key[i] != h)
                i = (i + 1) & (FG_STOP_SLOTS - 1);
            r->stop_key[i] = h;
            r->stop_mask[i] |= (uint16_t)(1u << L);
        }
        r->n_stoplists++;
        return FG_OK;
    }
    rule ru;
    memset(&ru, 0, sizeof ru);
    ru.line = ps->line;
    if (!strcmp(kw, "sub"))
        ru.kind = RULE_SUB;
    else if (!strcmp(kw, "drop_line"))
        ru.kind = RULE_DROP_LINE;
    else if (!strcmp(kw, "reject"))
        ru.kind = RULE_REJECT;
    else if (!strcmp(kw, "html_entities"))
        ru.kind = RULE_ENTITIES;
    else
        return perr(
            ps, at,
            "unknown directive (known: sub drop_line reject html_entities normalize utf8 compat quality threshold "
            "stopwords)");
    if (!token(ps, ru.name, sizeof ru.name, &nat))
        return perr(ps, nat, "rule needs a NAME");
    for (int i = 0; i < r->n_rules; i++)
        if (!strcmp(r->rules[i].name, ru.name))
            return perr(ps, nat, "duplicate rule name");
    if (ru.kind == RULE_ENTITIES)
        return add_rule(r, &ru);
    skip_ws(ps);
    const char *rat = ps->p;
    if (ru.kind == RULE_SUB) {
        if (ps->p + 1 >= ps->end || *ps->p != 's')
            return perr(ps, rat, "sub needs s/REGEX/REPLACEMENT/FLAGS (any delimiter after 's')");
        ps->p++;
    }
    if (ps->p >= ps->end)
        return perr(ps, rat, "missing /REGEX/");
    char delim = *ps->p++;
    if (isalnum((unsigned char)delim) || delim == '\\' || delim == ' ')
        return perr(ps, rat, "the regex delimiter must be punctuation, e.g. / or |");
    const char *pat, *rep = "";
    size_t npat, nrep = 0;
    if (!delimited(ps, delim, &pat, &npat))
        return perr(ps, rat, "unterminated regex (no closing delimiter)");
    if (ru.kind == RULE_SUB && !delimited(ps, delim, &rep, &nrep))
        return perr(ps, rat, "unterminated replacement (no closing delimiter)");
    const char *flags = ps->p;
    while (ps->p < ps->end && *ps->p != ' ' && *ps->p != '\t')
        ps->p++;
    fg_status st = compile_re(ps, rat + (ru.kind == RULE_SUB ? 1 : 0), pat, npat, flags, (size_t)(ps->p - flags),
                              ru.kind == RULE_DROP_LINE, &ru.re);
    if (st != FG_OK)
        return st;
    set_required(&ru);
    ru.repl = fg_malloc(nrep + 1);
    if (!ru.repl) {
        pcre2_code_free(ru.re);
        return FG_ERR_NOMEM;
    }
    memcpy(ru.repl, rep, nrep);
    ru.repl[nrep] = 0;
    ru.repl_len = nrep;
    while (token(ps, tmp, sizeof tmp, &nat)) {
        if (tmp[0] == '#')
            break;
        if (ru.kind == RULE_DROP_LINE && !strncmp(tmp, "max_words=", 10)) {
            char *e;
            long v = strtol(tmp + 10, &e, 10);
            if (*e || v < 0 || v > 1000000)
                st = perr(ps, nat, "max_words needs a non-negative integer");
            ru.max_words = (int)v;
        } else {
            st = perr(ps, nat, "unexpected text after the rule");
        }
        if (st != FG_OK)
            break;
    }
    if (st == FG_OK)
        st = add_rule(r, &ru);
    if (st != FG_OK) {
        pcre2_code_free(ru.re);
        fg_free(ru.repl);
    }
    return st;
}

fg_status fg_data_rules_parse(fg_data_rules **out, const char *text, size_t len, const char *name)
{
    *out = NULL;
    fg_data_rules *r = fg_calloc(1, sizeof *r);
    if (!r)
        return FG_ERR_NOMEM;
    set_defaults(r);
    parser ps = {name, 0, text, text, text};
    const char *p = text, *end = text + len;
    fg_status st = FG_OK;
    while (p < end && st == FG_OK) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        ps.line++;
        ps.line_start = ps.p = p;
        ps.end = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;
        st = parse_line(r, &ps);
        p = eol + 1;
    }
    if (st != FG_OK) {
        fg_data_rules_delete(r);
        return st;
    }
    *out = r;
    return FG_OK;
}

fg_status fg_data_rules_load(fg_data_rules **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open rules file: %s", path, strerror(errno));
    sbuf b = {0};
    char chunk[8192];
    size_t k;
    fg_status st = FG_OK;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((st = sbuf_put(&b, chunk, k)) != FG_OK)
            break;
    fclose(f);
    if (st == FG_OK)
        st = fg_data_rules_parse(out, b.p ? b.p : "", b.n, path);
    sbuf_free(&b);
    return st;
}

/* ---- scratch ---- */
fg_data_scratch *fg_data_scratch_new(const fg_data_rules *r)
{
    fg_data_scratch *s = fg_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(64, NULL);
    if (!s->md) {
        fg_free(s);
        fg_error(FG_ERR_NOMEM, "pcre2 match data");
        return NULL;
    }
    return s;
}

void fg_data_scratch_delete(fg_data_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    sbuf_free(&s->a);
    sbuf_free(&s->b);
    fg_free(s->u32);
    fg_free(s->w_off);
    fg_free(s->w_len);
    fg_free(s->w_hash);
    fg_free(s->w_pre);
    fg_free(s->set_key);
    fg_free(s);
}

/* ---- applying ---- */
/* The buffer of s that does not hold cur. */
static sbuf *other(fg_data_scratch *s, const char *cur)
{
    return cur == s->a.p ? &s->b : &s->a;
}

static fg_status apply_sub(const rule *ru, fg_data_scratch *s, const char **cur, size_t *n, bool *limit)
{
    if (!may_match(ru, *cur, *n))
        return FG_OK;
    int rc = pcre2_match(ru->re, (PCRE2_SPTR)*cur, *n, 0, PCRE2_NO_UTF_CHECK, s->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return FG_OK;
    if (rc < 0) {
        *limit = true;
        return FG_OK;
    }
    sbuf *o = other(s, *cur);
    size_t want = *n + *n / 4 + 64;
    for (int tries = 0; tries < 4; tries++) {
        o->n = 0;
        if (sbuf_reserve(o, want) != FG_OK)
            return FG_ERR_NOMEM;
        PCRE2_SIZE olen = o->cap - 1;
        rc = pcre2_substitute(ru->re, (PCRE2_SPTR)*cur, *n, 0,
                              PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_SUBSTITUTE_EXTENDED |
                                  PCRE2_NO_UTF_CHECK,
                              s->md, NULL, (PCRE2_SPTR)ru->repl, ru->repl_len, (PCRE2_UCHAR *)o->p, &olen);
        if (rc == PCRE2_ERROR_NOMEMORY) {
            want = olen + 64;
            continue;
        }
        if (rc < 0) {
            *limit = true;
            return FG_OK;
        }
        o->n = olen;
        o->p[olen] = 0;
        *cur = o->p;
        *n = olen;
        return FG_OK;
    }
    *limit = true;
    return FG_OK;
}

#include "html_entities.h"

static int entity_cmp(const void *key, const void *elem)
{
    const char *k = key;
    const char *name = *(const char *const *)elem; /* the first member of a table row */
    return strcmp(k, name);
}

/* Code points of the named reference name[0..n), or false when it is not one. */
bool fg_data_html_entity(const char *name, size_t n, uint32_t *cp, uint32_t *cp2)
{
    char k[FG_HTML_ENTITY_MAX_NAME + 1];
    if (n == 0 || n > FG_HTML_ENTITY_MAX_NAME)
        return false;
    memcpy(k, name, n);
    k[n] = 0;
    const void *hit = bsearch(k, fg_html_entities, FG_HTML_N_ENTITIES, sizeof fg_html_entities[0], entity_cmp);
    if (!hit)
        return false;
    size_t i = (size_t)((const char *)hit - (const char *)fg_html_entities) / sizeof fg_html_entities[0];
    *cp = fg_html_entities[i].cp;
    *cp2 = fg_html_entities[i].cp2;
    return true;
}

/* Decodes &name; (the whole HTML5 table) &#NNN; &#xHH; (invalid code points become
 * U+FFFD). A few two-code-point references grow (&nGt; is 5 bytes, its UTF-8 6), never
 * by more than 2x. */
static fg_status apply_entities(fg_data_scratch *s, const char **cur, size_t *n)
{
    const char *in = *cur;
    if (!memchr(in, '&', *n))
        return FG_OK;
    sbuf *o = other(s, in);
    o->n = 0;
    if (sbuf_reserve(o, 2 * *n + 8) != FG_OK)
        return FG_ERR_NOMEM;
    size_t i = 0, len = *n;
    char *w = o->p;
    while (i < len) {
        const char *amp = memchr(in + i, '&', len - i);
        size_t upto = amp ? (size_t)(amp - in) : len;
        memcpy(w, in + i, upto - i);
        w += upto - i;
        i = upto;
        if (!amp)
            break;
        size_t j = i + 1;
        while (j < len && j - i < FG_HTML_ENTITY_MAX_NAME + 2 && in[j] != ';' &&
               (isalnum((unsigned char)in[j]) || in[j] == '#'))
            j++;
        uint32_t cp = 0, cp2 = 0;
        bool ok = false;
        if (j < len && in[j] == ';' && j > i + 1) {
            if (in[i + 1] == '#') {
                char num[16];
                size_t k = j - i - 2;
                if (k > 0 && k < sizeof num) {
                    memcpy(num, in + i + 2, k);
                    num[k] = 0;
                    char *e;
                    unsigned long v =
                        (num[0] == 'x' || num[0] == 'X') ? strtoul(num + 1, &e, 16) : strtoul(num, &e, 10);
                    if (!*e && e != num) {
                        cp = (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) ? 0xFFFD : (uint32_t)v;
                        ok = true;
                    }
                }
            } else {
                ok = fg_data_html_entity(in + i + 1, j - i - 1, &cp, &cp2);
            }
        }
        if (ok) {
            if (cp == 0xA0)
                cp = ' '; /* &nbsp; as a space, as before: the spaces rule collapses it */
            w += utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)w);
            if (cp2)
                w += utf8proc_encode_char((utf8proc_int32_t)cp2, (utf8proc_uint8_t *)w);
            i = j + 1;
        } else {
            *w++ = '&';
            i++;
        }
    }
    o->n = (size_t)(w - o->p);
    o->p[o->n] = 0;
    *cur = o->p;
    *n = o->n;
    return FG_OK;
}

static int count_words(const char *s, size_t n)
{
    int w = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v';
        if (!sp && !in)
            w++;
        in = !sp;
    }
    return w;
}

/* Applies all drop_line rules: each regex is run over the whole text (^/$ at line
 * boundaries); a match drops the line where it starts (if that line has at most
 * max_words words). Kept lines are copied in order. */
static fg_status apply_line_rules(const fg_data_rules *r, fg_data_scratch *s, const char **cur, size_t *n,
                                  uint64_t *line_drops, bool *limit)
{
    const char *t = *cur;
    size_t len = *n;
    /* line starts in s->w_off (reused; word spans are computed later) */
    size_t n_lines = 1;
    for (const char *q = t; (q = memchr(q, '\n', (size_t)(t + len - q))) != NULL; q++)
        n_lines++;
    if (fg_data_scratch_grow_words(s, n_lines + 1) != FG_OK)
        return FG_ERR_NOMEM;
    uint32_t *start = s->w_off, *drop = s->w_len; /* drop[i]: 0 keep, else 1 + rule index */
    size_t li = 0;
    start[li++] = 0;
    for (size_t i = 0; i < len; i++)
        if (t[i] == '\n')
            start[li++] = (uint32_t)(i + 1);
    start[n_lines] = (uint32_t)len + 1;
    memset(drop, 0, n_lines * sizeof *drop);
    bool any = false;
    for (int ri = 0; ri < r->n_rules; ri++) {
        const rule *ru = &r->rules[ri];
        if (ru->kind != RULE_DROP_LINE || !may_match(ru, t, len))
            continue;
        size_t off = 0, line = 0;
        while (off <= len) {
            int rc = pcre2_match(ru->re, (PCRE2_SPTR)t, len, off, PCRE2_NO_UTF_CHECK, s->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0) {
                *limit = true;
                break;
            }
            size_t m = pcre2_get_ovector_pointer(s->md)[0];
            while (start[line + 1] <= m)
                line++;
            size_t ls = start[line], le = start[line + 1] - 1;
            if (!drop[line] && (ru->max_words == 0 || count_words(t + ls, le - ls) <= ru->max_words)) {
                drop[line] = (uint32_t)ri + 1;
                if (line_drops)
                    line_drops[ri]++;
                any = true;
            }
            off = start[line + 1]; /* next line */
            line++;
            if (line >= n_lines)
                break;
        }
    }
    if (!any)
        return FG_OK;
    sbuf *o = other(s, t);
    o->n = 0;
    if (sbuf_reserve(o, len) != FG_OK)
        return FG_ERR_NOMEM;
    for (size_t l = 0; l < n_lines; l++) {
        if (drop[l])
            continue;
        size_t ls = start[l], le = start[l + 1] - 1;
        memcpy(o->p + o->n, t + ls, le - ls);
        o->n += le - ls;
        if (l + 1 < n_lines)
            o->p[o->n++] = '\n';
    }
    o->p[o->n] = 0;
    *cur = o->p;
    *n = o->n;
    return FG_OK;
}

/* True when every code point is in a range that is NFC-stable on its own and cannot
 * combine with a neighbour (no combining marks, no Hangul jamo, no singletons): such
 * text is already NFC. Conservative: false sends the text through utf8proc. */
static bool nfc_quick(const unsigned char *t, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = t[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k;
        if (c < 0xE0) {
            cp = ((uint32_t)(c & 0x1F) << 6) | (t[i + 1] & 0x3F);
            k = 2;
        } else if (c < 0xF0) {
            cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(t[i + 1] & 0x3F) << 6) | (t[i + 2] & 0x3F);
            k = 3;
        } else {
            cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(t[i + 1] & 0x3F) << 12) |
                 ((uint32_t)(t[i + 2] & 0x3F) << 6) | (t[i + 3] & 0x3F);
            k = 4;
        }
        bool ok = cp < 0x300 || (cp >= 0x400 && cp <= 0x482) || (cp >= 0x48A && cp <= 0x4FF) ||
                  (cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E) || (cp >= 0x20A0 && cp <= 0x20C0) ||
                  (cp >= 0x3001 && cp <= 0x3029) || (cp >= 0x3030 && cp <= 0x3098) || (cp >= 0x309B && cp <= 0x30FF) ||
                  (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xFF01 && cp <= 0xFF9D) ||
                  cp == 0xFFFD || (cp >= 0x1F300 && cp <= 0x1FAFF);
        if (!ok)
            return false;
        i += (size_t)k;
    }
    return true;
}

static fg_status apply_normalize(int mode, fg_data_scratch *s, const char **cur, size_t *n)
{
    const unsigned char *t = (const unsigned char *)*cur;
    size_t len = *n, i = 0;
    while (i < len && t[i] < 0x80)
        i++;
    if (i == len)
        return FG_OK; /* ASCII is invariant under NFC and NFKC */
    if (mode == 1 && nfc_quick(t + i, len - i))
        return FG_OK;
    utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE | (mode == 2 ? UTF8PROC_COMPAT : 0);
    for (int tries = 0; tries < 2; tries++) {
        utf8proc_ssize_t need =
            utf8proc_decompose(t, (utf8proc_ssize_t)len, (utf8proc_int32_t *)s->u32, (utf8proc_ssize_t)s->u32_cap, opt);
        if (need < 0)
            return FG_OK; /* invalid input cannot happen after repair; leave text unchanged */
        if ((size_t)need > s->u32_cap) {
            size_t cap = (size_t)need + 1024;
            int32_t *u = fg_realloc(s->u32, cap * sizeof *u);
            if (!u)
                return FG_ERR_NOMEM;
            s->u32 = u;
            s->u32_cap = cap;
            continue;
        }
        /* utf8proc_reencode composes in place and writes UTF-8 over the same buffer. */
        utf8proc_ssize_t nb = utf8proc_reencode((utf8proc_int32_t *)s->u32, need, opt);
        if (nb < 0)
            return FG_OK;
        sbuf *o = other(s, *cur);
        o->n = 0;
        if (sbuf_put(o, s->u32, (size_t)nb) != FG_OK)
            return FG_ERR_NOMEM;
        *cur = o->p;
        *n = o->n;
        return FG_OK;
    }
    return FG_OK;
}

/* Trims leading/trailing whitespace on the document and runs of more than one blank line. */
static fg_status trim_blank(fg_data_scratch *s, const char **cur, size_t *n)
{
    const char *t = *cur;
    size_t b = 0, e = *n;
    while (b < e && (t[b] == ' ' || t[b] == '\n' || t[b] == '\t' || t[b] == '\r'))
        b++;
    while (e > b && (t[e - 1] == ' ' || t[e - 1] == '\n' || t[e - 1] == '\t' || t[e - 1] == '\r'))
        e--;
    sbuf *o = other(s, t);
    o->n = 0;
    if (sbuf_reserve(o, e - b) != FG_OK)
        return FG_ERR_NOMEM;
    int nl = 0;
    for (size_t i = b; i < e; i++) {
        char c = t[i];
        if (c == '\n') {
            /* drop trailing spaces of the line */
            while (o->n > 0 && (o->p[o->n - 1] == ' ' || o->p[o->n - 1] == '\t' || o->p[o->n - 1] == '\r'))
                o->n--;
            if (++nl > 2)
                continue;
        } else if (nl && (c == ' ' || c == '\t' || c == '\r')) {
            continue; /* leading spaces of a line */
        } else {
            nl = 0;
        }
        o->p[o->n++] = c;
    }
    o->p[o->n] = 0;
    *cur = o->p;
    *n = o->n;
    return FG_OK;
}

fg_status fg_data_rules_apply(const fg_data_rules *r, fg_data_scratch *s, const char *text, size_t len,
                              const char **out, size_t *out_len, const char **reject_rule, uint64_t *line_drops)
{
    const char *cur = text;
    size_t n = len;
    bool limit = false;
    fg_status st = FG_OK;
    *reject_rule = NULL;
    bool lines_done = false;
    for (int i = 0; i < r->n_rules && st == FG_OK; i++) {
        const rule *ru = &r->rules[i];
        switch (ru->kind) {
        case RULE_SUB: st = apply_sub(ru, s, &cur, &n, &limit); break;
        case RULE_ENTITIES: st = apply_entities(s, &cur, &n); break;
        case RULE_REJECT: {
            if (!may_match(ru, cur, n))
                break;
            int rc = pcre2_match(ru->re, (PCRE2_SPTR)cur, n, 0, PCRE2_NO_UTF_CHECK, s->md, NULL);
            if (rc >= 0 && !*reject_rule)
                *reject_rule = ru->name;
            else if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
                limit = true;
            break;
        }
        case RULE_DROP_LINE:
            /* All line rules run together at the first one's position in the file. */
            if (!lines_done)
                st = apply_line_rules(r, s, &cur, &n, line_drops, &limit);
            lines_done = true;
            break;
        }
        if (*reject_rule)
            break;
    }
    if (st == FG_OK && !*reject_rule && r->normalize)
        st = apply_normalize(r->normalize, s, &cur, &n);
    if (st == FG_OK && !*reject_rule)
        st = trim_blank(s, &cur, &n);
    if (st != FG_OK)
        return fg_error(st, "rules: out of memory cleaning a %zu-byte document", len);
    if (limit && !*reject_rule)
        *reject_rule = "regex_limit";
    *out = cur;
    *out_len = n;
    return FG_OK;
}
