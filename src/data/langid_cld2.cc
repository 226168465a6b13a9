// langid_cld2.cc: language identification per document with Compact Language Detector 2
// (Debian's libcld2), behind the C interface fg_data_langid declared in frugal/data.h.
#include <stdio.h> // before cld2: its header uses FILE without including it
#include <string.h>

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

#include "frugal/data.h"

// cld2 scores at most this much text: its answer is settled long before, and a 30 MB
// page would cost time for nothing.
static const size_t kMaxBytes = 1 << 16;

extern "C" void fg_data_langid(const char *text, size_t len, fg_data_lang *out)
{
    memset(out, 0, sizeof *out);
    CLD2::Language lang3[3];
    int percent3[3], text_bytes = 0;
    bool reliable = false;
    int n = (int)(len < kMaxBytes ? len : kMaxBytes);
    // cld2 requires valid UTF-8 ("interchange-valid"): the pipeline's text is (repaired).
    // Cutting at kMaxBytes may split a character: back up to a lead byte.
    while (n > 0 && (size_t)n < len && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--;
    CLD2::Language l = CLD2::ExtDetectLanguageSummary(text, n, true, lang3, percent3, &text_bytes, &reliable);
    const char *code = l == CLD2::UNKNOWN_LANGUAGE ? "und" : CLD2::LanguageCode(l);
    strncpy(out->code, code ? code : "und", sizeof out->code - 1);
    out->percent = percent3[0];
    out->reliable = reliable;
}
