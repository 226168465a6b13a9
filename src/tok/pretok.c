/* pretok.c: pre-tokenization (splitting text into the words BPE runs on): a
 * hand-written scanner for the GPT-2 and cl100k patterns used by encode, and the PCRE2
 * reference it is tested against. Character classes come from utf8proc (Unicode
 * general categories L*, N*; White_Space for \s), tabulated per tokenizer.
 * Invalid UTF-8: bytes that do not start a well-formed character (RFC 3629: no
 * overlongs, surrogates or code points above U+10FFFF) are never part of a match,
 * exactly as PCRE2_MATCH_INVALID_UTF treats them: a maximal run of them is one piece,
 * and they end a whitespace run the way the end of the text does. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_impl.h"

static const char *const PAT_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const PAT_CL100K = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *fg_tok_pattern_regex(fg_tok_pattern pat)
{
    return pat == FG_TOK_PATTERN_CL100K ? PAT_CL100K : PAT_GPT2;
}

static int class_of_cp(uint32_t cp)
{
    switch (cp) { /* Unicode White_Space, which is what \s means in PCRE2 with UCP */
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return CC_SPACE;
    default: break;
    }
    if (cp >= 0x2000 && cp <= 0x200A)
        return CC_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CC_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CC_NUMBER;
    default: return CC_OTHER;
    }
}

fg_status tok_class_table_init(fg_tokenizer *tok)
{
    tok->cls = fg_malloc(TOK_CLASS_TABLE_CPS);
    if (!tok->cls)
        return FG_ERR_NOMEM;
    for (uint32_t cp = 0; cp < TOK_CLASS_TABLE_CPS; cp++)
        tok->cls[cp] = (uint8_t)class_of_cp(cp);
    return FG_OK;
}

fg_status tok_regex_init(fg_tokenizer *tok)
{
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)fg_tok_pattern_regex(tok->pattern), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &eoff, NULL);
    if (!re)
        return fg_error(FG_ERR_INTERNAL, "pre-tokenizer regex does not compile (PCRE2 error %d at %zu)", err,
                        (size_t)eoff);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is used when JIT is unavailable */
    tok->re_code = re;
    return FG_OK;
}

void tok_regex_free(fg_tokenizer *tok)
{
    pcre2_code_free(tok->re_code);
    tok->re_code = NULL;
}

/* Class of the character at t[i] (i < len) and its length in bytes (1 when invalid). */
static inline int cls_at(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t i, size_t *n)
{
    uint8_t c = t[i];
    if (c < 0x80) {
        *n = 1;
        return tok->cls[c];
    }
    size_t rem = len - i;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        if (rem < 2 || (t[i + 1] & 0xC0) != 0x80)
            goto invalid;
        cp = ((uint32_t)(c & 0x1F) << 6) | (t[i + 1] & 0x3F);
        *n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (rem < 3)
            goto invalid;
        uint8_t c1 = t[i + 1];
        uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (c1 < lo || c1 > hi || (t[i + 2] & 0xC0) != 0x80)
            goto invalid;
        cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(c1 & 0x3F) << 6) | (t[i + 2] & 0x3F);
        *n = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (rem < 4)
            goto invalid;
        uint8_t c1 = t[i + 1];
        uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (c1 < lo || c1 > hi || (t[i + 2] & 0xC0) != 0x80 || (t[i + 3] & 0xC0) != 0x80)
            goto invalid;
        cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(c1 & 0x3F) << 12) | ((uint32_t)(t[i + 2] & 0x3F) << 6) |
             (t[i + 3] & 0x3F);
        *n = 4;
    } else {
        goto invalid;
    }
    return cp < TOK_CLASS_TABLE_CPS ? tok->cls[cp] : class_of_cp(cp);
invalid:
    *n = 1;
    return CC_INVALID;
}

/* End of the run of characters of class `cls` starting at i. */
static inline size_t run_end(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t i, int cls)
{
    size_t n;
    while (i < len && cls_at(tok, t, len, i, &n) == cls)
        i += n;
    return i;
}

/* Whitespace run at pos: \s+(?!\S) then \s+ (shared by both patterns). */
static size_t space_tail(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t pos)
{
    size_t i = pos, last = pos, n;
    while (i < len && cls_at(tok, t, len, i, &n) == CC_SPACE) {
        last = i;
        i += n;
    }
    if (i == len || cls_at(tok, t, len, i, &n) == CC_INVALID)
        return i; /* nothing non-space follows */
    return last > pos ? last : i;
}

static size_t scan_gpt2(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t pos)
{
    size_t n;
    int c = cls_at(tok, t, len, pos, &n);
    if (c == CC_INVALID)
        return run_end(tok, t, len, pos, CC_INVALID);
    if (t[pos] == '\'' && pos + 1 < len) {
        uint8_t x = t[pos + 1];
        if (x == 's' || x == 't' || x == 'm' || x == 'd')
            return pos + 2;
        if (pos + 2 < len) {
            uint8_t y = t[pos + 2];
            if ((x == 'r' && y == 'e') || (x == 'v' && y == 'e') || (x == 'l' && y == 'l'))
                return pos + 3;
        }
    }
    if (t[pos] == ' ' && pos + 1 < len) {
        size_t n2;
        int c2 = cls_at(tok, t, len, pos + 1, &n2);
        if (c2 == CC_LETTER || c2 == CC_NUMBER || c2 == CC_OTHER)
            return run_end(tok, t, len, pos + 1, c2);
    }
    if (c != CC_SPACE)
        return run_end(tok, t, len, pos, c);
    return space_tail(tok, t, len, pos);
}

static inline bool is_ci(uint8_t x, char lower)
{
    return x == (uint8_t)lower || x == (uint8_t)(lower - 32);
}

static size_t scan_cl100k(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t pos)
{
    size_t n, n2;
    int c = cls_at(tok, t, len, pos, &n);
    if (c == CC_INVALID)
        return run_end(tok, t, len, pos, CC_INVALID);
    if (t[pos] == '\'' && pos + 1 < len) {
        uint8_t x = t[pos + 1];
        if (is_ci(x, 's') || is_ci(x, 't') || is_ci(x, 'm') || is_ci(x, 'd'))
            return pos + 2;
        if (x == 0xC5 && pos + 2 < len && t[pos + 2] == 0xBF) /* U+017F LATIN SMALL LETTER LONG S folds to s */
            return pos + 3;
        if (pos + 2 < len) {
            uint8_t y = t[pos + 2];
            if ((is_ci(x, 'r') && is_ci(y, 'e')) || (is_ci(x, 'v') && is_ci(y, 'e')) ||
                (is_ci(x, 'l') && is_ci(y, 'l')))
                return pos + 3;
        }
    }
    if (c == CC_LETTER)
        return run_end(tok, t, len, pos, CC_LETTER);
    if (c != CC_NUMBER && t[pos] != '\r' && t[pos] != '\n' && pos + n < len &&
        cls_at(tok, t, len, pos + n, &n2) == CC_LETTER)
        return run_end(tok, t, len, pos + n, CC_LETTER);
    if (c == CC_NUMBER) {
        size_t i = pos + n;
        for (int k = 1; k < 3 && i < len && cls_at(tok, t, len, i, &n2) == CC_NUMBER; k++)
            i += n2;
        return i;
    }
    size_t o = pos;
    if (t[pos] == ' ' && pos + 1 < len && cls_at(tok, t, len, pos + 1, &n2) == CC_OTHER)
        o = pos + 1;
    if (o > pos || c == CC_OTHER) {
        size_t i = run_end(tok, t, len, o, CC_OTHER);
        while (i < len && (t[i] == '\r' || t[i] == '\n'))
            i++;
        return i;
    }
    /* whitespace: \s*[\r\n]+ ends after the run's last \r or \n */
    size_t i = pos, nl = SIZE_MAX;
    while (i < len && cls_at(tok, t, len, i, &n2) == CC_SPACE) {
        if (t[i] == '\r' || t[i] == '\n')
            nl = i;
        i += n2;
    }
    if (nl != SIZE_MAX)
        return nl + 1;
    return space_tail(tok, t, len, pos);
}

size_t tok_scan_piece(const fg_tokenizer *tok, const uint8_t *text, size_t len, size_t pos)
{
    return tok->pattern == FG_TOK_PATTERN_CL100K ? scan_cl100k(tok, text, len, pos) : scan_gpt2(tok, text, len, pos);
}

static fg_status push_end(size_t **ends, size_t *n, size_t *cap, size_t e)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        size_t *p = fg_realloc(*ends, c * sizeof(size_t));
        if (!p)
            return FG_ERR_NOMEM;
        *ends = p;
        *cap = c;
    }
    (*ends)[(*n)++] = e;
    return FG_OK;
}

/* The PCRE2 reference: successive matches; the bytes between matches (only ever
 * invalid UTF-8, since the pattern matches every valid character) are one piece. */
static fg_status split_pcre(const fg_tokenizer *tok, const uint8_t *t, size_t len, size_t **ends, size_t *n,
                            size_t *cap)
{
    fg_status st = FG_OK;
    const pcre2_code *re = tok->re_code;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return fg_error(FG_ERR_NOMEM, "pcre2 match data");
    size_t pos = 0;
    while (pos < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)t, len, pos, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            st = push_end(ends, n, cap, len);
            break;
        }
        if (rc < 0) {
            st = fg_error(FG_ERR_INTERNAL, "pcre2_match failed with %d at byte %zu", rc, pos);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > pos && (st = push_end(ends, n, cap, ov[0])) != FG_OK)
            break;
        if (ov[1] <= ov[0]) {
            st = fg_error(FG_ERR_INTERNAL, "empty pre-tokenizer match at byte %zu", (size_t)ov[0]);
            break;
        }
        if ((st = push_end(ends, n, cap, ov[1])) != FG_OK)
            break;
        pos = ov[1];
    }
    pcre2_match_data_free(md);
    return st;
}

fg_status fg_tok_split(const fg_tokenizer *tok, bool reference, const char *text, size_t len, size_t **ends, size_t *n)
{
    size_t cap = 0;
    fg_status st = FG_OK;
    *ends = NULL;
    *n = 0;
    const uint8_t *t = (const uint8_t *)text;
    if (reference) {
        st = split_pcre(tok, t, len, ends, n, &cap);
    } else {
        for (size_t pos = 0; pos < len && st == FG_OK;) {
            pos = tok_scan_piece(tok, t, len, pos);
            st = push_end(ends, n, &cap, pos);
        }
    }
    if (st != FG_OK) {
        fg_free(*ends);
        *ends = NULL;
        *n = 0;
    }
    return st;
}
