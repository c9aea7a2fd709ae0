// File: common/runlog/run_log.h
//
// The run directory every run writes (docs/run-directory.md):
//   config.json    the resolved config (written by the caller)
//   events.jsonl   one JSON object per line: run_start, round_end,
//                  result_rejected, worker_joined, ... with their fields
//   metrics.csv    one row per evaluated round (columns: kMetricsColumns)
//   model.bin      the final global model (WriteModelFile's format)
//   events.out.tfevents.fedsim  with EnableTensorBoard: the metrics rows as
//                  TensorBoard scalars (common/runlog/tensorboard.h)
//
// Thread safety: all methods are thread-safe (one internal mutex).
#ifndef FEDSIM_COMMON_RUNLOG_RUN_LOG_H_
#define FEDSIM_COMMON_RUNLOG_RUN_LOG_H_

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/types.h"
#include "common/runlog/tensorboard.h"
#include "nlohmann/json.hpp"

namespace fedsim {

struct MetricsRow {
  Round round = 0;
  double wall_time_s = 0.0;
  double train_loss = NAN;       // global model on all training rows
  double test_loss = NAN;        // global model on the test set
  double test_accuracy = NAN;    // NaN for regression
  double client_loss = NAN;      // n_k-weighted mean local training loss
  double dist_to_opt = NAN;      // ||w - w*|| where the optimum is known
  std::int64_t participants = 0; // results aggregated this round
  std::int64_t bytes_up = 0;     // parameter bytes received this round
  std::int64_t bytes_down = 0;   // parameter bytes sent this round
  std::string model_hash;        // ModelHash of the global model after the round
  // Local DP (local.dp): epsilon spent so far at the configured delta, the
  // maximum and the mean over all clients. NaN without DP.
  double epsilon_max = NAN;
  double epsilon_mean = NAN;
  // Asynchronous algorithms: the virtual time of the aggregation step in
  // time units (docs/async.md). NaN for synchronous runs.
  double virtual_time = NAN;
};

inline constexpr const char* kMetricsColumns =
    "round,wall_time_s,train_loss,test_loss,test_accuracy,client_loss,"
    "dist_to_opt,participants,bytes_up,bytes_down,model_hash,"
    "epsilon_max,epsilon_mean,virtual_time";

class RunLog {
 public:
  // Creates `dir` (and parents) and opens events.jsonl and metrics.csv for
  // writing, truncating earlier files.
  static absl::StatusOr<std::unique_ptr<RunLog>> Create(const std::string& dir);
  // Reopens the run directory of an interrupted run that continues from
  // round `next_round`: metrics.csv keeps its header and the rows of rounds
  // before `next_round` (rows of rounds that will be redone, and a torn last
  // line, are dropped; the file is replaced atomically); events.jsonl is
  // appended to (a torn last line is completed with a newline).
  static absl::StatusOr<std::unique_ptr<RunLog>> Reopen(const std::string& dir,
                                                        Round next_round);

  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
  // Writes the pending events_suppressed counts (LimitedEvent).
  ~RunLog();

  // Appends `event` (a JSON object; "event" names its kind) as one line and
  // flushes, so a crash loses no written event.
  absl::Status Event(const nlohmann::json& event);

  // Like Event, for events a peer can provoke at will (rejections): at most
  // `burst` events of one `key` are written per `window`; the others are
  // counted and written as one {"event": "events_suppressed", "key",
  // "count", "first", "last"} line when the key's next window opens with an
  // event, or when the log is closed. Up to 10000 keys are tracked; beyond
  // that, new keys share the key "(other)".
  absl::Status LimitedEvent(const std::string& key, const nlohmann::json& event);
  // burst 0: no limit (the default until set). `clock` is for tests.
  void SetEventLimit(std::int64_t burst, absl::Duration window,
                     std::function<absl::Time()> clock = [] { return absl::Now(); });
  // Appends one metrics row and flushes. NaN cells are written empty.
  absl::Status Metrics(const MetricsRow& row);
  // Also writes every later metrics row as TensorBoard scalars (one tag per
  // measured column, step = round) to events.out.tfevents.fedsim in the run
  // directory, truncating an earlier file of that name. A resumed run
  // passes the round it restarts from: the file is rewritten without the
  // rounds from that one on (TensorBoardWriter::Resume), so each round
  // appears once.
  absl::Status EnableTensorBoard(std::optional<std::int64_t> resumed_from = std::nullopt);
  // Writes `text` to `name` inside the run directory.
  absl::Status WriteFile(const std::string& name, const std::string& text);

  const std::string& dir() const { return dir_; }

 private:
  RunLog(std::string dir, std::ofstream events, std::ofstream metrics);
  struct Limited {
    absl::Time window_start = absl::InfinitePast();
    std::int64_t written = 0;      // in this window
    std::int64_t suppressed = 0;   // not yet reported
    absl::Time first_suppressed, last_suppressed;
  };
  void WriteEventLocked(const nlohmann::json& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportSuppressedLocked(const std::string& key, Limited& l)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  std::mutex mu_;  // not absl::Mutex: see docs/architecture.md (TSan)
  std::ofstream events_ ABSL_GUARDED_BY(mu_);
  std::ofstream metrics_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<TensorBoardWriter> tensorboard_ ABSL_GUARDED_BY(mu_);
  std::int64_t limit_burst_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration limit_window_ ABSL_GUARDED_BY(mu_) = absl::Minutes(1);
  std::function<absl::Time()> limit_clock_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Limited> limited_ ABSL_GUARDED_BY(mu_);
};

// Writes a model file atomically (temporary file, then rename): the 8 bytes
// "FEDSIMMD", uint32 format version 1, uint32 value type 1 (float64), uint64
// value count d, then d little-endian float64 values.
absl::Status WriteModelFile(const std::string& path, const FlatVector& params);
// Reads a model file written by WriteModelFile, validating its header.
absl::StatusOr<FlatVector> ReadModelFile(const std::string& path);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_RUNLOG_RUN_LOG_H_
