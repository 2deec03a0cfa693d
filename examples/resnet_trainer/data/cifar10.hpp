// CIFAR-10 "binary version" batches: each record is 1 label byte (0..9)
// followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
// 32x32), i.e. already planar CHW. A released batch holds 10000 records.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.hpp"

namespace trainer {

inline constexpr std::size_t cifar10_record_bytes = 1 + 3 * 32 * 32;
inline constexpr std::size_t cifar10_records_per_batch = 10000;

// Concatenates the records of the given batch files. Each file must hold a
// whole, non-zero number of records (released files hold 10000); labels
// must be 0..9. mean/std are left empty.
[[nodiscard]] dataset load_cifar10_batches(const std::vector<std::filesystem::path>& files, std::string name);

// data_batch_1..5.bin (train) and test_batch.bin (test) from `dir` or from
// `dir`/cifar-10-batches-bin (the layout the official tarball unpacks to).
// Per-channel mean/std from the training set.
[[nodiscard]] dataset_pair load_cifar10_directory(const std::filesystem::path& dir);

}  // namespace trainer
