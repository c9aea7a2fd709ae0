// File: server/coordinator/checkpoint.h
//
// Crash-consistent checkpoints of a run (RELIABILITY 8-9, docs/checkpoint.md).
// After every `checkpoint.every` rounds the coordinator (embedded or
// distributed) writes RUN_DIR/checkpoints/round-NNNNNNNN.ckpt: the resolved
// config, the round engine's snapshot (model, round, task ids, strategy,
// participation and privacy-ledger state) and, in the embedded runtime, the
// clients' own state. A file is written to a temporary name, fsynced,
// renamed and the directory fsynced, so a crash leaves either the old or the
// new checkpoint, never a torn one; a SHA-256 over the payload catches
// anything else. The first checkpoint and the newest `checkpoint.keep` are
// kept.
//
// A run resumed from a checkpoint continues exactly where the checkpoint
// left it: every random draw is keyed by (seed, purpose, client, round), so
// the rest of the run is bit-identical to an uninterrupted one.
#ifndef FEDSIM_SERVER_COORDINATOR_CHECKPOINT_H_
#define FEDSIM_SERVER_COORDINATOR_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/build_info.h"
#include "common/base/client_state.h"
#include "fedsim/v1/config.pb.h"
#include "server/coordinator/engine.h"

namespace fedsim {

struct CheckpointData {
  v1::ExperimentConfig config;
  std::string runtime;  // "embedded" or "distributed"
  // The incarnation of the run that wrote the checkpoint (types.h,
  // MakeTaskId); a run resumed from it is this plus one.
  std::int64_t incarnation = 0;
  // The engine's snapshot: its kind (rounds, virtual clock, wall clock),
  // model, round or step, task ids, tally and kind-specific state.
  EngineSnapshot engine;
  // Every client's own state (the coordinator owns it in both runtimes).
  std::map<std::int64_t, ClientState> clients;
  double wall_time_s = 0.0;                     // run time so far
  double best_accuracy = NAN;
  // The vector ISA level of the build that wrote it (build_info.h); empty
  // in checkpoints from before fedsim recorded it.
  std::string build_isa = std::string(BuildIsa());
};

// The checkpoint directory of a run directory.
std::string CheckpointDir(const std::string& run_dir);

// Writes `data` as RUN_DIR/checkpoints/round-NNNNNNNN.ckpt (NNNNNNNN = the
// next round) atomically, then deletes all but the first and the newest
// `keep` checkpoints. Returns the path written.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& run_dir,
                                            const CheckpointData& data, int keep);

// Reads one checkpoint file, checking its digest and every vector.
absl::StatusOr<CheckpointData> ReadCheckpoint(const std::string& path);

struct LoadedCheckpoint {
  CheckpointData data;
  std::string path;
  // Newer files that could not be read, each with its reason (logged by
  // the caller as checkpoint_skipped).
  std::vector<std::string> skipped;
};

// The newest readable checkpoint of `run_dir`. kNotFound if there is none.
absl::StatusOr<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& run_dir);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_CHECKPOINT_H_
