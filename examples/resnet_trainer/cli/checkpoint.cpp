#include "cli/checkpoint.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>

#include "io/atomic_file.hpp"

namespace trainer {
namespace {

std::vector<std::uint64_t> to_shape(const std::vector<std::int64_t>& s) { return {s.begin(), s.end()}; }

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  out += ']';
  return out;
}

std::span<const std::uint8_t> raw_bytes(const named_tensor& t) {
  const std::size_t elem = t.type == dtype::f32 ? sizeof(float) : sizeof(std::int64_t);
  return {static_cast<const std::uint8_t*>(t.data), t.numel() * elem};
}

st_dtype st_type(dtype t) { return t == dtype::f32 ? st_dtype::F32 : st_dtype::I64; }

nlohmann::json parse_json_field(const std::map<std::string, std::string>& md, const std::string& key,
                                const std::string& source) {
  const auto it = md.find(key);
  if (it == md.end()) throw checkpoint_error(source + ": metadata entry '" + key + "' is missing");
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw checkpoint_error(source + ": metadata entry '" + key + "' is not valid JSON (" + e.what() + ")");
  }
}

std::int64_t parse_int_field(const std::map<std::string, std::string>& md, const std::string& key,
                             const std::string& source) {
  const nlohmann::json j = parse_json_field(md, key, source);
  if (!j.is_number_integer())
    throw checkpoint_error(source + ": metadata entry '" + key + "' must be an integer, found '" + md.at(key) + "'");
  return j.get<std::int64_t>();
}

// A NaN/Inf weight would make eval print a finite-but-wrong or null loss and
// a resumed run train on garbage; a negative running variance would make BN
// divide by the square root of a negative number. Both can only come from a
// diverged run or a damaged file, so refuse them on load.
void check_loaded_values(const st_tensor& s, const std::string& name, bool variance, const std::string& source) {
  const std::size_t n = s.bytes.size() / sizeof(float);
  for (std::size_t i = 0; i < n; ++i) {
    float v = 0.0F;
    std::memcpy(&v, s.bytes.data() + i * sizeof(float), sizeof v);  // the bytes need not be float-aligned
    if (!std::isfinite(v))
      throw checkpoint_error(source + ": tensor '" + name + "' holds a non-finite value (" + std::to_string(v) +
                             " at index " + std::to_string(i) +
                             "); the checkpoint comes from a diverged run or is damaged: use an earlier checkpoint");
    if (variance && v < 0.0F)
      throw checkpoint_error(source + ": tensor '" + name + "' holds a negative running variance (" +
                             std::to_string(v) + " at index " + std::to_string(i) +
                             "); a variance is >= 0, so the checkpoint is damaged: use another checkpoint");
  }
}

bool is_running_var(const std::string& name) {
  static constexpr std::string_view suffix = ".running_var";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// make_model reads the config's integers as int, which would silently wrap
// 4294967297 to 1; every integer in a model config is a size or an index.
void check_config_integers(const nlohmann::json& j, const std::string& path, const std::string& source) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) check_config_integers(v, path.empty() ? k : path + "." + k, source);
  } else if (j.is_array()) {
    for (std::size_t i = 0; i < j.size(); ++i)
      check_config_integers(j[i], path + "[" + std::to_string(i) + "]", source);
  } else if (j.is_number_unsigned()) {
    if (j.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
      throw checkpoint_error(source + ": metadata 'model_config' entry '" + path + "' = " + dump_json(j) +
                             " does not fit a 32-bit int; the checkpoint is damaged");
  } else if (j.is_number_integer()) {
    const auto v = j.get<std::int64_t>();
    if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min())
      throw checkpoint_error(source + ": metadata 'model_config' entry '" + path + "' = " + dump_json(j) +
                             " does not fit a 32-bit int; the checkpoint is damaged");
  }
}

nlohmann::json parse_object_field(const std::map<std::string, std::string>& md, const std::string& key,
                                  const std::string& source) {
  nlohmann::json j = parse_json_field(md, key, source);
  if (!j.is_object())
    throw checkpoint_error(source + ": metadata entry '" + key + "' must be a JSON object, found " +
                           std::string(j.type_name()) + "; the checkpoint is damaged or not from psap-train");
  return j;
}

const std::set<std::string> known_keys = {
    "format",   "checkpoint_version", "epoch",     "iteration",  "seed",    "model",  "model_config",
    "settings", "lr_schedule",        "optimizer", "data_order", "threads", "metrics"};

}  // namespace

void add_model_tensors(tensor_archive& a, model& m) {
  for (const named_tensor& t : m.tensors()) a.add(t.name, st_type(t.type), to_shape(t.shape), raw_bytes(t));
}

void add_optimizer_tensors(tensor_archive& a, sgd& opt) {
  if (!opt.has_momentum()) return;
  for (const named_tensor& t : opt.momentum_buffers())
    a.add(momentum_prefix + t.name, st_dtype::F32, to_shape(t.shape), raw_bytes(t));
}

void load_model_tensors(const tensor_archive& a, model& m, const std::string& source) {
  std::set<std::string> expected;
  for (const named_tensor& t : m.tensors()) {
    expected.insert(t.name);
    if (!a.contains(t.name))
      throw checkpoint_error(source + ": tensor '" + t.name + "' of model " + m.name() +
                             " is missing; the checkpoint belongs to a different architecture");
    const st_tensor& s = a.at(t.name);
    if (s.dtype != st_type(t.type) || s.shape != to_shape(t.shape))
      throw checkpoint_error(source + ": tensor '" + t.name + "' is " + std::string(dtype_name(s.dtype)) + " " +
                             shape_text(s.shape) + ", model " + m.name() + " expects " +
                             std::string(dtype_name(st_type(t.type))) + " " + shape_text(to_shape(t.shape)));
    if (t.type == dtype::f32) check_loaded_values(s, t.name, is_running_var(t.name), source);
    std::memcpy(t.data, s.bytes.data(), s.bytes.size());
  }
  for (const auto& [name, _] : a.tensors())
    if (!expected.count(name) && name.rfind("optim.", 0) != 0 && name.rfind("pruner.", 0) != 0)
      throw checkpoint_error(source + ": unexpected tensor '" + name + "' for model " + m.name() +
                             "; the checkpoint belongs to a different architecture");
}

void load_optimizer_tensors(const tensor_archive& a, sgd& opt, const std::string& source) {
  bool any = false, all = true;
  for (const named_tensor& t : opt.momentum_buffers()) {
    const std::string key = momentum_prefix + t.name;
    if (!a.contains(key)) {
      all = false;
      continue;
    }
    any = true;
    const st_tensor& s = a.at(key);
    if (s.dtype != st_dtype::F32 || s.shape != to_shape(t.shape))
      throw checkpoint_error(source + ": momentum buffer '" + key + "' is " + std::string(dtype_name(s.dtype)) + " " +
                             shape_text(s.shape) + ", expected F32 " + shape_text(to_shape(t.shape)));
    check_loaded_values(s, key, false, source);
    std::memcpy(t.data, s.bytes.data(), s.bytes.size());
  }
  if (any && !all)
    throw checkpoint_error(source + ": only some optimizer momentum buffers are present; the checkpoint is incomplete");
  opt.set_has_momentum(any);
}

std::map<std::string, std::string> encode_meta(const checkpoint_meta& meta) {
  std::map<std::string, std::string> md = meta.extra;
  md["format"] = "pt";  // tensor names and layouts follow PyTorch's state_dict
  md["checkpoint_version"] = checkpoint_version;
  md["epoch"] = std::to_string(meta.state.epoch);
  md["iteration"] = std::to_string(meta.state.iteration);
  md["seed"] = std::to_string(meta.seed);
  md["model"] = meta.model_name;
  md["model_config"] = dump_json(meta.model_config);
  md["settings"] = dump_json(meta.settings);
  md["lr_schedule"] = dump_json(meta.schedule.to_json());
  md["optimizer"] = dump_json({{"kind", "sgd"},
                               {"lr", meta.sgd.lr},
                               {"momentum", meta.sgd.momentum},
                               {"dampening", meta.sgd.dampening},
                               {"weight_decay", meta.sgd.weight_decay},
                               {"nesterov", meta.sgd.nesterov},
                               {"has_momentum", meta.has_momentum}});
  // The visiting order of epoch e is epoch_order(n, seed, e) (data/rng.hpp);
  // checkpoints are taken at epoch boundaries, so the next batch is batch 0.
  md["data_order"] = dump_json({{"scheme", "splitmix64-fisher-yates-v1"},
                                {"seed", meta.seed},
                                {"next_epoch", meta.state.epoch},
                                {"next_batch", 0}});
  md["threads"] = std::to_string(meta.threads);
  md["metrics"] = dump_json(meta.metrics);
  return md;
}

checkpoint_meta decode_meta(const std::map<std::string, std::string>& md, const std::string& source) {
  const auto version = md.find("checkpoint_version");
  if (version == md.end())
    throw checkpoint_error(source + ": no 'checkpoint_version' in the metadata; not a psap-train checkpoint");
  if (version->second != checkpoint_version)
    throw checkpoint_error(source + ": checkpoint version " + version->second + ", this psap-train reads version " +
                           checkpoint_version);
  checkpoint_meta m;
  m.state.epoch = parse_int_field(md, "epoch", source);
  m.state.iteration = parse_int_field(md, "iteration", source);
  if (m.state.epoch < 0 || m.state.iteration < 0)
    throw checkpoint_error(source + ": negative epoch or iteration in the metadata");
  const nlohmann::json seed = parse_json_field(md, "seed", source);
  if (!seed.is_number_unsigned()) throw checkpoint_error(source + ": metadata 'seed' must be a non-negative integer");
  m.seed = seed.get<std::uint64_t>();
  if (md.count("model")) m.model_name = md.at("model");
  m.model_config = parse_object_field(md, "model_config", source);
  check_config_integers(m.model_config, "", source);
  m.settings = parse_object_field(md, "settings", source);
  try {
    m.schedule = lr_schedule::from_json(parse_json_field(md, "lr_schedule", source));
    const nlohmann::json o = parse_json_field(md, "optimizer", source);
    m.sgd.lr = o.at("lr").get<float>();
    m.sgd.momentum = o.at("momentum").get<float>();
    m.sgd.dampening = o.at("dampening").get<float>();
    m.sgd.weight_decay = o.at("weight_decay").get<float>();
    m.sgd.nesterov = o.at("nesterov").get<bool>();
    m.has_momentum = o.at("has_momentum").get<bool>();
  } catch (const checkpoint_error&) {
    throw;
  } catch (const std::exception& e) {
    throw checkpoint_error(source + ": bad optimizer or LR schedule metadata (" + e.what() + ")");
  }
  m.threads = static_cast<int>(parse_int_field(md, "threads", source));
  if (md.count("metrics")) m.metrics = parse_object_field(md, "metrics", source);
  for (const auto& [k, v] : md)
    if (!known_keys.count(k)) m.extra[k] = v;
  return m;
}

void save_checkpoint(const std::filesystem::path& path, model& m, sgd* opt, const checkpoint_meta& meta,
                     const std::function<void(tensor_archive&)>& extra) {
  // A backstop for saves outside train_loop's per-epoch check (a pruner's
  // finalize, BN recalibration): a checkpoint never holds a NaN or Inf.
  check_finite_state(m, opt, "before writing " + quoted(path));
  tensor_archive a;
  add_model_tensors(a, m);
  if (opt) add_optimizer_tensors(a, *opt);
  if (extra) extra(a);
  a.metadata = encode_meta(meta);
  save_safetensors(path, a);
}

loaded_checkpoint read_checkpoint(const std::filesystem::path& path) {
  loaded_checkpoint ck;
  ck.archive = load_safetensors(path);
  ck.meta = decode_meta(ck.archive.metadata, quoted(path));
  return ck;
}

std::unique_ptr<model> model_from_checkpoint(const loaded_checkpoint& ck, const std::string& source) {
  std::unique_ptr<model> m;
  try {
    m = make_model(ck.meta.model_config, 0);
  } catch (const std::exception& e) {
    throw checkpoint_error(source + ": cannot rebuild the recorded model (" + e.what() + ")");
  }
  load_model_tensors(ck.archive, *m, source);
  return m;
}

}  // namespace trainer
