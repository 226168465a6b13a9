/* test_hw.c: feature detection is self-consistent, FG_HW_DISABLE masks features and a
 * bad FG_HW_DISABLE is refused naming the variable (never silently ignored); the unit
 * named for each precision follows the kernel variant given (tests/cli_hw_units.sh
 * checks it end to end against the dispatch table). */
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "harness.h"

int main(void)
{
    FG_TEST_BEGIN("hw");
    /* first detection under a bad list: refused, and no optional feature is on */
    setenv("FG_HW_DISABLE", "avx2,bogus", 1);
    const fg_cpu *c = fg_hw_cpu();
    FG_CHECK(!c->avx2 && !c->avx512f && !c->amx_tile, "bad FG_HW_DISABLE left features on");
    FG_CHECK(fg_hw_init() == FG_ERR_INVALID && strstr(fg_last_error(), "FG_HW_DISABLE='avx2,bogus'") &&
                 strstr(fg_last_error(), "unknown feature 'bogus'"),
             "bad FG_HW_DISABLE: %s", fg_last_error());
    unsetenv("FG_HW_DISABLE");
    FG_CHECK(fg_hw_init() == FG_OK && !strcmp(fg_hw_disabled(), ""), "unset: %s", fg_last_error());
    fg_cpu full = *c;
    setenv("FG_HW_DISABLE", " avx512 ,amx", 1);
    FG_CHECK(fg_hw_init() == FG_OK, "valid list: %s", fg_last_error());
    FG_CHECK(!c->avx512f && !c->avx512bw && !c->amx_tile && c->avx2 == full.avx2 && c->fma == full.fma,
             "avx512,amx masked only those");
    setenv("FG_HW_DISABLE", "avx2", 1);
    FG_CHECK(fg_hw_init() == FG_OK && !c->avx2 && !c->fma && c->avx512f == full.avx512f, "avx2 masked");
    setenv("FG_HW_DISABLE", "avx512bf16", 1);
    FG_CHECK(fg_hw_init() == FG_OK && !c->avx512_bf16 && !c->amx_bf16 && c->avx512f == full.avx512f &&
                 c->avx512bw == full.avx512bw && c->avx512_vnni == full.avx512_vnni && c->amx_tile == full.amx_tile &&
                 c->avx2 == full.avx2,
             "avx512bf16 masked only the bf16 units");
    setenv("FG_HW_DISABLE", "", 1);
    FG_CHECK(fg_hw_init() == FG_OK && c->avx2 == full.avx2 && c->fma == full.fma && c->avx512f == full.avx512f &&
                 c->avx512bw == full.avx512bw && c->amx_tile == full.amx_tile,
             "empty list restores every feature");
    unsetenv("FG_HW_DISABLE");
    FG_CHECK(c->n_cores >= 1, "cores %d", c->n_cores);
    FG_CHECK(!c->avx512bw || c->avx512f, "avx512bw implies avx512f");
    FG_CHECK(!c->amx_bf16 || c->amx_tile || !c->os_avx512, "amx_bf16 implies amx_tile");
    FG_CHECK(fg_hw_cpu() == c, "detected once");
    char u[192];
    FG_CHECK(strstr(fg_hw_unit("fp32", "blas", "ref", u, sizeof u), "OpenBLAS"), "fp32 blas: %s", u);
    FG_CHECK(strstr(fg_hw_unit("fp32", "ref", "ref", u, sizeof u), "reference"), "fp32 ref: %s", u);
    FG_CHECK(strstr(fg_hw_unit("bf16", "blas", "avx512bf16", u, sizeof u), "vdpbf16ps"), "bf16 kernel: %s", u);
    FG_CHECK(strstr(fg_hw_unit("bf16", "blas", "blas", u, sizeof u), "conversion + OpenBLAS sgemm"), "bf16 blas: %s",
             u);
    FG_CHECK(strstr(fg_hw_unit("bf16", "blas", "amx", u, sizeof u), "AMX-BF16 tiles"), "bf16 amx: %s", u);
    FG_CHECK(strstr(fg_hw_unit("fp8", "blas", "avx512bf16", u, sizeof u), "fp8 storage"), "fp8: %s", u);
    FG_CHECK(!strcmp(fg_hw_unit("int4", "blas", "blas", u, sizeof u), "?"), "unknown precision: %s", u);
    char small[8];
    FG_CHECK(strlen(fg_hw_unit("bf16", "blas", "avx512bf16", small, sizeof small)) == 7, "truncated to the buffer");
    fg_status st = fg_hw_request_amx();
    FG_CHECK(c->amx_tile ? (st == FG_OK || st == FG_ERR_UNSUPPORTED) : st == FG_ERR_UNSUPPORTED, "amx request");
    return fg_test_end();
}
