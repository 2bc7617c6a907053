// Builds the bundled example: Fashion-MNIST (Debian's dataset-fashion-mnist, IDX files) as an
// unbalanced image folder root/<class name>/<n>.png.
//
//   make_fashion_mnist --out DIR [--counts 2000,1000,500,250,125] [--source /usr/share/datasets/fashion-mnist]
//
// The i-th count is the number of images of class i (taken in file order from the training
// set); classes without a count are left out. Existing files are never overwritten: the folder
// must not exist yet, and it is built under a temporary name and renamed when complete.
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>

namespace fs = std::filesystem;

namespace {

// Folder names: Fashion-MNIST's "T-shirt/top" has a slash, which no folder name can hold.
const char* const kClassNames[] = {"T-shirt top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

std::vector<std::uint8_t> read_gz(const fs::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path.string() + " (install the dataset-fashion-mnist package)");
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> buf(1 << 20);
  int n;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0)
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  gzclose(f);
  if (n < 0) throw std::runtime_error("cannot decompress " + path.string());
  return out;
}

std::uint32_t be32(const std::uint8_t* p) { return (std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

}  // namespace

int main(int argc, char** argv) {
  fs::path out, source = "/usr/share/datasets/fashion-mnist";
  std::vector<int> counts = {2000, 1000, 500, 250, 125};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value after " << a << "\n";
      return 64;
    }
    if (a == "--out") {
      out = argv[++i];
    } else if (a == "--source") {
      source = argv[++i];
    } else if (a == "--counts") {
      counts.clear();
      std::string s = argv[++i];
      for (std::size_t p = 0; p <= s.size();) {
        const auto q = std::min(s.find(',', p), s.size());
        counts.push_back(std::stoi(s.substr(p, q - p)));
        p = q + 1;
      }
    } else {
      std::cerr << "unknown option " << a
                << "\nusage: make_fashion_mnist --out DIR [--counts 2000,1000,500,250,125] [--source DIR]\n";
      return 64;
    }
  }
  if (out.empty() || counts.empty() || counts.size() > 10) {
    std::cerr << "usage: make_fashion_mnist --out DIR [--counts 2000,1000,500,250,125] [--source DIR]\n";
    return 64;
  }
  if (fs::exists(out)) {
    std::cout << out.string() << " exists already; left as it is\n";
    return 0;
  }
  try {
    const auto images = read_gz(source / "train-images-idx3-ubyte.gz");
    const auto labels = read_gz(source / "train-labels-idx1-ubyte.gz");
    if (images.size() < 16 || be32(images.data()) != 2051 || labels.size() < 8 || be32(labels.data()) != 2049) {
      throw std::runtime_error("unexpected IDX headers in " + source.string());
    }
    const std::uint32_t n = be32(images.data() + 4), rows = be32(images.data() + 8), cols = be32(images.data() + 12);
    const fs::path tmp = out.string() + ".partial";
    fs::remove_all(tmp);
    std::vector<int> written(counts.size(), 0);
    for (std::size_t c = 0; c < counts.size(); ++c) fs::create_directories(tmp / kClassNames[c]);
    for (std::uint32_t i = 0; i < n && i + 8 < labels.size(); ++i) {
      const int label = labels[8 + i];
      if (label >= static_cast<int>(counts.size()) || written[label] >= counts[label]) continue;
      cv::Mat img(static_cast<int>(rows), static_cast<int>(cols), CV_8U,
                  const_cast<std::uint8_t*>(images.data() + 16 + std::size_t(i) * rows * cols));
      const auto file = tmp / kClassNames[label] / fmt::format("{:05}.png", i);
      if (!cv::imwrite(file.string(), img)) throw std::runtime_error("cannot write " + file.string());
      ++written[label];
    }
    fs::rename(tmp, out);
    for (std::size_t c = 0; c < counts.size(); ++c)
      std::cout << fmt::format("{:<12} {:>5}\n", kClassNames[c], written[c]);
    std::cout << "wrote " << out.string() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
