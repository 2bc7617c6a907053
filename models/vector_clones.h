// Loops written for the compiler to vectorise get one copy per instruction set, picked when the
// program loads, so one binary runs AVX-512 code where the CPU has it and still runs elsewhere.
#pragma once

#define AUGMENT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
