/* tok.h: byte-level BPE tokenizers: GPT-2 compatible encode/decode, a built-in
 * 256-symbol byte tokenizer, training of new vocabularies, tokenizer.json I/O.
 *
 * Usage:
 *   fg_tokenizer *tok = fg_tok_load("tokenizer.json");   // or "byte", or a GPT-2 dir
 *   uint32_t *ids; size_t n;
 *   fg_tok_encode(tok, text, len, &ids, &n);   // ids: fg_malloc'd, caller fg_free()s
 *   fg_tok_decode(tok, ids, n, &out, &out_len);
 *   fg_tok_delete(tok);
 * A tokenizer is immutable after load, so one may be shared by encoding threads.
 * (The training API and more are declared below by the tokenizer module.)
 */
#ifndef FRUGAL_TOK_H
#define FRUGAL_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_tokenizer fg_tokenizer;

/* path: a Hugging Face tokenizer.json (byte-level BPE); a directory holding GPT-2's
 * encoder.json + vocab.bpe; the path of such an encoder.json; or the word "byte" for
 * the built-in tokenizer whose ids are the 256 byte values (plus <|endoftext|> = 256).
 * NULL on failure; the last error names the file, the position and the problem. */
fg_tokenizer *fg_tok_load(const char *path);
void fg_tok_delete(fg_tokenizer *tok);

int fg_tok_vocab_size(const fg_tokenizer *tok); /* ids are < this */
int fg_tok_eot(const fg_tokenizer *tok);        /* id of <|endoftext|>, or -1 */

/* Encodes text[0..len) as ordinary text (special-token strings are not special).
 * *ids is fg_malloc'd (caller frees), *n its length. Any bytes are accepted. */
fg_status fg_tok_encode(const fg_tokenizer *tok, const char *text, size_t len, uint32_t **ids, size_t *n);

/* Decodes ids into bytes (*text fg_malloc'd and NUL-terminated; *len excludes the
 * NUL). Ids out of range: FG_ERR_INVALID. */
fg_status fg_tok_decode(const fg_tokenizer *tok, const uint32_t *ids, size_t n, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
