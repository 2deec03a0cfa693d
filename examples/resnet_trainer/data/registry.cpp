#include "data/registry.hpp"

#include "data/cifar10.hpp"
#include "data/idx.hpp"
#include "data/rng.hpp"

namespace trainer {

const std::vector<dataset_info>& known_datasets() {
  static const std::vector<dataset_info> list = {
      {"fashion-mnist",
       "/usr/share/datasets/fashion-mnist",
       "Zalando Fashion-MNIST, 60000+10000 28x28 grey images (IDX, gzip)",
       {0.2860F},
       {0.3530F}},
      {"mnist", "", "MNIST digits, 60000+10000 28x28 grey images (IDX, plain or gzip)", {0.1307F}, {0.3081F}},
      {"cifar10",
       "",
       "CIFAR-10, 50000+10000 32x32 colour images (binary version)",
       {0.4914F, 0.4822F, 0.4465F},
       {0.2470F, 0.2435F, 0.2616F}},
  };
  return list;
}

dataset_pair load_data(const data_options& opt) {
  const dataset_info* info = nullptr;
  for (const auto& d : known_datasets())
    if (d.name == opt.name) info = &d;
  if (!info) {
    std::string names;
    for (const auto& d : known_datasets()) names += (names.empty() ? "" : ", ") + d.name;
    throw data_error("unknown data set '" + opt.name + "': expected one of " + names);
  }
  const std::filesystem::path dir = opt.dir.empty() ? std::filesystem::path(info->default_dir) : opt.dir;
  if (dir.empty())
    throw data_error("data set '" + info->name + "' has no default location; pass --data " + info->name + " DIR");
  dataset_pair p;
  if (info->name == "cifar10") {
    p = load_cifar10_directory(dir);
  } else {
    const std::string hint = info->name == "fashion-mnist"
                                 ? "install dataset-fashion-mnist (apt install dataset-fashion-mnist) or pass "
                                   "--data fashion-mnist DIR"
                                 : "pass --data " + info->name + " DIR with the four IDX files";
    idx_expectations expect;
    expect.num_classes = 10;
    expect.rows = 28;
    expect.cols = 28;
    p = load_idx_directory(dir, info->name, hint, expect);
  }
  if (opt.standard_stats) {
    p.train.mean = p.test.mean = info->standard_mean;
    p.train.std = p.test.std = info->standard_std;
  }
  // Statistics stay those of the full training set, so a subset run
  // normalises exactly like a full one.
  if (opt.train_subset) p.train = take_subset(p.train, opt.train_subset, derive_key(opt.subset_seed, 1));
  if (opt.test_subset) p.test = take_subset(p.test, opt.test_subset, derive_key(opt.subset_seed, 2));
  validate_dataset(p.train, p.train.name);
  validate_dataset(p.test, p.test.name);
  return p;
}

}  // namespace trainer
