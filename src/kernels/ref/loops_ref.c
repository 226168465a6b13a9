/* loops_ref.c: the scalar references of the ops written once in loops.h (embedding,
 * add, axpy, scale, sumsq), built without ISA flags. */
#define FG_LOOPS_SUFFIX ref
#include "loops.h"
