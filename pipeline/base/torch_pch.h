// Precompiled for the sources that use LibTorch (see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
