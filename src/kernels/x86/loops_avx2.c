/* loops_avx2.c: the AVX2 variants of the ops written once in loops.h (embedding, add,
 * axpy, scale, sumsq): the reference loops, compiled with this file's -mavx2 -mfma. */
#define FG_LOOPS_SUFFIX avx2
#include "loops.h"
