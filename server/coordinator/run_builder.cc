#include "server/coordinator/run_builder.h"

#include <filesystem>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/build_info.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "algorithms/registry.h"
#include "common/config/config.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"
#include "common/runlog/run_log.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/checkpoint_policy.h"
#include "server/coordinator/engine_factory.h"

namespace fedsim {
namespace {

// The bookkeeping of a run restored from `resume`: its earlier run time and
// best accuracy, and the checkpoint_skipped and run_resumed events.
absl::Status MarkResumed(CoordinatorRun& run, const LoadedCheckpoint& resume,
                         const std::string& runtime) {
  const CheckpointData& d = resume.data;
  run.resumed_wall_time_s = d.wall_time_s;
  run.resumed_best_accuracy = d.best_accuracy;
  run.resumed = true;
  for (const std::string& reason : resume.skipped) {
    FEDSIM_RETURN_IF_ERROR(
        run.log->Event({{"event", "checkpoint_skipped"}, {"reason", reason}}));
  }
  return run.log->Event({{"event", "run_resumed"},
                         {"runtime", runtime},
                         {"incarnation", run.incarnation},
                         {"checkpoint", resume.path},
                         {"round", d.engine.next_round},
                         {"model_hash", ModelHash(d.engine.model)},
                         {"wall_time_s", d.wall_time_s}});
}

std::string EngineKindDescription(EngineKind kind) {
  switch (kind) {
    case EngineKind::kRounds:
      return "a synchronous run";
    case EngineKind::kVirtualClock:
      return "an asynchronous run on the virtual clock";
    case EngineKind::kWallClock:
      return "a wall-clock asynchronous run";
  }
  return "an unknown run";
}

// Continues the freshly built `run` from `resume`: the engine's snapshot,
// the clients' states (the coordinator owns them in both runtimes), the
// bookkeeping of MarkResumed.
absl::Status RestoreRun(CoordinatorRun& run, const LoadedCheckpoint& resume,
                        const std::string& runtime) {
  const CheckpointData& d = resume.data;
  if (absl::Status s = run.engine->Restore(d.engine); !s.ok()) {
    return AnnotateStatus(s, resume.path);
  }
  const Experiment& e = *run.experiment;
  const ClientStateLayout layout = ClientStateLayoutOf(run.config, e.num_parameters());
  for (const auto& [client, state] : d.clients) {
    if (client < 0 || client >= e.num_clients()) {
      return absl::InvalidArgumentError(absl::StrCat(
          resume.path, ": checkpoint: state of client ", client, "; the run has ",
          e.num_clients(), " clients"));
    }
    FEDSIM_RETURN_IF_ERROR(CheckClientState(
        state, layout, absl::StrCat(resume.path, ": checkpoint: client ", client)));
  }
  run.client_states = d.clients;
  run.steps_logged = d.engine.next_round;
  return MarkResumed(run, resume, runtime);
}

absl::StatusOr<CoordinatorRun> BuildRun(const v1::ExperimentConfig& config,
                                        const std::string& out_dir,
                                        const std::string& runtime,
                                        const LoadedCheckpoint* resume) {
  UseFixedEigenBlocking();
  FEDSIM_RETURN_IF_ERROR(ValidateAlgorithm(config));
  const bool async = IsAsyncAlgorithm(config.algorithm().name());
  const bool wall = async && config.async().clock() == v1::AsyncConfig::CLOCK_WALL;
  if (wall && runtime != "distributed") {
    return absl::InvalidArgumentError(
        "config: async.clock = wall; the wall clock needs worker processes (fedsim "
        "launch or fedsim-server), fedsim run simulates time: use async.clock = virtual");
  }
  CoordinatorRun run;
  run.config = config;
  run.runtime = runtime;
  if (resume != nullptr) run.incarnation = resume->data.incarnation + 1;
  FEDSIM_ASSIGN_OR_RETURN(Experiment exp, BuildExperiment(config));
  run.experiment = std::make_unique<Experiment>(std::move(exp));
  const Experiment& e = *run.experiment;
  if (resume == nullptr) {
    // A fresh run never resumes from an earlier run's checkpoints.
    std::error_code ec;
    std::filesystem::remove_all(CheckpointDir(out_dir), ec);
    FEDSIM_ASSIGN_OR_RETURN(run.log, RunLog::Create(out_dir));
    FEDSIM_RETURN_IF_ERROR(run.log->WriteFile("config.json", ConfigToJson(config)));
  } else {
    FEDSIM_ASSIGN_OR_RETURN(
        run.log, RunLog::Reopen(out_dir, resume->data.engine.next_round));
  }
  run.log->SetEventLimit(config.distributed().rejection_events_per_minute(),
                         absl::Minutes(1));
  if (config.logging().tensorboard()) {
    // A resumed run writes its own event file, which makes TensorBoard
    // forget the redone rounds' earlier values.
    FEDSIM_RETURN_IF_ERROR(run.log->EnableTensorBoard(
        resume == nullptr ? std::nullopt
                          : std::optional<std::int64_t>(resume->data.engine.next_round)));
  }

  FlatVector initial(e.num_parameters());
  if (e.lsa != nullptr) {
    // theta_0 = theta* + offset * 1, as in the SCAFFLSA experiments.
    initial = e.lsa->problem.theta_star +
              FlatVector::Constant(initial.size(), config.lsa().theta0_offset());
  } else {
    RngStream init_rng(config.seed(), RngPurpose::kModelInit, -1, -1);
    e.objective->Initialize(initial, init_rng);
  }
  if (!config.model().init_file().empty()) {
    absl::StatusOr<FlatVector> given = ReadModelFile(config.model().init_file());
    if (!given.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("model.init_file = ",
                                                     config.model().init_file(), ": ",
                                                     given.status().message()));
    }
    if (given->size() != initial.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.init_file = ", config.model().init_file(), " holds ", given->size(),
          " parameters; the model has ", initial.size()));
    }
    if (!given->allFinite()) {
      return absl::InvalidArgumentError(absl::StrCat("model.init_file = ",
                                                     config.model().init_file(),
                                                     " holds a NaN or an infinity"));
    }
    initial = *std::move(given);
  }
  if (resume != nullptr) {
    const EngineKind want = !async ? EngineKind::kRounds
                            : wall ? EngineKind::kWallClock
                                   : EngineKind::kVirtualClock;
    if (resume->data.engine.kind != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--resume: checkpoint '", resume->path, "' is of ",
          EngineKindDescription(resume->data.engine.kind), "; the config's is ",
          EngineKindDescription(want)));
    }
  }
  FEDSIM_ASSIGN_OR_RETURN(EngineSetup setup,
                          MakeEngine(config, e, runtime, run.incarnation, run.log.get(),
                                     std::move(initial)));
  run.engine = std::move(setup.engine);
  FEDSIM_RETURN_IF_ERROR(CheckCheckpointSize(run));
  if (resume == nullptr) {
    setup.run_start["build"] = {{"isa", std::string(BuildIsa())}, {"simd", BuildSimd()}};
    FEDSIM_RETURN_IF_ERROR(run.log->Event(setup.run_start));
  } else {
    FEDSIM_RETURN_IF_ERROR(RestoreRun(run, *resume, runtime));
  }
  return run;
}

// Sections of the config that do not change results: a resumed run may
// use other values (more threads, other deadlines).
v1::ExperimentConfig ResultRelevant(v1::ExperimentConfig c) {
  c.clear_runtime();
  c.clear_distributed();
  c.clear_checkpoint();
  c.clear_logging();
  return c;
}

}  // namespace

absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime) {
  return BuildRun(config, out_dir, runtime, nullptr);
}

absl::StatusOr<CoordinatorRun> PrepareOrResumeRun(
    const v1::ExperimentConfig& config, const std::string& out_dir,
    const std::string& runtime) {
  absl::StatusOr<LoadedCheckpoint> loaded = LoadLatestCheckpoint(out_dir);
  if (absl::IsNotFound(loaded.status())) {
    return BuildRun(config, out_dir, runtime, nullptr);
  }
  if (!loaded.ok()) return loaded.status();
  FEDSIM_RETURN_IF_ERROR(CheckSameBuildIsa(
      absl::StrCat("--resume: checkpoint '", loaded->path, "'"), loaded->data.build_isa));
  v1::ExperimentConfig& saved = loaded->data.config;
  // A checkpoint from before eval.train_rows computed train_loss over every
  // training row: it resumes with `eval.train_rows: 0` (docs/checkpoint.md).
  // LSA runs have no rows, where the key means nothing: any value resumes.
  if (!saved.eval().has_train_rows()) {
    saved.mutable_eval()->set_train_rows(
        saved.data().source() == v1::DataConfig::SOURCE_LSA ? config.eval().train_rows() : 0);
  }
  if (!google::protobuf::util::MessageDifferencer::Equals(ResultRelevant(saved),
                                                          ResultRelevant(config))) {
    std::string difference;
    google::protobuf::util::MessageDifferencer differ;
    differ.ReportDifferencesToString(&difference);
    (void)differ.Compare(ResultRelevant(saved), ResultRelevant(config));
    const std::size_t eol = difference.find('\n');
    return absl::FailedPreconditionError(absl::StrCat(
        "--resume: the config differs from the one checkpointed in '",
        loaded->path, "' (", difference.substr(0, eol),
        "); resume with the same config or use another --out directory"));
  }
  return BuildRun(config, out_dir, runtime, &*loaded);
}

}  // namespace fedsim
