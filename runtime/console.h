// File: runtime/console.h
//
// Terminal output of a run (docs/report.md, "Live progress"):
//   human  on a terminal, one progress bar rewritten in place every round
//          (round, key metrics, elapsed time, ETA); otherwise plain lines,
//          the first round, every max(1, rounds/20) rounds and the last;
//   json   one JSON object per round ({"event": "progress", ...}) and the
//          summary as one JSON object ({"event": "summary", ...});
//   quiet  no progress, only the summary.
#ifndef FEDSIM_RUNTIME_CONSOLE_H_
#define FEDSIM_RUNTIME_CONSOLE_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "nlohmann/json.hpp"
#include "server/coordinator/progress.h"
#include "server/coordinator/run.h"

namespace fedsim {

enum class ProgressMode { kQuiet, kHuman, kJson };

// The metrics shown while a run goes: the latest measured value of each
// (evaluation rounds measure test metrics only every eval.every rounds).
struct ProgressState {
  MetricsRow latest;
  void Update(const MetricsRow& row);
};

// "12s", "3m05s", "2h07m".
std::string FormatDuration(double seconds);
// The human progress text after round `row.round` of `total` (without the
// bar): "round  7/20  test_acc 0.8123  test_loss 0.5234  3.1s  eta 5s".
std::string ProgressText(const ProgressState& state, std::int64_t total);
// "[#######-----------------] " (width cells) for `done` of `total`.
std::string ProgressBar(std::int64_t done, std::int64_t total, int width);
// The JSON progress record of a round: event, round, rounds, wall_time_s,
// eta_s, the metrics measured so far (latest values), model_hash.
nlohmann::json ProgressJson(const ProgressState& state, std::int64_t total);

// Progress on `out` (stderr in the binaries for human, stdout for json);
// nullptr for quiet. `tty` selects the in-place bar.
ProgressFn MakeConsoleProgress(std::FILE* out, ProgressMode mode, bool tty);
// The same with `tty` = isatty(out).
ProgressFn MakeConsoleProgress(std::FILE* out, ProgressMode mode);

// One line per fact: algorithm, data, rounds, time, final and best
// metrics, model hash, run directory.
void PrintSummary(std::FILE* out, const CoordinatorRun& run,
                  const RunSummary& summary);
// The same facts as one JSON object on one line ({"event": "summary", ...}).
void PrintSummaryJson(std::FILE* out, const CoordinatorRun& run,
                      const RunSummary& summary);

}  // namespace fedsim

#endif  // FEDSIM_RUNTIME_CONSOLE_H_
