/* load.c: reading GPT-2's encoder.json + vocab.bpe and Hugging Face tokenizer.json
 * (byte-level BPE models only). Every error names the file and a position: jansson's
 * line:column for JSON syntax, the line:column of the offending entry otherwise (found
 * by searching the file text for it), and a JSON path. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"

#define MAX_VOCAB (1 << 22) /* 4M ids: far above real vocabularies, bounded memory on hostile files */

/* Reads a whole file (NUL-terminated); NULL with the error set. */
static char *read_all(const char *path, size_t *len)
{
    char *buf;
    return fg_read_file(path, 0, &buf, len) == FG_OK ? buf : NULL;
}

/* line:column (1-based) of the first occurrence of needle in buf, or 0:0. */
static void pos_of(const char *buf, const char *needle, int *line, int *col)
{
    *line = 0;
    *col = 0;
    const char *p = buf && needle ? strstr(buf, needle) : NULL;
    if (!p)
        return;
    *line = 1;
    const char *ls = buf;
    for (const char *q = buf; q < p; q++)
        if (*q == '\n') {
            (*line)++;
            ls = q + 1;
        }
    *col = (int)(p - ls) + 1;
}

/* Position of a JSON string value/key `s` as it would be written in the file. */
static void pos_of_json_string(const char *buf, const char *s, int *line, int *col)
{
    json_t *js = json_string(s);
    char *enc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
    pos_of(buf, enc, line, col);
    if (*line == 0 && enc) { /* the file may escape differently (e.g. \u00e9): try the key unquoted */
        pos_of(buf, s, line, col);
    }
    free(enc);
    json_decref(js);
}

/* Converts a byte-level vocabulary string (GPT-2 bytes_to_unicode chars) to bytes.
 * out must hold strlen(s) bytes. Returns the length, or -1 at a character that is not
 * a byte-level symbol. */
static long bytelevel_to_bytes(const char *s, uint8_t *out)
{
    const uint8_t *p = (const uint8_t *)s;
    long n = 0;
    while (*p) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            p += 2;
        } else {
            return -1;
        }
        int b = tok_cp_to_byte(cp);
        if (b < 0)
            return -1;
        out[n++] = (uint8_t)b;
    }
    return n;
}

static fg_status check_bytes_complete(fg_tokenizer *tok, const char *path)
{
    for (int b = 0; b < 256; b++)
        if (tok->byte_id[b] == UINT32_MAX)
            return fg_error(FG_ERR_FORMAT,
                            "%s: the vocabulary has no token for byte 0x%02X (a byte-level BPE needs all 256)", path,
                            b);
    return FG_OK;
}

/* One merge "a b": looks up both sides and their concatenation. */
static fg_status add_merge_str(fg_tokenizer *tok, const char *a, const char *b, const char *path, const char *buf,
                               const char *what)
{
    size_t la = strlen(a), lb = strlen(b);
    uint8_t *tmp = fg_malloc(la + lb + 1);
    if (!tmp)
        return FG_ERR_NOMEM;
    fg_status st = FG_OK;
    int line, col;
    long na = bytelevel_to_bytes(a, tmp), nb = na >= 0 ? bytelevel_to_bytes(b, tmp + na) : -1;
    if (na < 0 || nb < 0) {
        pos_of_json_string(buf, what, &line, &col);
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: merge '%s' has a character that is not a byte-level symbol", path, line,
                      col, what);
        goto done;
    }
    int ia = tok_find(tok, tmp, (size_t)na), ib = tok_find(tok, tmp + na, (size_t)nb);
    int ic = tok_find(tok, tmp, (size_t)(na + nb));
    if (ia < 0 || ib < 0 || ic < 0) {
        pos_of(buf, what, &line, &col);
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: merge '%s': token '%s' is not in the vocabulary", path, line, col, what,
                      ia < 0   ? a
                      : ib < 0 ? b
                               : "(the merged pair)");
        goto done;
    }
    st = tok_add_merge(tok, (uint32_t)ia, (uint32_t)ib, (uint32_t)ic);
done:
    fg_free(tmp);
    return st;
}

/* Fills the token table from a JSON object token -> id (ids must be 0..n-1, each
 * once). raw[i] != NULL overrides token i's bytes (added tokens, given as text). */
static fg_status add_vocab(fg_tokenizer *tok, json_t *vocab, const char *path, const char *buf, const char *where,
                           json_t *added)
{
    fg_status st = FG_OK;
    int line, col;
    size_t n = json_object_size(vocab);
    int max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_VOCAB) {
            pos_of_json_string(buf, key, &line, &col);
            return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s[\"%s\"]: id is not an integer in [0, %d)", path, line, col,
                            where, key, MAX_VOCAB);
        }
        if (json_integer_value(val) > max_id)
            max_id = (int)json_integer_value(val);
    }
    size_t n_added = added ? json_array_size(added) : 0;
    for (size_t i = 0; i < n_added; i++) {
        json_t *id = json_object_get(json_array_get(added, i), "id");
        json_t *content = json_object_get(json_array_get(added, i), "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(content)) {
            pos_of(buf, "\"added_tokens\"", &line, &col);
            return fg_error(FG_ERR_FORMAT,
                            "%s:%d:%d: added_tokens[%zu]: needs an integer \"id\" in [0, %d) and a string \"content\"",
                            path, line, col, i, MAX_VOCAB);
        }
        if (json_integer_value(id) > max_id)
            max_id = (int)json_integer_value(id);
    }
    size_t count = (size_t)(max_id + 1);
    const char **name = fg_calloc(count ? count : 1, sizeof(char *));
    uint8_t *raw = fg_calloc(count ? count : 1, 1);
    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    if (!name || !raw) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    json_object_foreach(vocab, key, val)
    {
        size_t id = (size_t)json_integer_value(val);
        if (name[id]) {
            pos_of_json_string(buf, key, &line, &col);
            st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s[\"%s\"]: id %zu is used twice (also by \"%s\")", path, line, col,
                          where, key, id, name[id]);
            goto done;
        }
        name[id] = key;
    }
    for (size_t i = 0; i < n_added; i++) {
        json_t *t = json_array_get(added, i);
        size_t id = (size_t)json_integer_value(json_object_get(t, "id"));
        name[id] = json_string_value(json_object_get(t, "content"));
        raw[id] = 1;
    }
    for (size_t id = 0; id < count; id++) {
        if (!name[id]) {
            st = fg_error(FG_ERR_FORMAT, "%s: %s: id %zu is missing (ids must be 0..%zu without gaps)", path, where, id,
                          count - 1);
            goto done;
        }
        size_t sl = strlen(name[id]);
        if (sl + 1 > tmp_cap) {
            tmp_cap = 2 * sl + 64;
            fg_free(tmp);
            if (!(tmp = fg_malloc(tmp_cap))) {
                st = FG_ERR_NOMEM;
                goto done;
            }
        }
        long nb;
        if (raw[id]) {
            memcpy(tmp, name[id], sl);
            nb = (long)sl;
        } else if ((nb = bytelevel_to_bytes(name[id], tmp)) < 0) {
            pos_of_json_string(buf, name[id], &line, &col);
            st = fg_error(FG_ERR_FORMAT,
                          "%s:%d:%d: %s[\"%s\"]: not a byte-level token (a character outside GPT-2's byte alphabet)",
                          path, line, col, where, name[id]);
            goto done;
        }
        if (nb == 0) {
            st = fg_error(FG_ERR_FORMAT, "%s: %s: token %zu is empty", path, where, id);
            goto done;
        }
        if (tok_add_token(tok, tmp, (size_t)nb, false) < 0) {
            st = FG_ERR_NOMEM;
            goto done;
        }
    }
    (void)n;
done:
    fg_free(name);
    fg_free(raw);
    fg_free(tmp);
    return st;
}

fg_tokenizer *tok_load_gpt2(const char *encoder_path, const char *bpe_path)
{
    json_error_t jerr;
    char *ebuf = NULL, *bbuf = NULL;
    size_t elen = 0, blen = 0;
    json_t *enc = NULL;
    fg_status st = FG_OK;
    fg_tokenizer *tok = tok_new_empty(TOK_KIND_BPE, FG_TOK_PATTERN_GPT2);
    if (!tok)
        return NULL;
    if (!(ebuf = read_all(encoder_path, &elen)) || !(bbuf = read_all(bpe_path, &blen))) {
        st = FG_ERR_IO;
        goto done;
    }
    enc = json_loadb(ebuf, elen, 0, &jerr);
    if (!enc) {
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", encoder_path, jerr.line, jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(enc)) {
        st = fg_error(FG_ERR_FORMAT, "%s:1:1: expected an object {token: id}", encoder_path);
        goto done;
    }
    if ((st = add_vocab(tok, enc, encoder_path, ebuf, "encoder", NULL)) != FG_OK)
        goto done;
    if ((st = check_bytes_complete(tok, encoder_path)) != FG_OK)
        goto done;
    /* vocab.bpe: "#version: ..." then one "left right" merge per line */
    int line = 0;
    for (char *p = bbuf, *next; p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = 0;
        if (l == 0 || (line == 1 && p[0] == '#'))
            continue;
        char *sp = strchr(p, ' ');
        if (!sp || sp == p || !sp[1] || strchr(sp + 1, ' ')) {
            st = fg_error(FG_ERR_FORMAT, "%s:%d:1: expected two tokens separated by one space, got '%s'", bpe_path,
                          line, p);
            goto done;
        }
        *sp = 0;
        char whole[64];
        snprintf(whole, sizeof whole, "%s %s", p, sp + 1);
        st = add_merge_str(tok, p, sp + 1, bpe_path, NULL, whole);
        if (st != FG_OK) {
            /* add_merge_str could not locate the line itself: restate with ours */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", fg_last_error());
            const char *why = strstr(msg, ": merge");
            st = fg_error(st, "%s:%d:1%s", bpe_path, line, why ? why : msg);
            goto done;
        }
    }
    if (tok_find(tok, (const uint8_t *)"<|endoftext|>", 13) >= 0)
        st = fg_tok_add_special(tok, "<|endoftext|>", NULL);
done:
    json_decref(enc);
    fg_free(ebuf);
    fg_free(bbuf);
    if (st != FG_OK) {
        fg_tok_delete(tok);
        return NULL;
    }
    return tok;
}

static bool is_known_regex(const char *r, fg_tok_pattern *pat)
{
    static const char *const cl100k_variants[] = {
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    };
    if (!strcmp(r, fg_tok_pattern_regex(FG_TOK_PATTERN_GPT2))) {
        *pat = FG_TOK_PATTERN_GPT2;
        return true;
    }
    for (size_t i = 0; i < sizeof cl100k_variants / sizeof cl100k_variants[0]; i++)
        if (!strcmp(r, cl100k_variants[i])) {
            *pat = FG_TOK_PATTERN_CL100K;
            return true;
        }
    return false;
}

/* The pre-tokenizer: ByteLevel(use_regex) = GPT-2, or Sequence[Split(Regex), ByteLevel(no regex)]. */
static fg_status parse_pretok(json_t *pt, const char *path, const char *buf, fg_tok_pattern *pat)
{
    int line, col;
    pos_of(buf, "\"pre_tokenizer\"", &line, &col);
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (type && !strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pt, "add_prefix_space")))
            return fg_error(FG_ERR_UNSUPPORTED,
                            "%s:%d:%d: pre_tokenizer ByteLevel with add_prefix_space=true is not supported", path, line,
                            col);
        json_t *ur = json_object_get(pt, "use_regex");
        if (ur && !json_is_true(ur))
            return fg_error(FG_ERR_UNSUPPORTED, "%s:%d:%d: pre_tokenizer ByteLevel without a regex is not supported",
                            path, line, col);
        *pat = FG_TOK_PATTERN_GPT2;
        return FG_OK;
    }
    if (type && !strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pt, "pretokenizers");
        json_t *a = json_array_get(list, 0), *b = json_array_get(list, 1);
        const char *ta = json_string_value(json_object_get(a, "type"));
        const char *tb = json_string_value(json_object_get(b, "type"));
        const char *re = json_string_value(json_object_get(json_object_get(a, "pattern"), "Regex"));
        const char *beh = json_string_value(json_object_get(a, "behavior"));
        if (json_array_size(list) == 2 && ta && !strcmp(ta, "Split") && tb && !strcmp(tb, "ByteLevel") && re && beh &&
            !strcmp(beh, "Isolated") && !json_is_true(json_object_get(a, "invert")) &&
            !json_is_true(json_object_get(b, "use_regex")) && !json_is_true(json_object_get(b, "add_prefix_space"))) {
            if (is_known_regex(re, pat))
                return FG_OK;
            return fg_error(FG_ERR_UNSUPPORTED,
                            "%s:%d:%d: pre_tokenizer Split regex is neither the GPT-2 nor the cl100k pattern", path,
                            line, col);
        }
    }
    return fg_error(
        FG_ERR_UNSUPPORTED,
        "%s:%d:%d: pre_tokenizer must be ByteLevel (GPT-2 regex) or Sequence[Split(Regex, Isolated), ByteLevel]", path,
        line, col);
}

fg_tokenizer *tok_load_hf_json(const char *path)
{
    json_error_t jerr;
    size_t len = 0;
    json_t *root = NULL;
    fg_status st = FG_OK;
    fg_tokenizer *tok = NULL;
    int line, col;
    char *buf = read_all(path, &len);
    if (!buf)
        return NULL;
    root = json_loadb(buf, len, 0, &jerr);
    if (!root) {
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        st = fg_error(FG_ERR_FORMAT, "%s:1:1: \"model\" is missing or not an object", path);
        goto done;
    }
    pos_of(buf, "\"model\"", &line, &col);
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0) {
        st = fg_error(FG_ERR_UNSUPPORTED, "%s:%d:%d: model.type is \"%s\"; only BPE is supported", path, line, col,
                      mtype);
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) {
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: model.vocab is missing or not an object", path, line, col);
        goto done;
    }
    if (!json_is_array(merges)) {
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: model.merges is missing or not an array", path, line, col);
        goto done;
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        pos_of(buf, "\"normalizer\"", &line, &col);
        st = fg_error(FG_ERR_UNSUPPORTED, "%s:%d:%d: a normalizer is not supported (byte-level BPE has none)", path,
                      line, col);
        goto done;
    }
    fg_tok_pattern pat = FG_TOK_PATTERN_GPT2; /* set by parse_pretok; gcc cannot see that */
    if ((st = parse_pretok(json_object_get(root, "pre_tokenizer"), path, buf, &pat)) != FG_OK)
        goto done;
    if (!(tok = tok_new_empty(TOK_KIND_BPE, pat))) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    tok->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) {
        pos_of(buf, "\"added_tokens\"", &line, &col);
        st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: added_tokens is not an array", path, line, col);
        goto done;
    }
    if ((st = add_vocab(tok, vocab, path, buf, "model.vocab", added)) != FG_OK)
        goto done;
    if ((st = check_bytes_complete(tok, path)) != FG_OK)
        goto done;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        char whole[256];
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                pos_of_json_string(buf, s, &line, &col);
                st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: model.merges[%zu] = \"%s\": expected \"left right\"", path,
                              line, col, i, s);
                goto done;
            }
            size_t la = (size_t)(sp - s);
            char *a = fg_strndup(s, la);
            if (!a) {
                st = FG_ERR_NOMEM;
                goto done;
            }
            snprintf(whole, sizeof whole, "%s", s);
            st = add_merge_str(tok, a, sp + 1, path, buf, whole);
            fg_free(a);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            snprintf(whole, sizeof whole, "%s %s", a, b);
            st = add_merge_str(tok, a, b, path, buf, a);
        } else {
            pos_of(buf, "\"merges\"", &line, &col);
            st = fg_error(FG_ERR_FORMAT, "%s:%d:%d: model.merges[%zu]: expected \"left right\" or [left, right]", path,
                          line, col, i);
        }
        if (st != FG_OK) {
            if (!strstr(fg_last_error(), "merges[")) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", fg_last_error());
                st = fg_error(st, "%s (model.merges[%zu])", msg, i);
            }
            goto done;
        }
    }
    for (size_t i = 0; added && i < json_array_size(added); i++) { /* by id: the content may also be a vocab entry */
        json_t *t = json_array_get(added, i);
        if ((st = tok_mark_special(tok, (uint32_t)json_integer_value(json_object_get(t, "id")))) != FG_OK)
            goto done;
    }
done:
    json_decref(root);
    fg_free(buf);
    if (st != FG_OK) {
        fg_tok_delete(tok);
        return NULL;
    }
    return tok;
}
