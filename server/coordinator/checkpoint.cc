#include "server/coordinator/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "fedsim/v1/checkpoint.pb.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t kFormatVersion = 1;
constexpr char kPrefix[] = "round-";
constexpr char kSuffix[] = ".ckpt";

// Raw little-endian float64, without DecodeFlat's finiteness check: a
// client's state may legitimately hold any value the algorithm produced.
std::string EncodeRaw(const FlatVector& v) { return EncodeFlat(v); }

absl::StatusOr<FlatVector> DecodeRaw(const std::string& bytes,
                                     const std::string& what) {
  if (bytes.size() % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: ", what, " has ", bytes.size(), " bytes, not a multiple of 8"));
  }
  FlatVector v(static_cast<Eigen::Index>(bytes.size() / 8));
  for (Eigen::Index i = 0; i < v.size(); ++i) {
    std::uint64_t bits = 0;
    for (int b = 0; b < 8; ++b) {
      bits |= static_cast<std::uint64_t>(
                  static_cast<unsigned char>(bytes[8 * i + b]))
              << (8 * b);
    }
    double x;
    std::memcpy(&x, &bits, 8);
    v[i] = x;
  }
  return v;
}

absl::Status SyncPath(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return absl::DataLossError(absl::StrCat("cannot open ", path.string()));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::DataLossError(absl::StrCat("fsync ", path.string()));
  return absl::OkStatus();
}

// Round number of a checkpoint file name, or -1.
std::int64_t RoundOf(const std::string& name) {
  const std::string prefix = kPrefix, suffix = kSuffix;
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.substr(name.size() - suffix.size()) != suffix) {
    return -1;
  }
  std::int64_t round = -1;
  if (!absl::SimpleAtoi(
          name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()),
          &round)) {
    return -1;
  }
  return round;
}

// Checkpoint files of `dir`, oldest first.
std::vector<std::pair<std::int64_t, fs::path>> ListCheckpoints(const fs::path& dir) {
  std::vector<std::pair<std::int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::int64_t round = RoundOf(entry.path().filename().string());
    if (round >= 0) out.emplace_back(round, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string CheckpointDir(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& run_dir,
                                            const CheckpointData& data, int keep) {
  v1::Checkpoint c;
  c.set_format_version(kFormatVersion);
  *c.mutable_config() = data.config;
  c.set_runtime(data.runtime);
  const EngineSnapshot& s = data.engine;
  c.set_next_round(s.next_round);
  c.set_model(EncodeFlat(s.model));
  c.set_model_hash(ModelHash(s.model));
  c.set_next_task_id(s.next_task_id);
  c.set_tasks_issued(s.tally.issued);
  c.set_tasks_aggregated(s.tally.aggregated);
  c.set_tasks_timed_out(s.tally.timed_out);
  c.set_tasks_dropped(s.tally.dropped);
  c.set_tasks_cancelled(s.tally.cancelled);
  c.set_incarnation(data.incarnation);
  c.set_build_isa(data.build_isa);
  c.set_pushes_rejected(s.tally.rejected_pushes);
  c.set_pushes_duplicate(s.tally.duplicate_pushes);
  c.set_budget_spent(s.budget_spent);
  c.set_strategy_state(s.strategy_state);
  auto* p = c.mutable_participation();
  p->set_next_round(s.participation.next_round);
  p->set_active(std::string(s.participation.active.begin(), s.participation.active.end()));
  for (std::int64_t x : s.participation.countdown) p->add_countdown(x);
  for (std::int64_t x : s.privacy_steps) c.add_privacy_steps(x);
  for (const auto& [client, state] : data.clients) {
    auto* record = c.add_clients();
    record->set_client(client);
    for (const auto& [name, vector] : state.vectors) {
      auto* nv = record->add_vectors();
      nv->set_name(name);
      nv->set_values(EncodeRaw(vector));
    }
  }
  c.set_wall_time_s(data.wall_time_s);
  c.set_best_accuracy(data.best_accuracy);
  if (s.kind != EngineKind::kRounds) {
    c.set_async(true);
    for (const auto& [version, model] : s.versions) {
      auto* record = c.add_async_versions();
      record->set_version(version);
      record->set_model(EncodeRaw(model));
    }
    c.set_async_stale_dropped(s.tally.stale);
    c.set_wall(s.kind == EngineKind::kWallClock);
    c.set_wall_tick(s.wall_tick);
  }

  v1::CheckpointFile file;
  if (!c.SerializeToString(file.mutable_payload())) {
    return absl::InternalError("checkpoint: serialisation failed");
  }
  file.set_sha256(Sha256Digest(file.payload()));
  std::string bytes;
  if (!file.SerializeToString(&bytes)) {
    return absl::InternalError("checkpoint: serialisation failed");
  }

  const fs::path dir = CheckpointDir(run_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::DataLossError(absl::StrCat("checkpoint: cannot create '",
                                            dir.string(), "': ", ec.message()));
  }
  const fs::path path =
      dir / absl::StrFormat("%s%08d%s", kPrefix, s.next_round, kSuffix);
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      return absl::DataLossError(
          absl::StrCat("checkpoint: cannot write '", tmp.string(), "'"));
    }
  }
  FEDSIM_RETURN_IF_ERROR(SyncPath(tmp, /*directory=*/false));
  fs::rename(tmp, path, ec);
  if (ec) {
    return absl::DataLossError(absl::StrCat("checkpoint: rename to '",
                                            path.string(), "': ", ec.message()));
  }
  FEDSIM_RETURN_IF_ERROR(SyncPath(dir, /*directory=*/true));

  // Keep the first and the newest `keep`.
  const auto all = ListCheckpoints(dir);
  const std::int64_t n = static_cast<std::int64_t>(all.size());
  for (std::int64_t i = 1; i < n - std::max(keep, 1); ++i) {
    fs::remove(all[i].second, ec);
  }
  return path.string();
}

absl::StatusOr<CheckpointData> ReadCheckpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("checkpoint: cannot open '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  v1::CheckpointFile file;
  if (!file.ParseFromString(buffer.str()) || file.sha256().size() != 32) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' is not a checkpoint file"));
  }
  if (Sha256Digest(file.payload()) != file.sha256()) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", path, "' fails its SHA-256 check (corrupted)"));
  }
  v1::Checkpoint c;
  if (!c.ParseFromString(file.payload())) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "': bad payload"));
  }
  if (c.format_version() != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint '", path, "': format_version = ", c.format_version(),
        "; this fedsim reads version ", kFormatVersion));
  }
  CheckpointData data;
  data.config = c.config();
  // A checkpoint from before model.precision existed was computed in
  // float64 (docs/checkpoint.md): it resumes with `model.precision: float64`.
  if (data.config.model().precision() == v1::ModelConfig::PRECISION_UNSPECIFIED) {
    data.config.mutable_model()->set_precision(v1::ModelConfig::PRECISION_FLOAT64);
  }
  data.runtime = c.runtime();
  EngineSnapshot& s = data.engine;
  s.next_round = c.next_round();
  FEDSIM_ASSIGN_OR_RETURN(s.model, DecodeRaw(c.model(), "model"));
  if (ModelHash(s.model) != c.model_hash()) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "': model hash mismatch"));
  }
  s.next_task_id = c.next_task_id();
  s.tally.issued = c.tasks_issued();
  s.tally.aggregated = c.tasks_aggregated();
  s.tally.timed_out = c.tasks_timed_out();
  s.tally.dropped = c.tasks_dropped();
  s.tally.cancelled = c.tasks_cancelled();
  data.incarnation = c.incarnation();
  data.build_isa = c.build_isa();
  s.tally.rejected_pushes = c.pushes_rejected();
  s.tally.duplicate_pushes = c.pushes_duplicate();
  s.budget_spent = c.budget_spent();
  s.strategy_state = c.strategy_state();
  s.participation.next_round = c.participation().next_round();
  s.participation.active.assign(c.participation().active().begin(),
                                c.participation().active().end());
  s.participation.countdown.assign(c.participation().countdown().begin(),
                                   c.participation().countdown().end());
  s.privacy_steps.assign(c.privacy_steps().begin(), c.privacy_steps().end());
  for (const auto& record : c.clients()) {
    ClientState& state = data.clients[record.client()];
    for (const auto& nv : record.vectors()) {
      FEDSIM_ASSIGN_OR_RETURN(
          state.vectors[nv.name()],
          DecodeRaw(nv.values(), absl::StrCat("client ", record.client(), " ", nv.name())));
    }
  }
  data.wall_time_s = c.wall_time_s();
  data.best_accuracy = c.best_accuracy();
  s.kind = !c.async() ? EngineKind::kRounds
           : c.wall() ? EngineKind::kWallClock
                      : EngineKind::kVirtualClock;
  for (const auto& record : c.async_versions()) {
    FEDSIM_ASSIGN_OR_RETURN(
        s.versions[record.version()],
        DecodeRaw(record.model(), absl::StrCat("model version ", record.version())));
  }
  s.tally.stale = c.async_stale_dropped();
  s.wall_tick = c.wall_tick();
  return data;
}

absl::StatusOr<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& run_dir) {
  const auto all = ListCheckpoints(CheckpointDir(run_dir));
  LoadedCheckpoint out;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    absl::StatusOr<CheckpointData> data = ReadCheckpoint(it->second.string());
    if (data.ok()) {
      out.data = *std::move(data);
      out.path = it->second.string();
      return out;
    }
    out.skipped.push_back(std::string(data.status().message()));
  }
  return absl::NotFoundError(absl::StrCat(
      "no readable checkpoint in '", CheckpointDir(run_dir), "'",
      out.skipped.empty() ? "" : absl::StrCat(" (", out.skipped.size(), " unreadable)")));
}

}  // namespace fedsim
