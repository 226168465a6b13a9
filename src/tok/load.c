/* load.c: placeholder until GPT-2 and tokenizer.json loading land. */
#include "tok_impl.h"

fg_tokenizer *tok_load_gpt2(const char *encoder_path, const char *bpe_path)
{
    fg_error(FG_ERR_UNSUPPORTED, "%s: GPT-2 files not supported yet", encoder_path);
    return NULL;
}
fg_tokenizer *tok_load_hf_json(const char *path)
{
    fg_error(FG_ERR_UNSUPPORTED, "%s: tokenizer.json not supported yet", path);
    return NULL;
}
