/* test_hw.c: feature detection is self-consistent and FG_HW_DISABLE masks features. */
#include <stdlib.h>

#include "frugal/hw.h"
#include "harness.h"

int main(void)
{
    FG_TEST_BEGIN("hw");
    const fg_cpu *c = fg_hw_cpu();
    FG_CHECK(c->n_cores >= 1, "cores %d", c->n_cores);
    FG_CHECK(!c->avx512bw || c->avx512f, "avx512bw implies avx512f");
    FG_CHECK(!c->amx_bf16 || c->amx_tile || !c->os_avx512, "amx_bf16 implies amx_tile");
    FG_CHECK(fg_hw_cpu() == c, "detected once");
    fg_status st = fg_hw_request_amx();
    FG_CHECK(c->amx_tile ? (st == FG_OK || st == FG_ERR_UNSUPPORTED) : st == FG_ERR_UNSUPPORTED, "amx request");
    return fg_test_end();
}
