#include "tools/sweep_cli.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/config.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kUsage[] =
    "usage: fedsim sweep CONFIG --grid KEY=V1,V2,... [--grid ...] [--seeds 1-5]\n"
    "                    [--jobs J] [--threads T] [--out DIR] [--resume] [--launch P]\n"
    "                    [--set KEY=VALUE ...]\n"
    "\n"
    "Runs CONFIG at every point of the cartesian product of the grids (KEY a\n"
    "config key as for --set; values split at commas, or a YAML list\n"
    "'[[1, 2], [3]]'; linked keys K1,K2=[[a1, b1], [a2, b2]] take their values\n"
    "together), times the seeds (1-5 or 1,3,7), J runs at a time on T\n"
    "threads each (default: cores / J). Every point's config is checked first.\n"
    "Run directories DIR/<key=value,...> (default DIR runs/sweep-<config name>),\n"
    "their output in DIR/logs/, an index in DIR/sweep.json. A failed point does\n"
    "not stop the others (exit 1 at the end). --resume continues a killed\n"
    "sweep: finished points are kept, the others continue from their\n"
    "checkpoints. --launch P runs each point as `fedsim launch --workers P`.\n"
    "fedsim report DIR/* groups the seeds of each point (docs/report.md).";

// One dimension of the grid: one key, or several keys that take their
// values together ("K1,K2=[[a1, b1], [a2, b2]]": linked keys).
struct Axis {
  std::string key;                               // as given: "K" or "K1,K2"
  std::vector<std::string> keys;                 // K1, K2, ...
  std::vector<std::vector<std::string>> values;  // one value per key, per entry
};

struct Point {
  std::string name;
  std::vector<std::pair<std::string, std::string>> values;  // key, value
  std::vector<std::string> overrides;                       // key=value
  std::string status = "pending";
  int exit_code = -1;
  double wall_s = 0.0;
  std::string error;
};

absl::Status Usage(const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(why, "\n", kUsage));
}

// A YAML node as one override value: scalars as written, lists and maps in
// flow style.
std::string ValueText(const YAML::Node& v) {
  if (v.IsScalar()) return v.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << v;
  return e.c_str();
}

// "key=v1,v2", "key=[v1, [a, b]]" (a YAML list: values that hold commas), or
// linked keys "k1,k2=[[a1, b1], [a2, b2]]" (an entry per point, a value per
// key). Errors C-escape what the user typed, so that they stay one line.
absl::StatusOr<Axis> ParseGrid(const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grid ", absl::CHexEscape(text),
                     ": expected KEY=V1,V2,... (e.g. local.lr=0.01,0.1)"));
  }
  Axis axis;
  axis.key = text.substr(0, eq);
  for (absl::string_view k : absl::StrSplit(axis.key, ',')) {
    axis.keys.emplace_back(absl::StripAsciiWhitespace(k));  // "k1, k2" reads as "k1,k2"
  }
  axis.key = absl::StrJoin(axis.keys, ",");
  for (const std::string& k : axis.keys) {
    if (k.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--grid ", absl::CHexEscape(text), ": an empty key in '",
                       absl::CHexEscape(axis.key), "'"));
    }
  }
  const std::string rest = text.substr(eq + 1);
  const bool linked = axis.keys.size() > 1;
  if (!rest.empty() && rest[0] == '[') {
    YAML::Node list;
    try {
      list = YAML::Load(rest);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("--grid ", absl::CHexEscape(text),
                       ": not a YAML list: ", absl::CHexEscape(e.msg)));
    }
    if (!list.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--grid ", absl::CHexEscape(text), ": not a YAML list"));
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
      const YAML::Node v = list[i];
      if (!linked) {
        axis.values.push_back({ValueText(v)});
        continue;
      }
      if (!v.IsSequence() || v.size() != axis.keys.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--grid ", absl::CHexEscape(axis.key), ": entry ", i + 1, " (",
            absl::CHexEscape(ValueText(v)), ") must be a list of ",
            axis.keys.size(), " values, one per key"));
      }
      std::vector<std::string> entry;
      for (const YAML::Node& x : v) entry.push_back(ValueText(x));
      axis.values.push_back(std::move(entry));
    }
  } else if (linked) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--grid ", absl::CHexEscape(text), ": linked keys take a YAML list of lists, e.g. ",
        absl::CHexEscape(axis.key),
        "=[[a1, b1], [a2, b2]]"));
  } else {
    for (absl::string_view v : absl::StrSplit(rest, ',')) axis.values.push_back({std::string(v)});
  }
  for (const std::vector<std::string>& entry : axis.values) {
    for (const std::string& v : entry) {
      if (v.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--grid ", absl::CHexEscape(text), ": an empty value"));
      }
    }
  }
  if (axis.values.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grid ", absl::CHexEscape(text), ": no values"));
  }
  return axis;
}

// "1-5", "1,3,7" or "4".
absl::StatusOr<Axis> ParseSeeds(const std::string& text) {
  Axis axis;
  axis.key = "seed";
  axis.keys = {"seed"};
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::uint64_t a = 0, b = 0;
    const std::vector<absl::string_view> range = absl::StrSplit(part, '-');
    if (range.size() == 1 && absl::SimpleAtoi(range[0], &a)) {
      axis.values.push_back({absl::StrCat(a)});
    } else if (range.size() == 2 && absl::SimpleAtoi(range[0], &a) &&
               absl::SimpleAtoi(range[1], &b) && a <= b && b - a < 100000) {
      for (std::uint64_t s = a; s <= b; ++s) axis.values.push_back({absl::StrCat(s)});
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--seeds ", text, ": expected seeds >= 0 as A-B, A,B,C or A (e.g. 1-5)"));
    }
  }
  return axis;
}

// A run directory's name from a point's values: "key=value,key=value".
// In a value, letters, digits and ._- stay, ':' becomes '-' and ',' '+'
// (a map {name: fedprox, prox_mu: 0} reads name-fedprox+prox_mu-0), blanks,
// braces, brackets and quotes go, anything else becomes '_'.
std::string NameOf(const std::vector<std::pair<std::string, std::string>>& values) {
  std::string name;
  for (const auto& [k, v] : values) {
    if (!name.empty()) name += ',';
    name += k + "=";
    for (const char c : v) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') {
        name += c;
      } else if (c == ':') {
        name += '-';
      } else if (c == ',') {
        name += '+';
      } else if (c == ' ' || c == '{' || c == '}' || c == '[' || c == ']' || c == '"' ||
                 c == '\'') {
        continue;
      } else {
        name += '_';
      }
    }
  }
  return name.empty() ? "base" : name;
}

bool Finished(const fs::path& run_dir) {
  std::ifstream in(run_dir / "events.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"event\":\"run_end\"") != std::string::npos) return true;
  }
  return false;
}

std::string LastLine(const fs::path& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string Duration(double s) {
  const auto t = static_cast<std::int64_t>(s);
  if (t < 60) return absl::StrFormat("%.1fs", s);
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
}

struct Options {
  std::string config;
  std::vector<Axis> axes;
  std::vector<std::string> base;  // --set
  int jobs = 1;
  int threads = 0;
  int launch = 0;
  std::string out;
  bool resume = false;
};

absl::StatusOr<Options> Parse(const std::vector<std::string>& args) {
  Options o;
  std::optional<Axis> seeds;
  std::set<std::string> keys;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    bool has_value = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_value = true;
    }
    const auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return Usage(absl::StrCat(a, " needs a value"));
      return args[++i];
    };
    const auto positive = [&](const std::string& flag, int& dst, int lo) -> absl::Status {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (!absl::SimpleAtoi(*v, &dst) || dst < lo || dst > 4096) {
        return absl::InvalidArgumentError(
            absl::StrCat(flag, " = ", *v, "; must be an integer in [", lo, ", 4096]"));
      }
      return absl::OkStatus();
    };
    if (a == "--grid") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      absl::StatusOr<Axis> axis = ParseGrid(*v);
      if (!axis.ok()) return axis.status();
      for (const std::string& k : axis->keys) {
        if (!keys.insert(k).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("--grid ", absl::CHexEscape(k), " given twice"));
        }
      }
      o.axes.push_back(*std::move(axis));
    } else if (a == "--seeds") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      absl::StatusOr<Axis> s = ParseSeeds(*v);
      if (!s.ok()) return s.status();
      seeds = *std::move(s);
    } else if (a == "--set") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.base.push_back(*v);
    } else if (a == "--jobs") {
      if (absl::Status s = positive("--jobs", o.jobs, 1); !s.ok()) return s;
    } else if (a == "--threads") {
      if (absl::Status s = positive("--threads", o.threads, 1); !s.ok()) return s;
    } else if (a == "--launch") {
      if (absl::Status s = positive("--launch", o.launch, 1); !s.ok()) return s;
    } else if (a == "--out") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.out = *v;
    } else if (a == "--resume") {
      o.resume = true;
    } else if (a.rfind("-", 0) == 0) {
      return Usage(absl::StrCat("fedsim sweep: unknown flag ", a));
    } else if (o.config.empty()) {
      o.config = a;
    } else {
      return Usage(absl::StrCat("fedsim sweep: a second CONFIG '", a, "'"));
    }
  }
  if (o.config.empty()) return Usage("fedsim sweep: CONFIG is missing");
  if (seeds.has_value()) {
    if (keys.count("seed") != 0) {
      return absl::InvalidArgumentError("--seeds and --grid seed=... both given; give one");
    }
    o.axes.push_back(*std::move(seeds));
  }
  if (o.axes.empty()) return Usage("fedsim sweep: no --grid and no --seeds: nothing to sweep");
  if (o.out.empty()) {
    o.out = (fs::path("runs") / absl::StrCat("sweep-", fs::path(o.config).stem().string()))
                .string();
  }
  if (o.threads == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    o.threads = std::max(1, cores / o.jobs);
  }
  return o;
}

std::vector<Point> Points(const Options& o) {
  std::vector<Point> points(1);
  for (const Axis& axis : o.axes) {
    std::vector<Point> next;
    for (const Point& p : points) {
      for (const std::vector<std::string>& entry : axis.values) {
        Point q = p;
        for (std::size_t k = 0; k < axis.keys.size(); ++k) {
          q.values.emplace_back(axis.keys[k], entry[k]);
          q.overrides.push_back(axis.keys[k] + "=" + entry[k]);
        }
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  std::map<std::string, int> seen;
  for (Point& p : points) {
    p.name = NameOf(p.values);
    if (p.name.size() > 200) p.name = p.name.substr(0, 200);
    if (const int n = seen[p.name]++; n > 0) p.name += absl::StrCat("-", n);
  }
  return points;
}

json IndexOf(const Options& o, const std::vector<Point>& points) {
  json index;
  index["config"] = o.config;
  index["set"] = o.base;
  index["grid"] = json::object();
  for (const Axis& a : o.axes) {
    json values = json::array();
    for (const std::vector<std::string>& entry : a.values) {
      values.push_back(a.keys.size() == 1 ? json(entry[0]) : json(entry));
    }
    index["grid"][a.key] = values;
  }
  index["jobs"] = o.jobs;
  index["threads"] = o.threads;
  index["runtime"] = o.launch > 0 ? absl::StrCat("launch --workers ", o.launch) : "run";
  index["points"] = json::array();
  for (const Point& p : points) {
    json values = json::object();
    for (const auto& [k, v] : p.values) values[k] = v;
    index["points"].push_back({{"dir", p.name},
                               {"values", values},
                               {"overrides", p.overrides},
                               {"status", p.status},
                               {"exit_code", p.exit_code},
                               {"wall_s", p.wall_s},
                               {"error", p.error}});
  }
  return index;
}

void WriteIndex(const fs::path& path, const json& index) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << index.dump(2) << "\n";
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
}

}  // namespace

int SweepCommand(const std::vector<std::string>& args, const std::string& self, std::FILE* out,
                 std::FILE* err) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "-help" || a == "--helpfull") {
      std::fprintf(out, "%s\n", kUsage);
      return 0;
    }
  }
  absl::StatusOr<Options> parsed = Parse(args);
  if (!parsed.ok()) {
    std::fprintf(err, "fedsim sweep: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  const Options& o = *parsed;
  std::vector<Point> points = Points(o);
  // Every point's config first: a typo in a grid value fails now, with the
  // point named, not after hours of the points before it.
  for (const Point& p : points) {
    std::vector<std::string> overrides = o.base;
    overrides.insert(overrides.end(), p.overrides.begin(), p.overrides.end());
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigFile(o.config, overrides);
    if (!config.ok()) {
      std::fprintf(err, "fedsim sweep: point %s: %s\n", p.name.c_str(),
                   std::string(config.status().message()).c_str());
      return 2;
    }
  }
  const fs::path dir(o.out);
  const fs::path index_path = dir / "sweep.json";
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    if (!o.resume) {
      std::fprintf(err,
                   "fedsim sweep: %s holds a sweep (sweep.json); --resume continues it, or "
                   "choose another --out\n",
                   o.out.c_str());
      return 2;
    }
    // The points must be the same sweep's.
    std::ifstream in(index_path);
    json old;
    try {
      in >> old;
    } catch (const json::exception&) {
      old = json();
    }
    std::vector<std::string> old_dirs, dirs;
    if (old.contains("points") && old["points"].is_array()) {
      for (const json& p : old["points"]) old_dirs.push_back(p.value("dir", ""));
    }
    for (const Point& p : points) dirs.push_back(p.name);
    if (old_dirs != dirs || old.value("config", "") != o.config ||
        old.value("set", json::array()) != json(o.base)) {
      std::fprintf(err,
                   "fedsim sweep: %s holds a sweep of other points or another config; resume "
                   "it with its own arguments (see its sweep.json), or choose another --out\n",
                   o.out.c_str());
      return 2;
    }
  }
  fs::create_directories(dir / "logs", ec);
  if (ec) {
    std::fprintf(err, "fedsim sweep: --out %s: %s\n", o.out.c_str(), ec.message().c_str());
    return 2;
  }
  std::vector<std::size_t> queue;
  int done = 0, failed = 0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (o.resume && Finished(dir / points[i].name)) {
      points[i].status = "done";
      points[i].exit_code = 0;
      ++done;
    } else {
      queue.push_back(i);
    }
  }
  WriteIndex(index_path, IndexOf(o, points));
  std::fprintf(err, "sweep: %zu points (%zu to run, %d done), %d at a time on %d threads: %s\n",
               points.size(), queue.size(), done, o.jobs, o.threads, o.out.c_str());

  const auto start_all = std::chrono::steady_clock::now();
  std::map<pid_t, std::pair<std::size_t, std::chrono::steady_clock::time_point>> running;
  const pid_t parent = ::getpid();
  std::size_t next = 0;
  while (next < queue.size() || !running.empty()) {
    while (next < queue.size() && static_cast<int>(running.size()) < o.jobs) {
      Point& p = points[queue[next++]];
      std::vector<std::string> argv = {self, o.launch > 0 ? "launch" : "run", o.config};
      for (const std::string& s : o.base) argv.insert(argv.end(), {"--set", s});
      for (const std::string& s : p.overrides) argv.insert(argv.end(), {"--set", s});
      argv.insert(argv.end(), {"--out", (dir / p.name).string(), "--quiet", "--resume"});
      if (o.launch > 0) {
        argv.insert(argv.end(), {"--workers", absl::StrCat(o.launch)});
      } else {
        argv.insert(argv.end(), {"--threads", absl::StrCat(o.threads)});
      }
      const std::string log = (dir / "logs" / (p.name + ".log")).string();
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      if (pid == 0) {
        // The run dies with the sweep (a killed sweep leaves no orphans
        // writing into its directories).
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) ::_exit(127);
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
          ::dup2(fd, 1);
          ::dup2(fd, 2);
        }
        std::vector<char*> c;
        for (std::string& s : argv) c.push_back(s.data());
        c.push_back(nullptr);
        ::execv(self.c_str(), c.data());
        std::fprintf(stderr, "fedsim sweep: cannot run %s: %s\n", self.c_str(),
                     std::strerror(errno));
        ::_exit(127);
      }
      if (pid < 0) {
        std::fprintf(err, "fedsim sweep: fork: %s\n", std::strerror(errno));
        return 1;
      }
      p.status = "running";
      running[pid] = {static_cast<std::size_t>(&p - points.data()),
                      std::chrono::steady_clock::now()};
      WriteIndex(index_path, IndexOf(o, points));
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    Point& p = points[it->second.first];
    p.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             it->second.second)
                   .count();
    running.erase(it);
    p.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (p.exit_code == 0 && Finished(dir / p.name)) {
      p.status = "done";
      ++done;
    } else {
      p.status = "failed";
      p.error = LastLine(dir / "logs" / (p.name + ".log"));
      ++failed;
    }
    WriteIndex(index_path, IndexOf(o, points));
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_all).count();
    std::fprintf(err, "sweep: [%d/%zu] %s %s (%s)%s; %zu running, %d failed, %s elapsed\n",
                 done + failed, points.size(), p.status.c_str(), p.name.c_str(),
                 Duration(p.wall_s).c_str(),
                 p.status == "failed" ? absl::StrCat(": exit ", p.exit_code, ", ", p.error).c_str()
                                      : "",
                 running.size(), failed, Duration(elapsed).c_str());
  }
  std::fprintf(out, "sweep %s: %d of %zu points done, %d failed; index %s\n", o.out.c_str(), done,
               points.size(), failed, index_path.c_str());
  for (const Point& p : points) {
    if (p.status == "failed") {
      std::fprintf(out, "  failed %s: %s (log %s)\n", p.name.c_str(), p.error.c_str(),
                   (dir / "logs" / (p.name + ".log")).c_str());
    }
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace fedsim
