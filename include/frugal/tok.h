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

#include <stdbool.h>
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

/* ---- everything below is added by the tokenizer module (docs/TOKENIZER.md) ---- */

/* Pre-tokenization pattern (the regex that splits text into words before BPE). */
typedef enum fg_tok_pattern {
    FG_TOK_PATTERN_GPT2 = 0,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    FG_TOK_PATTERN_CL100K = 1, /* tiktoken's cl100k_base pattern (case-insensitive contractions, 1-3 digits) */
} fg_tok_pattern;

fg_tok_pattern fg_tok_get_pattern(const fg_tokenizer *tok);
/* The pattern's regex source (PCRE2 syntax, as written into tokenizer.json). */
const char *fg_tok_pattern_regex(fg_tok_pattern pat);

/* Bytes of token `id` (*len set), or NULL when id is out of range. Special tokens
 * give their text. The pointer lives as long as the tokenizer. */
const uint8_t *fg_tok_token_bytes(const fg_tokenizer *tok, uint32_t id, size_t *len);

/* Registers a special token (e.g. "<|im_start|>"): a string that fg_tok_encode_special
 * maps to one id and never splits. A new string gets the next id (vocab size grows);
 * an existing token string is reused. *id (optional) receives its id. Not thread-safe:
 * call before sharing the tokenizer. */
fg_status fg_tok_add_special(fg_tokenizer *tok, const char *text, int *id);
/* Id of a special token string, or -1. */
int fg_tok_special_id(const fg_tokenizer *tok, const char *text);
int fg_tok_n_special(const fg_tokenizer *tok);

/* Like fg_tok_encode, but every occurrence of a registered special-token string
 * becomes that token's id (leftmost, longest string first). */
fg_status fg_tok_encode_special(const fg_tokenizer *tok, const char *text, size_t len, uint32_t **ids, size_t *n);

/* Pre-tokenization, exposed for tests and tools: the end offsets (bytes, exclusive)
 * of the pieces text[0..len) splits into, fg_malloc'd into *ends (*n of them; the
 * pieces cover the text). reference=true uses PCRE2 (JIT, UTF+UCP, invalid UTF-8
 * allowed); false the hand-written scanner used by encode. Both must agree.
 * Invalid UTF-8: each maximal run of bytes that are not part of a valid UTF-8
 * character is its own piece, and it ends any whitespace run before it as the end of
 * the text would (docs/TOKENIZER.md). */
fg_status fg_tok_split(const fg_tokenizer *tok, bool reference, const char *text, size_t len, size_t **ends, size_t *n);

/* Encodes many documents with `threads` threads (<= 0: fg_threads_get(), i.e. all cores
 * unless OMP_NUM_THREADS or fg_threads_set says otherwise). Large documents are
 * cut at newline boundaries that no pre-token crosses, so the ids are exactly the
 * concatenation of fg_tok_encode of each document, each followed by the
 * <|endoftext|> id when eot_after_each (FG_ERR_INVALID if the tokenizer has none).
 * *ids fg_malloc'd, *n its length. progress may be NULL (bytes done are reported). */
fg_status fg_tok_encode_docs(const fg_tokenizer *tok, const char *const *docs, const size_t *lens, size_t n_docs,
                             bool eot_after_each, int threads, fg_progress *progress, uint32_t **ids, size_t *n);

/* The same, and ends[d] (n_docs entries, caller's array) receives the offset in *ids
 * just past document d's ids (its <|endoftext|> included): document d is
 * ids[ends[d-1] .. ends[d]). */
fg_status fg_tok_encode_docs_ends(const fg_tokenizer *tok, const char *const *docs, const size_t *lens, size_t n_docs,
                                  bool eot_after_each, int threads, fg_progress *progress, uint32_t **ids, size_t *n,
                                  size_t *ends);

/* Training a byte-level BPE vocabulary (Hugging Face BpeTrainer's algorithm and
 * tie-break: highest pair count, then the smallest (left id, right id); ids 0..255 are
 * the bytes in GPT-2's byte-to-unicode order, then merges in order, then specials). */
typedef struct fg_tok_train_opts {
    int vocab_size;              /* total ids wanted, specials included (>= 256 + n_specials) */
    int min_frequency;           /* pairs counted fewer times are never merged (0 or 1: no limit) */
    fg_tok_pattern pattern;      /* pre-tokenization */
    const char *const *specials; /* special tokens (NULL: just "<|endoftext|>") */
    int n_specials;
    int threads;   /* word counting threads, <= 0: fg_threads_get() */
    bool progress; /* progress bar on stderr */
} fg_tok_train_opts;
void fg_tok_train_opts_default(fg_tok_train_opts *o); /* 32768, min 2, GPT2, eot only */

/* Trains on the documents; *out receives a new tokenizer (fg_tok_delete it). */
fg_status fg_tok_train(const fg_tok_train_opts *o, const char *const *docs, const size_t *lens, size_t n_docs,
                       fg_tokenizer **out);

/* Writes a Hugging Face tokenizer.json (model BPE, ByteLevel pre-tokenizer/decoder,
 * specials as added_tokens) that `tokenizers.Tokenizer.from_file` loads and that
 * encodes identically there. Byte tokenizers cannot be saved (FG_ERR_UNSUPPORTED). */
fg_status fg_tok_save(const fg_tokenizer *tok, const char *path);

/* Number of merges (0 for the byte tokenizer). */
int fg_tok_n_merges(const fg_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
