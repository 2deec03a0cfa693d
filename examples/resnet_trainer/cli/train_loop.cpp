#include "cli/train_loop.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "nn/cross_entropy.hpp"

namespace trainer {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void check_fits(const model& m, const dataset& d) {
  if (d.channels != m.in_channels() || d.height != m.input_h() || d.width != m.input_w())
    throw training_error(d.name + " has " + std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" +
                         std::to_string(d.width) + " images but model " + m.name() + " expects " +
                         std::to_string(m.in_channels()) + "x" + std::to_string(m.input_h()) + "x" +
                         std::to_string(m.input_w()) + "; build the model for this data set");
  if (d.num_classes > m.num_classes())
    throw training_error(d.name + " has " + std::to_string(d.num_classes) + " classes but model " + m.name() +
                         " outputs " + std::to_string(m.num_classes()));
}

// Iteration counts beyond int64 would wrap; say so instead of failing later
// with a misleading resume-point or schedule error.
std::int64_t epoch_iterations(std::int64_t epochs, std::int64_t per_epoch) {
  if (per_epoch > 0 && epochs > std::numeric_limits<std::int64_t>::max() / per_epoch)
    throw training_error(std::to_string(epochs) + " epochs of " + std::to_string(per_epoch) +
                         " batches overflow a 64-bit iteration count; train for fewer epochs");
  return epochs * per_epoch;
}

void check_tensor_finite(const float* p, std::size_t n, const std::string& what, const std::string& when) {
  std::size_t first = n;
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) {
      first = i;
      break;
    }
  if (first == n) return;
  std::size_t count = 0;
  for (std::size_t i = first; i < n; ++i) count += std::isfinite(p[i]) ? 0 : 1;
  throw training_error(when + ": " + what + " holds " + std::to_string(count) + " non-finite value" +
                       (count == 1 ? "" : "s") + " (first: " + std::to_string(p[first]) + " at index " +
                       std::to_string(first) +
                       "); the run diverged: lower the learning rate (--lr, and --min-lr or --warmup-start if the "
                       "schedule uses them) or check the data");
}

}  // namespace

void check_finite_state(model& m, sgd* opt, const std::string& when) {
  for (const named_tensor& t : m.tensors())
    if (const float* p = t.f32()) check_tensor_finite(p, t.numel(), "tensor '" + t.name + "'", when);
  if (opt != nullptr && opt->has_momentum())
    for (const named_tensor& t : opt->momentum_buffers())
      check_tensor_finite(t.f32(), t.numel(), "the momentum buffer of '" + t.name + "'", when);
}

batch_source loader_source(batch_loader& loader, std::uint64_t epoch) {
  auto b = std::make_shared<batch>();
  auto started = std::make_shared<bool>(false);
  return [&loader, epoch, b, started](const float*& x, const std::int32_t*& y, int& n) {
    if (!*started) {
      loader.start_epoch(epoch);
      *started = true;
    }
    if (!loader.next(*b)) return false;
    x = b->images.data();
    y = b->labels.data();
    n = static_cast<int>(b->size);
    return true;
  };
}

eval_result evaluate_dataset(model& m, const dataset& data, std::size_t batch_size) {
  check_fits(m, data);
  loader_config cfg;
  cfg.batch_size = batch_size;
  cfg.shuffle = false;
  batch_loader loader(data, cfg);
  const eval_result r = evaluate(m, loader_source(loader, 0));
  if (!std::isfinite(r.loss))
    throw training_error("the evaluation loss on " + data.name + " (" + std::to_string(r.count) + " images) is " +
                         std::to_string(r.loss) + ": the network's logits overflow or are NaN (weights too large, "
                         "e.g. from a diverged run; retrain with a lower learning rate)");
  return r;
}

loop_state train_loop(model& m, sgd& opt, const dataset& train, const dataset* test, const loop_config& cfg,
                      loop_state start, const training_hooks& hooks) {
  check_fits(m, train);
  if (test) check_fits(m, *test);
  cfg.schedule.validate();
  batch_loader loader(train, cfg.train_loader);
  const auto per_epoch = static_cast<std::int64_t>(loader.batches_per_epoch());
  const std::int64_t limit = cfg.max_iterations > 0 ? cfg.max_iterations : epoch_iterations(cfg.epochs, per_epoch);
  if (start.iteration != epoch_iterations(start.epoch, per_epoch) && start.iteration < limit)
    throw training_error("cannot resume at epoch " + std::to_string(start.epoch) + ", iteration " +
                         std::to_string(start.iteration) + ": an epoch has " + std::to_string(per_epoch) +
                         " batches, so a checkpoint at that epoch boundary has iteration " +
                         std::to_string(start.epoch * per_epoch) +
                         "; the data set, subset or batch size differs from the checkpointed run");

  const int classes = m.num_classes();
  cross_entropy ce;
  std::vector<float> logits, dlogits;
  batch b;
  loop_state state = start;
  if (hooks.begin) hooks.begin(state);

  while (state.epoch < cfg.epochs && state.iteration < limit) {
    const std::int64_t e = state.epoch;
    const auto t_epoch = clock_type::now();
    if (hooks.epoch_begin) hooks.epoch_begin(e, loader.batches_per_epoch());
    loader.start_epoch(static_cast<std::uint64_t>(e));
    double loss_sum = 0.0;
    std::size_t correct = 0, images = 0;
    step_info s;
    s.epoch = e;
    s.batches = loader.batches_per_epoch();
    double first_lr = 0.0;
    while (state.iteration < limit && loader.next(b)) {
      const int n = static_cast<int>(b.size);
      logits.resize(b.size * static_cast<std::size_t>(classes));
      dlogits.resize(logits.size());
      s.batch = b.index;
      s.iteration = state.iteration;
      s.lr = cfg.schedule.at(state.iteration);
      if (b.index == 0 || images == 0) first_lr = s.lr;

      m.forward(b.images.data(), n, logits.data(), true);
      const float loss = ce.forward(logits.data(), b.labels.data(), n, classes);
      if (!std::isfinite(loss))
        throw training_error("the training loss became " + std::to_string(loss) + " at epoch " + std::to_string(e + 1) +
                             ", batch " + std::to_string(b.index) + " (lr " + std::to_string(s.lr) +
                             "); lower the learning rate or check the data");
      ce.backward(dlogits.data());
      m.backward(dlogits.data());

      s.loss = loss;
      s.correct = static_cast<std::size_t>(ce.correct());
      s.size = b.size;
      if (hooks.after_backward) hooks.after_backward(s);
      opt.set_lr(static_cast<float>(s.lr));
      opt.step();
      ++state.iteration;
      if (hooks.after_step) hooks.after_step(s);

      loss_sum += static_cast<double>(loss) * n;
      correct += s.correct;
      images += b.size;
      s.epoch_images = images;
      s.epoch_loss = loss_sum / static_cast<double>(images);
      s.epoch_accuracy = static_cast<double>(correct) / static_cast<double>(images);
      s.epoch_seconds = seconds_since(t_epoch);
      if (hooks.on_batch) hooks.on_batch(s);
    }
    const double train_seconds = seconds_since(t_epoch);
    if (hooks.epoch_end) hooks.epoch_end(e);
    ++state.epoch;
    // The loss check above sees each step's input weights, never what the
    // epoch's last step wrote; check the state before anything reports or
    // saves it.
    check_finite_state(m, &opt, "after epoch " + std::to_string(state.epoch) + " (lr " + std::to_string(s.lr) +
                                    " at its last step)");

    epoch_report r;
    r.epoch = state.epoch;
    r.iteration = state.iteration;
    r.lr = first_lr;
    r.lr_last = s.lr;
    r.train_images = images;
    if (images > 0) {
      r.train_loss = loss_sum / static_cast<double>(images);
      r.train_accuracy = static_cast<double>(correct) / static_cast<double>(images);
    }
    r.train_seconds = train_seconds;
    r.images_per_second = train_seconds > 0 ? static_cast<double>(images) / train_seconds : 0.0;
    if (test && cfg.evaluate_each_epoch) {
      try {
        r.test = evaluate_dataset(m, *test, cfg.eval_batch_size);
      } catch (const training_error& err) {
        throw training_error("after epoch " + std::to_string(state.epoch) + ": " + err.what());
      }
    }
    r.wall_seconds = seconds_since(t_epoch);
    if (hooks.on_epoch) hooks.on_epoch(r);
    if (hooks.on_checkpoint) hooks.on_checkpoint(state, r);
  }
  if (hooks.finalize) hooks.finalize(state);
  return state;
}

}  // namespace trainer
