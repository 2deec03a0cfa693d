// Progress on stderr: a redrawn one-line bar on a terminal, periodic plain
// lines otherwise (logs, CI), and one summary line per epoch in both cases.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cli/train_loop.hpp"

namespace trainer {

enum class progress_mode { automatic, bar, lines, none };

// "auto", "bar", "lines", "none"; throws std::invalid_argument otherwise.
[[nodiscard]] progress_mode parse_progress_mode(const std::string& s);

class progress_reporter {
 public:
  // automatic picks bar when `out` is a terminal, lines otherwise.
  progress_reporter(std::FILE* out, progress_mode mode, std::int64_t total_epochs, double line_interval_s = 15.0);

  void epoch_begin(std::int64_t epoch, std::size_t batches);
  void batch(const step_info& s);
  void epoch_done(const epoch_report& r);
  // A line of text that must not be mangled by the bar.
  void message(const std::string& text);

  [[nodiscard]] progress_mode mode() const noexcept { return mode_; }

 private:
  void clear_bar();
  std::FILE* out_;
  progress_mode mode_;
  std::int64_t total_epochs_;
  double line_interval_;
  bool bar_shown_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
  std::chrono::steady_clock::time_point last_line_{};
};

// "1:02:03" / "2:03" for an ETA.
[[nodiscard]] std::string format_duration(double seconds);

}  // namespace trainer
