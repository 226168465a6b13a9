/* loops_avx512.c: the AVX-512 embedding forward and backward: the loops.h loops,
 * compiled with this file's -mavx512f flags (the other loops.h ops have intrinsics). */
#define FG_LOOPS_SUFFIX avx512
#define FG_LOOPS_EMBEDDING_ONLY
#include "loops.h"
