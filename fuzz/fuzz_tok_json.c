/* fuzz_tok_json.c: libFuzzer target for the tokenizer.json loader: any bytes as a
 * tokenizer.json must give either NULL with a message naming the file, or a tokenizer
 * that encodes and decodes a fixed text back exactly. Never a crash, leak or hang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal/tok.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fg_log_level = FG_LOG_ERROR;
    snprintf(path, sizeof path, "/tmp/fuzz_tok_json.%d.json", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    fg_tokenizer *tok = fg_tok_load(path);
    if (!tok) {
        if (!strstr(fg_last_error(), path)) {
            fprintf(stderr, "fuzz_tok_json: error does not name the file: %s\n", fg_last_error());
            abort();
        }
        return 0;
    }
    static const char text[] = "Hello, world! It's 2024\n\xc3\xa9t\xc3\xa9 \xff\xfe end";
    uint32_t *ids = NULL;
    char *back = NULL;
    size_t n = 0, bl = 0;
    if (fg_tok_encode_special(tok, text, sizeof text - 1, &ids, &n) != FG_OK ||
        fg_tok_decode(tok, ids, n, &back, &bl) != FG_OK || bl != sizeof text - 1 || memcmp(back, text, bl) != 0) {
        fprintf(stderr, "fuzz_tok_json: a loaded tokenizer does not round-trip: %s\n", fg_last_error());
        abort();
    }
    fg_free(ids);
    fg_free(back);
    fg_tok_delete(tok);
    return 0;
}
