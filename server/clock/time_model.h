// File: server/clock/time_model.h
//
// How long a client's task takes on the virtual clock: its compute time
// (the F-X scenario's fixed tau_i, a per-client random distribution, or a
// trace of per-task times) plus an optional network delay. Random times are
// drawn from streams keyed by (seed, kComputeTime | kNetworkDelay, client,
// task index), so a task's duration depends on nothing else: not on the
// model, the thread, or the order tasks are simulated in.
//
// Pure: no clock, no I/O (the trace is parsed from text by ParseTimeTrace).
#ifndef FEDSIM_SERVER_CLOCK_TIME_MODEL_H_
#define FEDSIM_SERVER_CLOCK_TIME_MODEL_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "server/clock/virtual_clock.h"

namespace fedsim {

enum class TimeKind {
  kNone,         // 0 (network delay only)
  kConstant,     // the mean
  kExponential,  // mean * Exp(1)
  kLogNormal,    // mean * exp(sigma Z - sigma^2 / 2): mean preserved
  kTrace,        // compute time only: the client's listed times in turn
};

struct TimeModelSpec {
  std::uint64_t seed = 1;
  std::int64_t ticks_per_unit = 1000000;
  // Compute time. kConstant/kExponential/kLogNormal use mean[i] for client
  // i (time units); kTrace uses trace[i] (time units, cycled).
  TimeKind compute = TimeKind::kConstant;
  std::vector<double> mean;
  double sigma = 0.5;
  std::vector<std::vector<double>> trace;
  // Network delay added to every task (time units).
  TimeKind network = TimeKind::kNone;
  double network_mean = 0.0;
  double network_sigma = 0.5;
};

// The F-X scenario (ALGORITHMS.md §4.4): tau_i = 1 - i (x/100) / (n - 1),
// i = 0..n-1 (tau = 1 for n = 1).
std::vector<double> FxTimes(std::int64_t n, double x_percent);

// The longest task: 2^50 ticks (10^9 time units at the default 10^6 ticks
// per unit); longer draws (heavy log-normal tails) are capped.
inline constexpr Tick kMaxTaskTicks = Tick{1} << 50;

// Time units to ticks, rounded to nearest, in [1, kMaxTaskTicks].
Tick ToTicks(double units, std::int64_t ticks_per_unit);

// Parses a trace: one line per client (n lines, '#' comment lines and blank
// lines skipped), each listing one or more positive times separated by
// spaces or commas. Errors name the line and the rule.
absl::StatusOr<std::vector<std::vector<double>>> ParseTimeTrace(
    absl::string_view text, std::int64_t n);

class TimeModel {
 public:
  // REQUIRES: spec consistent (one mean or trace line per client, > 0).
  explicit TimeModel(TimeModelSpec spec);

  std::int64_t num_clients() const;
  std::int64_t ticks_per_unit() const { return spec_.ticks_per_unit; }

  // The duration in ticks (in [1, kMaxTaskTicks]) of task `task_index` (0, 1, ...) of
  // `client`: compute plus network.
  Tick TaskTicks(std::int64_t client, std::int64_t task_index) const;

  // The expected duration of one task of `client` in ticks (compute plus
  // network): tau_i of the weight formulas of §4.3. Exact for fixed times.
  double MeanTicks(std::int64_t client) const;

 private:
  TimeModelSpec spec_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_CLOCK_TIME_MODEL_H_
