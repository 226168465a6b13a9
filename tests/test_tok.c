/* test_tok.c: the built-in byte tokenizer (ids = bytes, 256 = <|endoftext|>):
 * encode/decode round trip on all byte values, specials, bad ids, batch encoding. */
#include <string.h>

#include "frugal/tok.h"
#include "harness.h"

static void test_byte(void)
{
    fg_tokenizer *tok = fg_tok_load("byte");
    FG_CHECK(tok != NULL, "load byte: %s", fg_last_error());
    if (!tok)
        return;
    FG_CHECK(fg_tok_vocab_size(tok) == 257, "vocab %d", fg_tok_vocab_size(tok));
    FG_CHECK(fg_tok_eot(tok) == 256, "eot %d", fg_tok_eot(tok));
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    uint32_t *ids;
    size_t n;
    FG_CHECK(fg_tok_encode(tok, all, 256, &ids, &n) == FG_OK && n == 256, "encode all bytes");
    int ok = 1;
    for (int i = 0; i < 256; i++)
        ok &= ids[i] == (uint32_t)i;
    FG_CHECK(ok, "ids are the bytes");
    char *back;
    size_t blen;
    FG_CHECK(fg_tok_decode(tok, ids, n, &back, &blen) == FG_OK && blen == 256 && !memcmp(back, all, 256), "round trip");
    fg_free(back);
    fg_free(ids);
    const char *s = "a<|endoftext|>b";
    FG_CHECK(fg_tok_encode(tok, s, strlen(s), &ids, &n) == FG_OK && n == strlen(s), "specials are text by default");
    fg_free(ids);
    FG_CHECK(fg_tok_encode_special(tok, s, strlen(s), &ids, &n) == FG_OK && n == 3 && ids[1] == 256,
             "encode_special maps <|endoftext|>");
    FG_CHECK(fg_tok_decode(tok, ids, n, &back, &blen) == FG_OK && !strcmp(back, s), "decode special");
    fg_free(back);
    fg_free(ids);
    uint32_t bad[2] = {5, 257};
    FG_CHECK(fg_tok_decode(tok, bad, 2, &back, &blen) == FG_ERR_INVALID && back == NULL, "out of range id");
    FG_CHECK(strstr(fg_last_error(), "257") != NULL, "message names the id: %s", fg_last_error());
    const char *docs[2] = {"hello", "xy"};
    size_t lens[2] = {5, 2};
    FG_CHECK(fg_tok_encode_docs(tok, docs, lens, 2, true, 2, NULL, &ids, &n) == FG_OK && n == 9 && ids[5] == 256 &&
                 ids[8] == 256 && ids[6] == 'x',
             "docs with eot");
    fg_free(ids);
    fg_tok_delete(tok);
}

int main(void)
{
    FG_TEST_BEGIN("tok");
    test_byte();
    return fg_test_end();
}
