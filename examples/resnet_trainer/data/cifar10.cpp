#include "data/cifar10.hpp"

#include <algorithm>

#include "data/idx.hpp"

namespace trainer {

dataset load_cifar10_batches(const std::vector<std::filesystem::path>& files, std::string name) {
  dataset d;
  d.name = std::move(name);
  d.channels = 3;
  d.height = 32;
  d.width = 32;
  d.num_classes = 10;
  constexpr std::size_t pixels = cifar10_record_bytes - 1;
  for (const auto& path : files) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path);
    const std::string src = std::string("'") + path.string() + "'";
    if (bytes.empty() || bytes.size() % cifar10_record_bytes != 0)
      throw data_error(src + ": size " + std::to_string(bytes.size()) + " bytes is not a whole number of " +
                       std::to_string(cifar10_record_bytes) + "-byte CIFAR-10 records (expected " +
                       std::to_string(cifar10_records_per_batch * cifar10_record_bytes) +
                       " bytes for a released batch); the file is truncated or not a CIFAR-10 binary batch "
                       "(use the 'CIFAR-10 binary version', cifar-10-binary.tar.gz)");
    const std::size_t n = bytes.size() / cifar10_record_bytes;
    const std::size_t base = d.labels.size();
    d.labels.resize(base + n);
    d.images.resize((base + n) * pixels);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* rec = bytes.data() + i * cifar10_record_bytes;
      if (rec[0] > 9)
        throw data_error(src + ": record " + std::to_string(i) + " has label " + std::to_string(rec[0]) +
                         ", expected 0..9; the file is corrupt or not a CIFAR-10 binary batch "
                         "(CIFAR-100 binaries have two label bytes)");
      d.labels[base + i] = rec[0];
      std::copy_n(rec + 1, pixels, d.images.begin() + static_cast<std::ptrdiff_t>((base + i) * pixels));
    }
  }
  return d;
}

dataset_pair load_cifar10_directory(const std::filesystem::path& dir) {
  const char* hint =
      "download the CIFAR-10 binary version (cifar-10-binary.tar.gz from "
      "https://www.cs.toronto.edu/~kriz/cifar.html), unpack it and pass --data cifar10 DIR";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw data_error("CIFAR-10 directory '" + dir.string() + "' does not exist; " + hint);
  std::filesystem::path root = dir;
  if (!std::filesystem::exists(root / "test_batch.bin", ec) &&
      std::filesystem::exists(dir / "cifar-10-batches-bin" / "test_batch.bin", ec))
    root = dir / "cifar-10-batches-bin";
  std::vector<std::filesystem::path> train_files;
  for (int i = 1; i <= 5; ++i) train_files.push_back(root / ("data_batch_" + std::to_string(i) + ".bin"));
  const std::filesystem::path test_file = root / "test_batch.bin";
  for (const auto& f : train_files)
    if (!std::filesystem::is_regular_file(f, ec))
      throw data_error("missing CIFAR-10 file '" + f.string() +
                       "' (expected data_batch_1..5.bin and test_batch.bin); " + hint);
  if (!std::filesystem::is_regular_file(test_file, ec))
    throw data_error("missing CIFAR-10 file '" + test_file.string() + "'; " + hint);
  dataset_pair p;
  p.train = load_cifar10_batches(train_files, "cifar10/train");
  p.test = load_cifar10_batches({test_file}, "cifar10/test");
  // A file cut at a record boundary is a whole number of records, so only
  // its count shows it: the six released files hold 10000 records each.
  std::vector<std::filesystem::path> all = train_files;
  all.push_back(test_file);
  std::vector<std::uintmax_t> records;  // one stat per file, not one per comparison
  for (const auto& f : all) records.push_back(std::filesystem::file_size(f) / cifar10_record_bytes);
  const auto [fewest, most] = std::minmax_element(records.begin(), records.end());
  if (*fewest != *most)
    throw data_error("CIFAR-10 file '" + all[static_cast<std::size_t>(fewest - records.begin())].string() + "' holds " +
                     std::to_string(*fewest) + (*fewest == 1 ? " record" : " records") + " but '" +
                     all[static_cast<std::size_t>(most - records.begin())].filename().string() + "' holds " +
                     std::to_string(*most) + "; the six files of the binary version hold " +
                     std::to_string(cifar10_records_per_batch) + " each, so this one is truncated: " + hint);
  compute_channel_stats(p.train, p.train.mean, p.train.std);
  p.test.mean = p.train.mean;
  p.test.std = p.train.std;
  return p;
}

}  // namespace trainer
