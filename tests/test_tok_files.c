/* test_tok_files.c: malformed tokenizer files (bad JSON, missing merges, ids out of
 * range or missing, unknown merge tokens, bad vocab.bpe lines, unsupported
 * pre-tokenizers) give messages naming the file and the position; and the
 * `frugal tokenize` command: train -> encode to shards -> decode round trip, and a
 * non-zero exit with file:line:col on a malformed tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal/shard.h"
#include "frugal/tok.h"
#include "harness.h"

static const char *write_tmp(const char *name, const char *content)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 512, "%s/%s", fg_test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    return p;
}

/* A minimal valid byte-level tokenizer.json with the given vocab extras/merges/pretok. */
static char *tok_json(const char *extra_vocab, const char *merges, const char *pretok, const char *added)
{
    size_t cap = 65536;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap,
                                "{\n \"version\": \"1.0\",\n \"added_tokens\": %s,\n \"normalizer\": null,\n"
                                " \"pre_tokenizer\": %s,\n \"model\": {\n  \"type\": \"BPE\",\n  \"vocab\": {",
                                added, pretok);
    /* ids 0..255: the byte-level characters of bytes in code point order */
    int id = 0;
    for (int cp = 0; cp < 324; cp++) {
        int byte = -1;
        if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
            byte = cp;
        else if (cp >= 256)
            byte = 0;
        if (byte < 0)
            continue;
        char ch[8];
        if (cp == '"' || cp == '\\')
            snprintf(ch, sizeof ch, "\\%c", cp);
        else if (cp < 0x80)
            snprintf(ch, sizeof ch, "%c", cp);
        else
            snprintf(ch, sizeof ch, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        n += (size_t)snprintf(s + n, cap - n, "%s\n   \"%s\": %d", id ? "," : "", ch, id);
        id++;
    }
    n += (size_t)snprintf(s + n, cap - n, "%s\n  },\n  \"merges\": %s\n }\n}\n", extra_vocab, merges);
    return s;
}

#define GPT2_PRETOK "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

static void expect_error(const char *name, const char *content, const char *want1, const char *want2)
{
    const char *p = write_tmp(name, content);
    fg_tokenizer *tok = fg_tok_load(p);
    const char *e = fg_last_error();
    FG_CHECK(tok == NULL && strstr(e, p) && strstr(e, want1) && (!want2 || strstr(e, want2)),
             "%s: error names the file and '%s'%s%s: got '%s'", name, want1, want2 ? " and " : "", want2 ? want2 : "",
             e);
    fg_tok_delete(tok);
}

static void test_malformed(void)
{
    char *ok = tok_json(",\n   \"ab\": 256", "[\"a b\"]", GPT2_PRETOK, "[]");
    const char *p = write_tmp("ok.json", ok);
    fg_tokenizer *tok = fg_tok_load(p);
    FG_CHECK(tok && fg_tok_vocab_size(tok) == 257 && fg_tok_n_merges(tok) == 1, "the valid base file loads: %s",
             fg_last_error());
    if (tok) {
        uint32_t *ids = NULL;
        size_t n = 0;
        FG_CHECK(fg_tok_encode(tok, "abab", 4, &ids, &n) == FG_OK && n == 2 && ids[0] == 256 && ids[1] == 256,
                 "merge used");
        fg_free(ids);
    }
    fg_tok_delete(tok);
    free(ok);

    /* merges as ["a", "b"] pairs (newer HF files), and ignore_merges (whole-word lookup first) */
    char *pairs = tok_json(",\n   \"ab\": 256,\n   \"xyz\": 257", "[[\"a\", \"b\"]]", GPT2_PRETOK, "[]");
    p = write_tmp("pairs.json", pairs);
    tok = fg_tok_load(p);
    uint32_t *ids = NULL;
    size_t n = 0;
    FG_CHECK(tok && fg_tok_encode(tok, "ab\nxyz", 6, &ids, &n) == FG_OK && n == 5 && ids[0] == 256,
             "pair-form merges load and apply; xyz has no merges so it stays bytes (n=%zu)", n);
    fg_free(ids);
    fg_tok_delete(tok);
    char *im = strstr(pairs, "\"merges\"");
    char *with_im = malloc(strlen(pairs) + 64);
    memcpy(with_im, pairs, (size_t)(im - pairs));
    strcpy(with_im + (im - pairs), "\"ignore_merges\": true, ");
    strcat(with_im, im);
    p = write_tmp("ignore_merges.json", with_im);
    tok = fg_tok_load(p);
    FG_CHECK(tok && fg_tok_encode(tok, "ab\nxyz", 6, &ids, &n) == FG_OK && n == 3 && ids[0] == 256 && ids[2] == 257,
             "ignore_merges: a word that is a token maps to it (n=%zu)", n);
    fg_free(ids);
    fg_tok_delete(tok);
    free(with_im);
    free(pairs);

    /* JSON syntax error on line 3: jansson's line:column */
    expect_error("syntax.json", "{\n \"model\": {\n  \"vocab\": {\"a\": 1,,}\n }\n}\n", ":3:", NULL);
    char *s = tok_json("", "[]", GPT2_PRETOK, "[]");
    char *cut = strstr(s, "\"merges\"");
    memcpy(cut, "\"mergez\"", 8);
    expect_error("nomerges.json", s, "model.merges is missing", NULL);
    free(s);
    s = tok_json(",\n   \"ab\": 99999999", "[]", GPT2_PRETOK, "[]");
    expect_error("bigid.json", s, "\"ab\"", "not an integer in [0,");
    free(s);
    s = tok_json(",\n   \"ab\": -3", "[]", GPT2_PRETOK, "[]");
    expect_error("negid.json", s, ":265:4:", "not an integer"); /* the line of "ab" */
    free(s);
    s = tok_json(",\n   \"ab\": 300", "[]", GPT2_PRETOK, "[]");
    expect_error("gap.json", s, "id 256 is missing", NULL);
    free(s);
    s = tok_json(",\n   \"ab\": 255", "[]", GPT2_PRETOK, "[]");
    expect_error("dup.json", s, "used twice", NULL);
    free(s);
    s = tok_json(",\n   \"ab\": 256", "[\"a b\", \"ab zz\"]", GPT2_PRETOK, "[]");
    expect_error("badmerge.json", s, "'zz' is not in the vocabulary", "merges[1]");
    free(s);
    s = tok_json(",\n   \"ab\": 256", "[\"ab\"]", GPT2_PRETOK, "[]");
    expect_error("mergeform.json", s, "expected \"left right\"", NULL);
    free(s);
    s = tok_json("", "[]", "{\"type\": \"Whitespace\"}", "[]");
    expect_error("pretok.json", s, "pre_tokenizer must be", ":5:");
    free(s);
    s = tok_json("", "[]", GPT2_PRETOK, "[{\"id\": 5}]");
    expect_error("added.json", s, "added_tokens[0]", NULL);
    free(s);
    expect_error("empty.json", "", "1:", NULL);

    /* GPT-2 files */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/gpt2bad", fg_test_tmpdir());
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    fg_test_run(cmd, out, sizeof out);
    write_tmp("gpt2bad/encoder.json", "{\"a\": 0, \"b\": 1}");
    write_tmp("gpt2bad/vocab.bpe", "#version: 0.2\na b\n");
    tok = fg_tok_load(dir);
    FG_CHECK(!tok && strstr(fg_last_error(), "encoder.json") && strstr(fg_last_error(), "no token for byte"),
             "encoder without all bytes: %s", fg_last_error());
    const char *enc = fg_test_shared_path("gpt2/encoder.json");
    if (enc) {
        snprintf(cmd, sizeof cmd, "cp %s %s/encoder.json", enc, dir);
        fg_test_run(cmd, out, sizeof out);
        write_tmp("gpt2bad/vocab.bpe", "#version: 0.2\n\xc4\xa0 t\nfoo\n");
        tok = fg_tok_load(dir);
        FG_CHECK(!tok && strstr(fg_last_error(), "vocab.bpe:3:1") && strstr(fg_last_error(), "two tokens"),
                 "bad vocab.bpe line: %s", fg_last_error());
        write_tmp("gpt2bad/vocab.bpe", "#version: 0.2\n\xc4\xa0 t\nqq\xc3\xbf zzz\n");
        tok = fg_tok_load(dir);
        FG_CHECK(!tok && strstr(fg_last_error(), "vocab.bpe:3:1") && strstr(fg_last_error(), "not in the vocabulary"),
                 "unknown merge token: %s", fg_last_error());
    }
    tok = fg_tok_load("/nonexistent/tokenizer.json");
    FG_CHECK(!tok && strstr(fg_last_error(), "/nonexistent/tokenizer.json"), "missing file: %s", fg_last_error());
}

static void test_cli(void)
{
    const char *bin = fg_test_frugal_bin();
    const char *shakes = fg_test_shared_path("tinyshakespeare.txt");
    if (!bin || access(bin, X_OK) != 0 || !shakes) {
        fg_test_skip("frugal tokenize", "frugal binary or tinyshakespeare.txt absent");
        return;
    }
    const char *tmp = fg_test_tmpdir();
    char cmd[4096], out[8192];
    write_tmp("docs.jsonl", "{\"text\": \"first doc\\n\"}\n{\"text\": \"second \\u00e9 doc\", \"id\": 2}\n");
    write_tmp("plain.txt", "plain text file\n");
    snprintf(cmd, sizeof cmd, "%s tokenize train --vocab-size 600 --out %s/t.json %s 2>&1", bin, tmp, shakes);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 0 && strstr(out, "vocab 600"), "tokenize train: rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd,
             "%s tokenize encode --tokenizer %s/t.json --out %s/shards %s/docs.jsonl %s/plain.txt 2>&1", bin, tmp, tmp,
             tmp, tmp);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 0 && strstr(out, "3 documents") && strstr(out, "bytes/token"), "tokenize encode: rc %d: %s", rc,
             out);
    char shard[600];
    snprintf(shard, sizeof shard, "%s/shards/shard_000000.bin", tmp);
    fg_shard sh;
    FG_CHECK(fg_shard_open(&sh, shard) == FG_OK && sh.vocab_size == 600 && sh.eot_id == 599, "shard header: %s",
             fg_last_error());
    fg_shard_close(&sh);
    snprintf(cmd, sizeof cmd, "%s tokenize decode --tokenizer %s/t.json %s", bin, tmp, shard);
    rc = fg_test_run(cmd, out, sizeof out);
    const char *want = "first doc\n<|endoftext|>second \xc3\xa9 doc<|endoftext|>plain text file\n<|endoftext|>";
    FG_CHECK(rc == 0 && !strcmp(out, want), "decode(encode(docs)) == docs joined by <|endoftext|>: '%s'", out);
    /* --val-frac: the tail of the tokens goes to val_000000.bin, nothing is lost */
    snprintf(cmd, sizeof cmd, "%s tokenize encode --tokenizer %s/t.json --val-frac 0.25 --out %s/split %s 2>&1", bin,
             tmp, tmp, shakes);
    rc = fg_test_run(cmd, out, sizeof out);
    fg_shard tr, va;
    char ptr[600], pva[600];
    snprintf(ptr, sizeof ptr, "%s/split/shard_000000.bin", tmp);
    snprintf(pva, sizeof pva, "%s/split/val_000000.bin", tmp);
    bool opened = fg_shard_open(&tr, ptr) == FG_OK;
    bool opened_v = fg_shard_open(&va, pva) == FG_OK;
    FG_CHECK(rc == 0 && opened && opened_v && va.n_tokens == (tr.n_tokens + va.n_tokens) / 4 &&
                 fg_shard_token(&va, va.n_tokens - 1) == 599,
             "val split: rc %d, %s", rc, out);
    if (opened)
        fg_shard_close(&tr);
    if (opened_v)
        fg_shard_close(&va);
    /* a malformed tokenizer: non-zero exit, message with file:line:col */
    const char *bad = write_tmp("bad.json", "{\n  \"model\": [1, 2,\n");
    snprintf(cmd, sizeof cmd, "%s tokenize encode --tokenizer %s --out %s/x.bin %s/plain.txt 2>&1", bin, bad, tmp, tmp);
    rc = fg_test_run(cmd, out, sizeof out);
    char where[600];
    snprintf(where, sizeof where, "%s:3:", bad);
    FG_CHECK(rc != 0 && strstr(out, where), "malformed tokenizer: rc %d, message '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s tokenize encode --bogus 2>&1", bin);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 2, "usage error exits 2");
}

int main(void)
{
    FG_TEST_BEGIN("tok_files");
    test_malformed();
    test_cli();
    return fg_test_end();
}
