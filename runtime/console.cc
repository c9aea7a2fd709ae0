#include "runtime/console.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "absl/strings/str_format.h"

namespace fedsim {
namespace {

double Eta(const MetricsRow& row, std::int64_t total) {
  const std::int64_t done = row.round + 1;
  if (done <= 0) return 0.0;
  return row.wall_time_s / static_cast<double>(done) *
         static_cast<double>(std::max<std::int64_t>(0, total - done));
}

// JSON has no NaN or infinity: unmeasured values are left out, infinite
// ones (epsilon with a zero noise multiplier) are null.
void PutNumber(nlohmann::json& j, const char* key, double v) {
  if (std::isnan(v)) return;
  if (std::isinf(v)) {
    j[key] = nullptr;
  } else {
    j[key] = v;
  }
}

}  // namespace

void ProgressState::Update(const MetricsRow& row) {
  const auto keep = [](double next, double& into) {
    if (!std::isnan(next)) into = next;
  };
  MetricsRow merged = latest;
  merged.round = row.round;
  merged.wall_time_s = row.wall_time_s;
  merged.participants = row.participants;
  merged.bytes_up = row.bytes_up;
  merged.bytes_down = row.bytes_down;
  merged.model_hash = row.model_hash;
  keep(row.train_loss, merged.train_loss);
  keep(row.test_loss, merged.test_loss);
  keep(row.test_accuracy, merged.test_accuracy);
  keep(row.client_loss, merged.client_loss);
  keep(row.dist_to_opt, merged.dist_to_opt);
  keep(row.epsilon_max, merged.epsilon_max);
  keep(row.epsilon_mean, merged.epsilon_mean);
  latest = merged;
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0.0)) seconds = 0.0;
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string ProgressText(const ProgressState& state, std::int64_t total) {
  const MetricsRow& row = state.latest;
  const std::int64_t done = row.round + 1;
  std::string text = absl::StrFormat(
      "round %*d/%d", static_cast<int>(std::to_string(total).size()), done, total);
  if (!std::isnan(row.test_accuracy)) {
    text += absl::StrFormat("  test_acc %.4f", row.test_accuracy);
  }
  if (!std::isnan(row.test_loss)) text += absl::StrFormat("  test_loss %.4f", row.test_loss);
  if (std::isnan(row.test_loss) && !std::isnan(row.client_loss)) {
    text += absl::StrFormat("  client_loss %.4f", row.client_loss);
  }
  if (!std::isnan(row.dist_to_opt)) {
    text += absl::StrFormat("  dist_to_opt %.3e", row.dist_to_opt);
  }
  if (!std::isnan(row.epsilon_max)) {
    text += absl::StrFormat("  eps %.3g", row.epsilon_max);
  }
  text += absl::StrFormat("  %s  eta %s", FormatDuration(row.wall_time_s),
                          FormatDuration(Eta(row, total)));
  return text;
}

std::string ProgressBar(std::int64_t done, std::int64_t total, int width) {
  const std::int64_t filled =
      total <= 0 ? width
                 : std::clamp<std::int64_t>(done * width / total, 0, width);
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '-') + "] ";
}

nlohmann::json ProgressJson(const ProgressState& state, std::int64_t total) {
  const MetricsRow& row = state.latest;
  nlohmann::json j = {{"event", "progress"},
                      {"round", row.round},
                      {"rounds", total},
                      {"wall_time_s", row.wall_time_s},
                      {"eta_s", Eta(row, total)}};
  PutNumber(j, "train_loss", row.train_loss);
  PutNumber(j, "test_loss", row.test_loss);
  PutNumber(j, "test_accuracy", row.test_accuracy);
  PutNumber(j, "client_loss", row.client_loss);
  PutNumber(j, "dist_to_opt", row.dist_to_opt);
  PutNumber(j, "epsilon_max", row.epsilon_max);
  PutNumber(j, "epsilon_mean", row.epsilon_mean);
  j["participants"] = row.participants;
  j["bytes_up"] = row.bytes_up;
  j["bytes_down"] = row.bytes_down;
  j["model_hash"] = row.model_hash;
  return j;
}

ProgressFn MakeConsoleProgress(std::FILE* out, ProgressMode mode, bool tty) {
  if (mode == ProgressMode::kQuiet) return nullptr;
  struct Shared {
    std::mutex mu;
    ProgressState state;
  };
  auto shared = std::make_shared<Shared>();
  return [out, mode, tty, shared](const MetricsRow& row, std::int64_t total) {
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->state.Update(row);
    const std::int64_t done = row.round + 1;
    if (mode == ProgressMode::kJson) {
      std::fprintf(out, "%s\n", ProgressJson(shared->state, total).dump().c_str());
    } else if (tty) {
      std::fprintf(out, "\r\033[K%s%s", ProgressBar(done, total, 24).c_str(),
                   ProgressText(shared->state, total).c_str());
      if (done >= total) std::fputc('\n', out);
    } else {
      const std::int64_t every = std::max<std::int64_t>(1, total / 20);
      if (done % every == 0 || done >= total || done == 1) {
        std::fprintf(out, "%s\n", ProgressText(shared->state, total).c_str());
      }
    }
    std::fflush(out);
  };
}

ProgressFn MakeConsoleProgress(std::FILE* out, ProgressMode mode) {
  return MakeConsoleProgress(out, mode, ::isatty(::fileno(out)) == 1);
}

void PrintSummary(std::FILE* out, const CoordinatorRun& run,
                  const RunSummary& s) {
  const auto& c = run.config;
  const Experiment& e = *run.experiment;
  std::fprintf(out, "fedsim: %s  %s, %lld clients, %lld parameters, %lld rounds in %.2f s\n",
               c.name().empty() ? "(unnamed)" : c.name().c_str(),
               AlgorithmName(run).c_str(),
               static_cast<long long>(e.num_clients()),
               static_cast<long long>(e.num_parameters()),
               static_cast<long long>(s.rounds), s.wall_time_s);
  if (!std::isnan(s.last.test_accuracy)) {
    std::fprintf(out, "  final test accuracy %.4f (best %.4f), test loss %.4f\n",
                 s.last.test_accuracy, s.best_accuracy, s.last.test_loss);
  } else if (!std::isnan(s.last.test_loss)) {
    std::fprintf(out, "  final test loss %.6g\n", s.last.test_loss);
  }
  if (!std::isnan(s.last.dist_to_opt)) {
    std::fprintf(out, "  distance to the optimum %.6g\n", s.last.dist_to_opt);
  }
  std::fprintf(out, "  model_hash %s\n  run directory %s\n",
               s.last.model_hash.c_str(), s.out_dir.c_str());
}

void PrintSummaryJson(std::FILE* out, const CoordinatorRun& run,
                      const RunSummary& s) {
  const Experiment& e = *run.experiment;
  nlohmann::json j = {{"event", "summary"},
                      {"name", run.config.name()},
                      {"algorithm", AlgorithmName(run)},
                      {"clients", e.num_clients()},
                      {"parameters", e.num_parameters()},
                      {"rounds", s.rounds},
                      {"wall_time_s", s.wall_time_s}};
  PutNumber(j, "test_accuracy", s.last.test_accuracy);
  PutNumber(j, "best_test_accuracy", s.best_accuracy);
  PutNumber(j, "test_loss", s.last.test_loss);
  PutNumber(j, "dist_to_opt", s.last.dist_to_opt);
  PutNumber(j, "epsilon_max", s.last.epsilon_max);
  j["model_hash"] = s.last.model_hash;
  j["run_dir"] = s.out_dir;
  std::fprintf(out, "%s\n", j.dump().c_str());
  std::fflush(out);
}

}  // namespace fedsim
