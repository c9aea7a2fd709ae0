#include "common/runlog/run_log.h"

#include <mutex>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

constexpr char kModelMagic[8] = {'F', 'E', 'D', 'S', 'I', 'M', 'M', 'D'};

// %.17g round-trips a double exactly; NaN (not measured) stays empty.
std::string Cell(double v) {
  return std::isnan(v) ? std::string() : absl::StrFormat("%.17g", v);
}

}  // namespace

RunLog::RunLog(std::string dir, std::ofstream events, std::ofstream metrics)
    : dir_(std::move(dir)),
      events_(std::move(events)),
      metrics_(std::move(metrics)) {}

absl::StatusOr<std::unique_ptr<RunLog>> RunLog::Create(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "run directory '", dir, "' cannot be created: ", ec.message()));
  }
  std::ofstream events(fs::path(dir) / "events.jsonl", std::ios::trunc);
  std::ofstream metrics(fs::path(dir) / "metrics.csv", std::ios::trunc);
  if (!events || !metrics) {
    return absl::InvalidArgumentError(
        absl::StrCat("run directory '", dir, "' is not writable"));
  }
  metrics << kMetricsColumns << "\n" << std::flush;
  return std::unique_ptr<RunLog>(
      new RunLog(dir, std::move(events), std::move(metrics)));
}

absl::Status RunLog::Event(const nlohmann::json& event) {
  std::lock_guard<std::mutex> lock(mu_);
  events_ << event.dump() << "\n" << std::flush;
  if (!events_) return absl::DataLossError("events.jsonl: write failed");
  return absl::OkStatus();
}

absl::Status RunLog::Metrics(const MetricsRow& r) {
  std::lock_guard<std::mutex> lock(mu_);
  metrics_ << r.round << "," << Cell(r.wall_time_s) << "," << Cell(r.train_loss)
           << "," << Cell(r.test_loss) << "," << Cell(r.test_accuracy) << ","
           << Cell(r.client_loss) << "," << Cell(r.dist_to_opt) << ","
           << r.participants << "," << r.bytes_up << "," << r.bytes_down << ","
           << r.model_hash << "," << Cell(r.epsilon_max) << ","
           << Cell(r.epsilon_mean) << "," << Cell(r.virtual_time) << "\n"
           << std::flush;
  if (!metrics_) return absl::DataLossError("metrics.csv: write failed");
  return absl::OkStatus();
}

absl::Status RunLog::WriteFile(const std::string& name,
                               const std::string& text) {
  std::ofstream out(fs::path(dir_) / name, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(name, ": write failed"));
  return absl::OkStatus();
}

absl::Status WriteModelFile(const std::string& path, const FlatVector& params) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    const std::uint32_t version = 1, value_type = 1;
    const std::uint64_t count = static_cast<std::uint64_t>(params.size());
    out.write(kModelMagic, sizeof(kModelMagic));
    out.write(reinterpret_cast<const char*>(&version), sizeof(version));
    out.write(reinterpret_cast<const char*>(&value_type), sizeof(value_type));
    out.write(reinterpret_cast<const char*>(&count), sizeof(count));
    const std::string bytes = EncodeFlat(params);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) return absl::DataLossError(absl::StrCat(tmp, ": write failed"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    return absl::DataLossError(
        absl::StrCat(path, ": rename failed: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<FlatVector> ReadModelFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  char magic[8];
  std::uint32_t version = 0, value_type = 0;
  std::uint64_t count = 0;
  in.read(magic, sizeof(magic));
  in.read(reinterpret_cast<char*>(&version), sizeof(version));
  in.read(reinterpret_cast<char*>(&value_type), sizeof(value_type));
  in.read(reinterpret_cast<char*>(&count), sizeof(count));
  if (!in || std::memcmp(magic, kModelMagic, sizeof(magic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a fedsim model file (bad header)"));
  }
  if (version != 1 || value_type != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": format version ", version, ", value type ", value_type,
        "; this build reads version 1, type 1 (float64)"));
  }
  const auto size = static_cast<std::uintmax_t>(fs::file_size(path));
  if (count > (size - 24) / sizeof(double) || size != 24 + count * 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header says ", count, " values but the file has ", size,
        " bytes"));
  }
  std::string bytes(count * sizeof(double), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return DecodeFlat(bytes, static_cast<std::int64_t>(count), path);
}

}  // namespace fedsim
