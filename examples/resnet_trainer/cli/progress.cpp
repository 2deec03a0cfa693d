#include "cli/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace trainer {

progress_mode parse_progress_mode(const std::string& s) {
  if (s == "auto") return progress_mode::automatic;
  if (s == "bar") return progress_mode::bar;
  if (s == "lines") return progress_mode::lines;
  if (s == "none") return progress_mode::none;
  throw std::invalid_argument("unknown progress mode '" + s + "' (expected auto, bar, lines or none)");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto t = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

progress_reporter::progress_reporter(std::FILE* out, progress_mode mode, std::int64_t total_epochs,
                                     double line_interval_s)
    : out_(out), mode_(mode), total_epochs_(total_epochs), line_interval_(line_interval_s) {
  if (mode_ == progress_mode::automatic) mode_ = ::isatty(::fileno(out_)) ? progress_mode::bar : progress_mode::lines;
}

void progress_reporter::clear_bar() {
  if (bar_shown_) {
    std::fputs("\r\x1b[2K", out_);
    bar_shown_ = false;
  }
}

void progress_reporter::message(const std::string& text) {
  if (mode_ == progress_mode::none) return;
  clear_bar();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void progress_reporter::epoch_begin(std::int64_t /*epoch*/, std::size_t /*batches*/) {
  last_line_ = std::chrono::steady_clock::now();
}

void progress_reporter::batch(const step_info& s) {
  if (mode_ == progress_mode::none) return;
  const auto now = std::chrono::steady_clock::now();
  const std::size_t done = s.batch + 1;
  const bool last = done == s.batches;
  const double rate = s.epoch_seconds > 0 ? static_cast<double>(s.epoch_images) / s.epoch_seconds : 0.0;
  const double per_batch = done > 0 ? s.epoch_seconds / static_cast<double>(done) : 0.0;
  const double eta = per_batch * static_cast<double>(s.batches - done);
  // Later epochs are assumed as long as this one (evaluation not counted).
  const auto epochs_left = static_cast<double>(std::max<std::int64_t>(0, total_epochs_ - s.epoch - 1));
  const double run_eta = eta + per_batch * static_cast<double>(s.batches) * epochs_left;
  if (mode_ == progress_mode::bar) {
    // ~10 redraws a second keep the terminal cheap.
    if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int width = 24;
    const int filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(done) /
                                        static_cast<double>(std::max<std::size_t>(s.batches, 1)));
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '.');
    std::fprintf(out_, "\r\x1b[2Kepoch %lld/%lld [%s] %zu/%zu  loss %.4f  acc %5.2f%%  %.0f img/s  ETA %s (run %s)",
                 static_cast<long long>(s.epoch + 1), static_cast<long long>(total_epochs_), bar.c_str(), done,
                 s.batches, s.epoch_loss, 100.0 * s.epoch_accuracy, rate, format_duration(eta).c_str(),
                 format_duration(run_eta).c_str());
    std::fflush(out_);
    bar_shown_ = true;
  } else {
    if (last || std::chrono::duration<double>(now - last_line_).count() < line_interval_) return;
    last_line_ = now;
    std::fprintf(out_, "epoch %lld/%lld  batch %zu/%zu  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s (run %s)\n",
                 static_cast<long long>(s.epoch + 1), static_cast<long long>(total_epochs_), done, s.batches,
                 s.epoch_loss, 100.0 * s.epoch_accuracy, rate, format_duration(eta).c_str(),
                 format_duration(run_eta).c_str());
    std::fflush(out_);
  }
}

void progress_reporter::epoch_done(const epoch_report& r) {
  if (mode_ == progress_mode::none) return;
  clear_bar();
  std::string test;
  if (r.test) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  test loss %.4f acc %.2f%%", r.test->loss, 100.0 * r.test->accuracy);
    test = buf;
  }
  std::fprintf(out_, "epoch %lld/%lld  lr %.5g  train loss %.4f acc %.2f%%%s  %.0f img/s  %.1f s\n",
               static_cast<long long>(r.epoch), static_cast<long long>(total_epochs_), r.lr, r.train_loss,
               100.0 * r.train_accuracy, test.c_str(), r.images_per_second, r.wall_seconds);
  std::fflush(out_);
}

}  // namespace trainer
