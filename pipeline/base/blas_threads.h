#pragma once

namespace augment {

// Debian's LibTorch calls OpenBLAS, which runs every large matrix product on its own pthreads,
// beside LibTorch's OpenMP threads. On two cores the two pools took turns spinning (sched_yield,
// libgomp's spin-wait), so OpenBLAS is kept to one thread and LibTorch's threads do the parallel
// work. Measured on the 2-core build machine: the recipe trains at 62.9 instead of 45.9 images/s
// and samples at 10.5 instead of 7.5, the reference U-Net denoises 30% faster, and the classifier
// (2 threads) trains 6% faster. Nothing changes when the user sets OPENBLAS_NUM_THREADS, or when
// the BLAS is not OpenBLAS.
void single_threaded_blas();

}  // namespace augment
