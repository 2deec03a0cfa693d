// Named data sets for the command line: "fashion-mnist" (default, Debian's
// dataset-fashion-mnist), "mnist" and "cifar10" (user-supplied files).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.hpp"

namespace trainer {

struct data_options {
  std::string name = "fashion-mnist";
  std::filesystem::path dir;     // empty: the data set's default directory
  std::size_t train_subset = 0;  // 0: all; else a fixed, seeded subset of this many images
  std::size_t test_subset = 0;
  std::uint64_t subset_seed = 0;
  bool standard_stats = false;  // published mean/std instead of the training set's
};

struct dataset_info {
  std::string name;
  std::string default_dir;  // empty: the user must name a directory
  std::string description;
  std::vector<float> standard_mean;
  std::vector<float> standard_std;
};

[[nodiscard]] const std::vector<dataset_info>& known_datasets();

// Loads, subsets and checks the named data set; data_error (with a fix)
// for an unknown name, a missing directory or bad files.
[[nodiscard]] dataset_pair load_data(const data_options& opt);

}  // namespace trainer
