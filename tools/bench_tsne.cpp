// Times the exact t-SNE of the evaluate stage on clustered random features shaped like the
// classifier's (default: 2000 points, 128 dimensions, 10 clusters) and prints JSON.
//   build/bench_tsne [points] [iterations] [threads]
#include <chrono>
#include <cstdlib>
#include <iostream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/tsne.h"

int main(int argc, char** argv) {
  const std::int64_t n = argc > 1 ? std::atoll(argv[1]) : 2000;
  const std::int64_t iterations = argc > 2 ? std::atoll(argv[2]) : 1000;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  const std::int64_t dims = 128, clusters = 10;
  const auto labels = torch::arange(n, torch::kInt64).remainder(clusters);
  const auto centres = torch::randn({clusters, dims}) * 3.0;
  const auto x = centres.index_select(0, labels) + torch::randn({n, dims});
  augment::TsneOptions o;
  o.iterations = iterations;
  const auto t0 = std::chrono::steady_clock::now();
  const auto y = augment::tsne(x, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << nlohmann::json({{"points", n},
                               {"dims", dims},
                               {"iterations", iterations},
                               {"threads", threads},
                               {"seconds", seconds},
                               {"nearest_neighbour_agreement", augment::nearest_neighbour_agreement(y, labels)}})
                   .dump()
            << "\n";
  return 0;
}
