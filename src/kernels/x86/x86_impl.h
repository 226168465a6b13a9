/* x86_impl.h: declarations of the AVX2 / AVX-512 kernel variants and the registry
 * rows that dispatch.c appends for them (FG_X86_VARIANTS). */
#ifndef FRUGAL_KERNELS_X86_IMPL_H
#define FRUGAL_KERNELS_X86_IMPL_H

#include "frugal/kernels.h"

#define FG_X86_VARIANTS

#endif
