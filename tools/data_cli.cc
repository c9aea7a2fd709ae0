#include "tools/data_cli.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "nlohmann/json.hpp"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: fedsim data inspect CONFIG|PATH [--json]\n"
    "\n"
    "Prints what fedsim sees in a data set: rows, features, image layout,\n"
    "classes and label histograms, clients and their sizes. CONFIG: the data\n"
    "as a run of that config gets it (loaded, checked, partitioned). PATH: an\n"
    ".npz file or a folder of .npy arrays, CIFAR-10/100 binaries, LEAF JSON\n"
    "(train/ and test/) or IDX files; clients are those the files name.\n"
    "--json: one JSON object on stdout. Exit 2 with one line on bad input.";

// The data source of PATH, recognised from its files ("" if none).
std::string DetectSource(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p.extension() == ".npz" ? "npz" : "";
  if (!fs::is_directory(p, ec)) return "";
  const auto has = [&](const char* name) { return fs::exists(p / name, ec); };
  if (has("x_train.npy")) return "npy";
  if (has("test_batch.bin") || has("data_batch_1.bin")) return "cifar10";
  if (has("train.bin") && has("test.bin")) return "cifar100";
  if (fs::is_directory(p / "train", ec) && fs::is_directory(p / "test", ec)) return "leaf";
  if (has("train-images-idx3-ubyte") || has("train-images-idx3-ubyte.gz")) return "idx";
  return "";
}

nlohmann::json Histogram(const Dataset& d) {
  nlohmann::json out = nlohmann::json::array();
  if (d.num_classes <= 0) return out;
  std::vector<std::int64_t> counts(static_cast<std::size_t>(d.num_classes), 0);
  for (Eigen::Index i = 0; i < d.labels.size(); ++i) {
    ++counts[static_cast<std::size_t>(d.labels[i])];
  }
  for (std::int64_t c : counts) out.push_back(c);
  return out;
}

nlohmann::json SizeSummary(std::vector<std::int64_t> sizes) {
  nlohmann::json out;
  if (sizes.empty()) return out;
  std::sort(sizes.begin(), sizes.end());
  const auto at = [&](double q) {
    // The nearest-rank quantile.
    const auto i = static_cast<std::size_t>(
        std::max(0.0, std::ceil(q * static_cast<double>(sizes.size())) - 1.0));
    return sizes[std::min(i, sizes.size() - 1)];
  };
  double sum = 0.0;
  for (std::int64_t s : sizes) sum += static_cast<double>(s);
  const double mean = sum / static_cast<double>(sizes.size());
  double var = 0.0;
  for (std::int64_t s : sizes) var += (static_cast<double>(s) - mean) * (static_cast<double>(s) - mean);
  out["min"] = sizes.front();
  out["p10"] = at(0.1);
  out["median"] = at(0.5);
  out["p90"] = at(0.9);
  out["max"] = sizes.back();
  out["mean"] = mean;
  out["sd"] = sizes.size() > 1 ? std::sqrt(var / static_cast<double>(sizes.size() - 1)) : 0.0;
  return out;
}

std::string HistogramText(const nlohmann::json& h, std::int64_t total) {
  std::string out;
  if (h.size() > 20) {
    // Many classes: the spread of the counts, not every count.
    std::vector<std::int64_t> counts;
    for (const auto& c : h) counts.push_back(c.get<std::int64_t>());
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    const auto empty = std::count(counts.begin(), counts.end(), 0);
    absl::StrAppendFormat(&out, "%d classes: fewest rows %d (class %d), most %d (class %d), %d "
                                "empty (--json lists every count)",
                          counts.size(), *lo, lo - counts.begin(), *hi, hi - counts.begin(),
                          empty);
    (void)total;
    return out;
  }
  for (std::size_t c = 0; c < h.size(); ++c) {
    const auto n = h[c].get<std::int64_t>();
    absl::StrAppendFormat(&out, "%s%d: %d (%.1f%%)", c == 0 ? "" : ", ", c, n,
                          total > 0 ? 100.0 * static_cast<double>(n) / static_cast<double>(total)
                                    : 0.0);
  }
  return out;
}

}  // namespace

int DataCommand(const std::vector<std::string>& args, std::FILE* out, std::FILE* err) {
  bool json = false;
  std::vector<std::string> positional;
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "-help") {
      std::fprintf(out, "%s\n", kUsage);
      return 0;
    }
    if (a == "--json") {
      json = true;
    } else if (a.rfind("-", 0) == 0) {
      std::fprintf(err, "fedsim data: unknown flag %s\n%s\n", a.c_str(), kUsage);
      return 2;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2 || positional[0] != "inspect") {
    std::fprintf(err, "%s\n", kUsage);
    return 2;
  }
  const std::string target = positional[1];
  const fs::path p(target);
  const std::string ext = p.extension().string();
  absl::StatusOr<FederatedData> data = absl::InternalError("not loaded");
  nlohmann::json report;
  std::string partition;
  std::error_code ec;
  if (fs::is_regular_file(p, ec) && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigFile(target);
    if (!config.ok()) {
      std::fprintf(err, "%s\n", std::string(config.status().message()).c_str());
      return 2;
    }
    if (config->data().source() == v1::DataConfig::SOURCE_LSA) {
      std::fprintf(err, "fedsim data inspect: %s: data.source = lsa has no rows to inspect\n",
                   target.c_str());
      return 2;
    }
    report["config"] = target;
    report["source"] =
        absl::AsciiStrToLower(v1::DataConfig::Source_Name(config->data().source()).substr(7));
    partition =
        absl::AsciiStrToLower(v1::ClientsConfig::Partition_Name(config->clients().partition())
                                  .substr(10));
    data = PrepareExperimentData(*config);
  } else {
    const std::string source = DetectSource(p);
    if (source.empty()) {
      std::fprintf(err,
                   "fedsim data inspect: %s: not a data set fedsim recognises (an .npz file; a "
                   "folder with x_train.npy, data_batch_1.bin or test_batch.bin, train.bin and "
                   "test.bin, train/ and test/ (LEAF), or train-images-idx3-ubyte; or a config "
                   ".yaml)\n",
                   target.c_str());
      return 2;
    }
    // A YAML single-quoted scalar: a quote is written twice.
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(absl::StrCat(
        "data: {source: ", source, ", path: '", absl::StrReplaceAll(target, {{"'", "''"}}),
        "'}\n"));
    if (!config.ok()) {
      std::fprintf(err, "%s\n", std::string(config.status().message()).c_str());
      return 2;
    }
    report["path"] = target;
    report["source"] = source;
    data = LoadExperimentData(*config);
    if (data.ok() && !data->train_row_clients.empty()) partition = "natural";
  }
  if (!data.ok()) {
    std::fprintf(err, "%s\n", std::string(data.status().message()).c_str());
    return 2;
  }
  const FederatedData& d = *data;
  report["train_rows"] = d.train.size();
  report["test_rows"] = d.test.size();
  report["features"] = d.train.dim();
  if (!d.image.empty()) {
    report["image"] = {d.image.channels, d.image.height, d.image.width};
  }
  report["classes"] = d.train.num_classes;
  report["train_labels"] = Histogram(d.train);
  report["test_labels"] = Histogram(d.test);
  std::vector<std::int64_t> sizes;
  if (!d.client_rows.empty()) {
    for (const auto& rows : d.client_rows) sizes.push_back(static_cast<std::int64_t>(rows.size()));
  } else if (!d.train_row_clients.empty()) {
    std::map<std::int64_t, std::int64_t> counts;
    for (std::int64_t id : d.train_row_clients) ++counts[id];
    for (const auto& [id, n] : counts) sizes.push_back(n);
  }
  if (!sizes.empty()) {
    report["clients"] = static_cast<std::int64_t>(sizes.size());
    report["partition"] = partition;
    report["client_rows"] = SizeSummary(sizes);
  }
  if (json) {
    std::fprintf(out, "%s\n", report.dump().c_str());
    return 0;
  }
  std::string text;
  absl::StrAppend(&text, "source      ", report["source"].get<std::string>(), " (", target,
                  ")\n");
  absl::StrAppendFormat(&text, "rows        %d training, %d test\n", d.train.size(),
                        d.test.size());
  absl::StrAppendFormat(&text, "features    %d", d.train.dim());
  if (!d.image.empty()) {
    absl::StrAppendFormat(&text, " (images %d x %d x %d, channels first)", d.image.channels,
                          d.image.height, d.image.width);
  }
  absl::StrAppend(&text, "\n");
  if (d.train.num_classes > 0) {
    absl::StrAppend(&text, "classes     ", d.train.num_classes, "\n");
    absl::StrAppend(&text, "labels      training: ",
                    HistogramText(report["train_labels"], d.train.size()), "\n");
    absl::StrAppend(&text, "            test: ", HistogramText(report["test_labels"], d.test.size()),
                    "\n");
  } else {
    absl::StrAppend(&text, "labels      real targets (regression)\n");
  }
  if (!sizes.empty()) {
    const nlohmann::json& s = report["client_rows"];
    absl::StrAppendFormat(
        &text,
        "clients     %d (%s); rows a client: min %d, p10 %d, median %d, mean %.1f, p90 %d, max %d\n",
        sizes.size(), partition, s["min"].get<std::int64_t>(), s["p10"].get<std::int64_t>(),
        s["median"].get<std::int64_t>(), s["mean"].get<double>(), s["p90"].get<std::int64_t>(),
        s["max"].get<std::int64_t>());
  } else {
    absl::StrAppend(&text, "clients     none named by the files (a run partitions the rows: "
                           "clients.partition iid, dirichlet or shards)\n");
  }
  std::fputs(text.c_str(), out);
  return 0;
}

}  // namespace fedsim
