/* save.c: writing a tokenizer as Hugging Face tokenizer.json (model BPE over GPT-2's
 * byte-level alphabet, ByteLevel pre-tokenizer or Split(cl100k regex) + ByteLevel,
 * ByteLevel decoder, specials as added_tokens), written whole or not at all through
 * fg_file_tx (core.h: temp file, fsync, rename). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tok_impl.h"

/* Byte-level string of token id (each byte as its GPT-2 code point, UTF-8). */
static char *bytelevel_string(const fg_tokenizer *tok, uint32_t id)
{
    char *s = fg_malloc(2 * (size_t)tok->len[id] + 1);
    if (!s)
        return NULL;
    size_t n = 0;
    for (uint32_t i = 0; i < tok->len[id]; i++) {
        uint32_t cp = tok_byte_to_cp(tok->blob[tok->off[id] + i]);
        if (cp < 0x80) {
            s[n++] = (char)cp;
        } else {
            s[n++] = (char)(0xC0 | (cp >> 6));
            s[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    s[n] = 0;
    return s;
}

static json_t *bytelevel_obj(bool use_regex)
{
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex",
                     use_regex);
}

static int dump_to_tx(const char *buffer, size_t size, void *data)
{
    return fg_file_tx_write(data, buffer, size) == FG_OK ? 0 : -1;
}

fg_status fg_tok_save(const fg_tokenizer *tok, const char *path)
{
    if (tok->kind != TOK_KIND_BPE)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: the byte tokenizer is built in and has no tokenizer.json form", path);
    fg_status st = FG_OK;
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array(), *added = json_array();
    if (!root || !vocab || !merges || !added) {
        st = fg_error(FG_ERR_NOMEM, "%s: out of memory building JSON", path);
        goto done;
    }
    for (int id = 0; id < tok->vocab_size; id++) {
        if (tok->is_special[id]) {
            json_t *content = json_stringn((const char *)tok->blob + tok->off[id], tok->len[id]);
            if (!content) {
                st = fg_error(FG_ERR_UNSUPPORTED, "%s: special token %d is not valid UTF-8", path, id);
                goto done;
            }
            json_array_append_new(added,
                                  json_pack("{s:i, s:o, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                                            "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
        }
        char *s = bytelevel_string(tok, (uint32_t)id);
        if (!s) {
            st = FG_ERR_NOMEM;
            goto done;
        }
        if (json_object_get(vocab, s)) {
            fg_free(s);
            continue; /* a special whose text is also an ordinary token: listed once */
        }
        json_object_set_new(vocab, s, json_integer(id));
        fg_free(s);
    }
    for (int r = 0; r < tok->n_merges; r++) {
        char *a = bytelevel_string(tok, tok->merge_a[r]), *b = bytelevel_string(tok, tok->merge_b[r]);
        if (!a || !b) {
            fg_free(a);
            fg_free(b);
            st = FG_ERR_NOMEM;
            goto done;
        }
        json_array_append_new(merges, json_sprintf("%s %s", a, b));
        fg_free(a);
        fg_free(b);
    }
    json_t *pretok;
    if (tok->pattern == FG_TOK_PATTERN_GPT2) {
        pretok = bytelevel_obj(true);
    } else {
        json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                  fg_tok_pattern_regex(tok->pattern), "behavior", "Isolated", "invert", 0);
        pretok = json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", split, bytelevel_obj(false));
    }
    json_t *model =
        json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                  "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges",
                  tok->ignore_merges, "vocab", vocab, "merges", merges);
    vocab = merges = NULL; /* owned by model now */
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_object_set_new(root, "added_tokens", added);
    added = NULL;
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", pretok);
    json_object_set_new(root, "post_processor", json_null());
    json_object_set_new(root, "decoder", bytelevel_obj(true));
    json_object_set_new(root, "model", model);
    if (!pretok || !model) {
        st = fg_error(FG_ERR_NOMEM, "%s: out of memory building JSON", path);
        goto done;
    }
    fg_file_tx tx;
    st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK)
        goto done;
    /* jansson stops at the first callback failure; the transaction keeps its message */
    if (json_dump_callback(root, dump_to_tx, &tx, JSON_INDENT(1)) != 0 && fg_file_tx_status(&tx) == FG_OK) {
        fg_file_tx_abort(&tx);
        st = fg_error(FG_ERR_NOMEM, "%s: jansson could not serialise the tokenizer", path);
        goto done;
    }
    st = fg_file_tx_commit(&tx);
done:
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    return st;
}
