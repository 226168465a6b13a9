/* pretok.c: pre-tokenization (splitting text into words before BPE). Placeholder
 * until the scanner lands: every text is one piece. */
#include "tok_impl.h"

fg_status tok_class_table_init(fg_tokenizer *tok)
{
    return FG_OK;
}
size_t tok_scan_piece(const fg_tokenizer *tok, const uint8_t *text, size_t len, size_t pos)
{
    return len;
}
void tok_regex_free(fg_tokenizer *tok)
{
}
const char *fg_tok_pattern_regex(fg_tok_pattern pat)
{
    return "";
}
fg_status fg_tok_split(const fg_tokenizer *tok, bool reference, const char *text, size_t len, size_t **ends, size_t *n)
{
    return fg_error(FG_ERR_UNSUPPORTED, "fg_tok_split: not yet");
}
