#include "server/clock/time_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/check.h"
#include "common/random/stream.h"

namespace fedsim {

std::vector<double> FxTimes(std::int64_t n, double x_percent) {
  std::vector<double> tau(static_cast<std::size_t>(n), 1.0);
  if (n < 2) return tau;
  for (std::int64_t i = 0; i < n; ++i) {
    tau[i] = 1.0 - static_cast<double>(i) * (x_percent / 100.0) /
                       static_cast<double>(n - 1);
  }
  return tau;
}

Tick ToTicks(double units, std::int64_t ticks_per_unit) {
  const double ticks = units * static_cast<double>(ticks_per_unit);
  // Heavy tails (a log-normal with a large sigma) are capped, so that the
  // conversion and the clock's sums stay defined.
  if (!(ticks < static_cast<double>(kMaxTaskTicks))) return kMaxTaskTicks;
  const Tick t = std::llround(ticks);
  return t < 1 ? 1 : t;
}

absl::StatusOr<std::vector<std::vector<double>>> ParseTimeTrace(
    absl::string_view text, std::int64_t n) {
  std::vector<std::vector<double>> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<double> times;
    for (absl::string_view field :
         absl::StrSplit(line, absl::ByAnyChar(" ,\t"), absl::SkipEmpty())) {
      double v = 0.0;
      if (!absl::SimpleAtod(field, &v) || !(v > 0.0) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_no, ": '", field,
            "' is not a positive time"));
      }
      times.push_back(v);
    }
    out.push_back(std::move(times));
  }
  if (static_cast<std::int64_t>(out.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the trace lists ", out.size(), " clients; it needs one line per "
        "client (", n, ")"));
  }
  return out;
}

TimeModel::TimeModel(TimeModelSpec spec) : spec_(std::move(spec)) {
  FEDSIM_CHECK(spec_.ticks_per_unit >= 1);
  if (spec_.compute == TimeKind::kTrace) {
    FEDSIM_CHECK(!spec_.trace.empty());
    for (const auto& line : spec_.trace) FEDSIM_CHECK(!line.empty());
  } else {
    FEDSIM_CHECK(!spec_.mean.empty() && spec_.compute != TimeKind::kNone);
  }
}

std::int64_t TimeModel::num_clients() const {
  return static_cast<std::int64_t>(spec_.compute == TimeKind::kTrace
                                       ? spec_.trace.size()
                                       : spec_.mean.size());
}

namespace {

// One draw of `kind` with mean `mean` from `rng`, in time units.
double Draw(TimeKind kind, double mean, double sigma, RngStream& rng) {
  switch (kind) {
    case TimeKind::kNone:
      return 0.0;
    case TimeKind::kExponential:
      // Inversion; 1 - U is in (0, 1], so the log is finite.
      return -mean * std::log(1.0 - rng.Uniform01());
    case TimeKind::kLogNormal:
      return mean * std::exp(sigma * rng.Gaussian() - 0.5 * sigma * sigma);
    default:
      return mean;
  }
}

}  // namespace

Tick TimeModel::TaskTicks(std::int64_t client, std::int64_t task_index) const {
  double compute = 0.0;
  if (spec_.compute == TimeKind::kTrace) {
    const auto& line = spec_.trace[client];
    compute = line[task_index % static_cast<std::int64_t>(line.size())];
  } else if (spec_.compute == TimeKind::kConstant) {
    compute = spec_.mean[client];
  } else {
    RngStream rng(spec_.seed, RngPurpose::kComputeTime, client, task_index);
    compute = Draw(spec_.compute, spec_.mean[client], spec_.sigma, rng);
  }
  // Fixed times are converted on their own so that they stay exact (the
  // §4.4 schedules); the network delay is rounded separately and added.
  Tick ticks = ToTicks(compute, spec_.ticks_per_unit);
  if (spec_.network != TimeKind::kNone) {
    RngStream rng(spec_.seed, RngPurpose::kNetworkDelay, client, task_index);
    const double delay =
        Draw(spec_.network, spec_.network_mean, spec_.network_sigma, rng);
    if (delay > 0.0) ticks += ToTicks(delay, spec_.ticks_per_unit);
  }
  return std::min(ticks, kMaxTaskTicks);
}

double TimeModel::MeanTicks(std::int64_t client) const {
  double compute_ticks = 0.0;
  if (spec_.compute == TimeKind::kTrace) {
    const auto& line = spec_.trace[client];
    for (double t : line) {
      compute_ticks += static_cast<double>(ToTicks(t, spec_.ticks_per_unit));
    }
    compute_ticks /= static_cast<double>(line.size());
  } else if (spec_.compute == TimeKind::kConstant) {
    compute_ticks =
        static_cast<double>(ToTicks(spec_.mean[client], spec_.ticks_per_unit));
  } else {
    compute_ticks = spec_.mean[client] * static_cast<double>(spec_.ticks_per_unit);
  }
  const double network = spec_.network == TimeKind::kNone
                             ? 0.0
                             : spec_.network_mean *
                                   static_cast<double>(spec_.ticks_per_unit);
  return compute_ticks + network;
}

}  // namespace fedsim
