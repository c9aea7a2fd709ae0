#include "runtime/console.h"

#include <unistd.h>

#include <cmath>
#include <memory>

#include "absl/strings/str_format.h"

namespace fedsim {
namespace {

std::string MetricText(const MetricsRow& row) {
  std::string text;
  if (!std::isnan(row.test_accuracy)) {
    text += absl::StrFormat("  test_acc %.4f", row.test_accuracy);
  }
  if (!std::isnan(row.test_loss)) text += absl::StrFormat("  test_loss %.4f", row.test_loss);
  if (!std::isnan(row.dist_to_opt)) {
    text += absl::StrFormat("  dist_to_opt %.3e", row.dist_to_opt);
  }
  return text;
}

}  // namespace

ProgressFn MakeConsoleProgress(std::FILE* out, bool quiet) {
  if (quiet) return nullptr;
  const bool tty = ::isatty(::fileno(out)) == 1;
  return [out, tty](const MetricsRow& row, std::int64_t total) {
    const std::int64_t done = row.round + 1;
    const double eta = row.wall_time_s / static_cast<double>(done) *
                       static_cast<double>(total - done);
    const std::string line = absl::StrFormat(
        "round %*d/%d%s  %.1fs  eta %.0fs", std::to_string(total).size(), done,
        total, MetricText(row), row.wall_time_s, eta);
    if (tty) {
      std::fprintf(out, "\r\033[K%s", line.c_str());
      if (done == total) std::fputc('\n', out);
    } else {
      const std::int64_t every = std::max<std::int64_t>(1, total / 20);
      if (done % every == 0 || done == total || done == 1) {
        std::fprintf(out, "%s\n", line.c_str());
      }
    }
    std::fflush(out);
  };
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

}  // namespace fedsim
