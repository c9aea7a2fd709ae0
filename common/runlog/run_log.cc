#include "common/runlog/run_log.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string_view>

#include "absl/strings/numbers.h"
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

double UnixSeconds() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The measured numeric columns of a row, named as in metrics.csv.
std::vector<std::pair<std::string, double>> MetricScalars(const MetricsRow& r) {
  std::vector<std::pair<std::string, double>> out;
  const auto add = [&out](const char* tag, double v) {
    if (!std::isnan(v)) out.emplace_back(tag, v);
  };
  add("wall_time_s", r.wall_time_s);
  add("train_loss", r.train_loss);
  add("test_loss", r.test_loss);
  add("test_accuracy", r.test_accuracy);
  add("client_loss", r.client_loss);
  add("dist_to_opt", r.dist_to_opt);
  add("participants", static_cast<double>(r.participants));
  add("bytes_up", static_cast<double>(r.bytes_up));
  add("bytes_down", static_cast<double>(r.bytes_down));
  add("epsilon_max", r.epsilon_max);
  add("epsilon_mean", r.epsilon_mean);
  return out;
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

absl::StatusOr<std::unique_ptr<RunLog>> RunLog::Reopen(const std::string& dir,
                                                       Round next_round) {
  const fs::path metrics_path = fs::path(dir) / "metrics.csv";
  const fs::path events_path = fs::path(dir) / "events.jsonl";
  std::ifstream old_metrics(metrics_path);
  if (!old_metrics || !fs::exists(events_path)) {
    return absl::NotFoundError(absl::StrCat(
        "run directory '", dir, "' has no metrics.csv or events.jsonl to resume"));
  }
  std::string kept = std::string(kMetricsColumns) + "\n";
  std::string line;
  bool header = true;
  while (std::getline(old_metrics, line)) {
    if (header) {
      header = false;
      continue;
    }
    // A complete row has every column; a torn last line does not.
    const auto commas = std::count(line.begin(), line.end(), ',');
    const std::string_view columns(kMetricsColumns);
    if (old_metrics.eof() ||
        commas != std::count(columns.begin(), columns.end(), ',')) {
      continue;
    }
    Round round = -1;
    if (!absl::SimpleAtoi(line.substr(0, line.find(',')), &round)) continue;
    if (round < next_round) kept += line + "\n";
  }
  old_metrics.close();
  const fs::path tmp = fs::path(dir) / "metrics.csv.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept << std::flush;
    if (!out) return absl::DataLossError("metrics.csv: rewrite failed");
  }
  std::error_code ec;
  fs::rename(tmp, metrics_path, ec);
  if (ec) return absl::DataLossError(absl::StrCat("metrics.csv: ", ec.message()));

  // Complete a torn last event line so the next event starts on its own.
  bool torn = false;
  {
    std::ifstream in(events_path, std::ios::binary | std::ios::ate);
    if (in && in.tellg() > 0) {
      in.seekg(-1, std::ios::end);
      torn = in.get() != '\n';
    }
  }
  std::ofstream events(events_path, std::ios::app);
  std::ofstream metrics(metrics_path, std::ios::app);
  if (!events || !metrics) {
    return absl::InvalidArgumentError(
        absl::StrCat("run directory '", dir, "' is not writable"));
  }
  if (torn) events << "\n" << std::flush;
  return std::unique_ptr<RunLog>(
      new RunLog(dir, std::move(events), std::move(metrics)));
}

void RunLog::WriteEventLocked(const nlohmann::json& event) {
  events_ << event.dump() << "\n" << std::flush;
}

absl::Status RunLog::Event(const nlohmann::json& event) {
  std::lock_guard<std::mutex> lock(mu_);
  WriteEventLocked(event);
  if (!events_) return absl::DataLossError("events.jsonl: write failed");
  return absl::OkStatus();
}

void RunLog::SetEventLimit(std::int64_t burst, absl::Duration window,
                           std::function<absl::Time()> clock) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_burst_ = burst;
  limit_window_ = window;
  limit_clock_ = std::move(clock);
}

void RunLog::ReportSuppressedLocked(const std::string& key, Limited& l) {
  if (l.suppressed == 0) return;
  WriteEventLocked({{"event", "events_suppressed"},
                    {"key", key},
                    {"count", l.suppressed},
                    {"first", absl::FormatTime(l.first_suppressed, absl::UTCTimeZone())},
                    {"last", absl::FormatTime(l.last_suppressed, absl::UTCTimeZone())}});
  l.suppressed = 0;
}

absl::Status RunLog::LimitedEvent(const std::string& key, const nlohmann::json& event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (limit_burst_ > 0) {
    const absl::Time now = limit_clock_();
    auto it = limited_.find(key);
    if (it == limited_.end()) {
      const bool full = limited_.size() >= 10000;
      it = limited_.try_emplace(full ? std::string("(other)") : key).first;
    }
    Limited& l = it->second;
    if (now - l.window_start >= limit_window_) {
      ReportSuppressedLocked(it->first, l);
      l.window_start = now;
      l.written = 0;
    }
    if (l.written >= limit_burst_) {
      if (l.suppressed == 0) l.first_suppressed = now;
      l.last_suppressed = now;
      ++l.suppressed;
      return absl::OkStatus();
    }
    ++l.written;
  }
  WriteEventLocked(event);
  if (!events_) return absl::DataLossError("events.jsonl: write failed");
  return absl::OkStatus();
}

RunLog::~RunLog() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, l] : limited_) ReportSuppressedLocked(key, l);
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
  if (tensorboard_ != nullptr) {
    return tensorboard_->Scalars(r.round, UnixSeconds(), MetricScalars(r));
  }
  return absl::OkStatus();
}

absl::Status RunLog::EnableTensorBoard(std::optional<std::int64_t> resumed_from) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string path = (fs::path(dir_) / "events.out.tfevents.fedsim").string();
  if (resumed_from.has_value()) {
    FEDSIM_ASSIGN_OR_RETURN(tensorboard_,
                            TensorBoardWriter::Resume(path, UnixSeconds(), *resumed_from));
  } else {
    FEDSIM_ASSIGN_OR_RETURN(tensorboard_, TensorBoardWriter::Create(path, UnixSeconds()));
  }
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
