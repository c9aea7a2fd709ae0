#include "tools/privacy_cli.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/dp/rdp_accountant.h"
#include "nlohmann/json.hpp"

namespace fedsim {
namespace {

const std::set<std::string>& KnownFlags() {
  static const auto* flags = new std::set<std::string>{
      "sampling-rate", "noise-multiplier", "target-epsilon", "steps",
      "delta",         "max-order",        "fractional-orders", "orders",
      "conversion",    "json"};
  return *flags;
}

absl::Status Bad(const std::string& flag, const std::string& value,
                 const std::string& rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " = '", value, "'; ", rule));
}

// --name=value, --name value, and bare boolean --json / --fractional-orders.
absl::StatusOr<std::map<std::string, std::string>> ParseFlags(
    const std::vector<std::string>& args) {
  std::map<std::string, std::string> flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", a, "' (flags start with --)"));
    }
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    for (char& c : name) if (c == '_') c = '-';
    if (KnownFlags().count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag --", name,
          " (known: --sampling-rate, --noise-multiplier, --target-epsilon, "
          "--steps, --delta, --max-order, --fractional-orders, --orders, "
          "--conversion, --json)"));
    }
    if (!has_value) {
      if (name == "json" || name == "fractional-orders") {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
    }
    if (flags.count(name) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is given twice"));
    }
    flags[name] = value;
  }
  return flags;
}

absl::StatusOr<double> Number(const std::string& flag, const std::string& text) {
  double v;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
    return Bad(flag, text, "must be a finite number");
  }
  return v;
}

absl::StatusOr<bool> Bool(const std::string& flag, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return Bad(flag, text, "must be true or false");
}

struct Request {
  double q = 0.0;
  std::optional<double> z;
  std::optional<double> target;
  std::int64_t steps = 0;
  double delta = 1e-5;
  std::vector<double> orders;
  RdpConversion conversion = RdpConversion::kTight;
  bool json = false;
};

absl::StatusOr<Request> ParseRequest(const std::vector<std::string>& args) {
  absl::StatusOr<std::map<std::string, std::string>> parsed = ParseFlags(args);
  if (!parsed.ok()) return parsed.status();
  const std::map<std::string, std::string>& f = *parsed;
  Request r;
  auto get = [&](const std::string& name) -> const std::string* {
    auto it = f.find(name);
    return it == f.end() ? nullptr : &it->second;
  };
  if (get("sampling-rate") == nullptr) {
    return absl::InvalidArgumentError("--sampling-rate Q is required");
  }
  absl::StatusOr<double> q = Number("sampling-rate", *get("sampling-rate"));
  if (!q.ok()) return q.status();
  if (!(*q > 0.0 && *q <= 1.0)) {
    return Bad("sampling-rate", *get("sampling-rate"), "must be in (0, 1]");
  }
  r.q = *q;
  if (get("steps") == nullptr) return absl::InvalidArgumentError("--steps T is required");
  if (!absl::SimpleAtoi(*get("steps"), &r.steps) || r.steps < 0) {
    return Bad("steps", *get("steps"), "must be an integer >= 0");
  }
  if (const std::string* d = get("delta")) {
    absl::StatusOr<double> delta = Number("delta", *d);
    if (!delta.ok()) return delta.status();
    if (!(*delta > 0.0 && *delta < 1.0)) return Bad("delta", *d, "must be in (0, 1)");
    r.delta = *delta;
  }
  const std::string* z = get("noise-multiplier");
  const std::string* e = get("target-epsilon");
  if ((z == nullptr) == (e == nullptr)) {
    return absl::InvalidArgumentError(
        "give exactly one of --noise-multiplier Z (prints epsilon) and "
        "--target-epsilon E (prints the noise multiplier)");
  }
  if (z != nullptr) {
    absl::StatusOr<double> v = Number("noise-multiplier", *z);
    if (!v.ok()) return v.status();
    if (!(*v >= 0.0)) return Bad("noise-multiplier", *z, "must be >= 0");
    r.z = *v;
  } else {
    absl::StatusOr<double> v = Number("target-epsilon", *e);
    if (!v.ok()) return v.status();
    if (!(*v > 0.0)) return Bad("target-epsilon", *e, "must be > 0");
    if (r.steps < 1) {
      return Bad("steps", *get("steps"), "calibration needs at least 1 step");
    }
    r.target = *v;
  }
  if (const std::string* c = get("conversion")) {
    if (*c == "tight") {
      r.conversion = RdpConversion::kTight;
    } else if (*c == "classical") {
      r.conversion = RdpConversion::kClassical;
    } else {
      return Bad("conversion", *c, "must be tight or classical");
    }
  }
  if (const std::string* j = get("json")) {
    absl::StatusOr<bool> v = Bool("json", *j);
    if (!v.ok()) return v.status();
    r.json = *v;
  }
  if (const std::string* list = get("orders")) {
    if (get("max-order") != nullptr || get("fractional-orders") != nullptr) {
      return absl::InvalidArgumentError(
          "--orders replaces --max-order and --fractional-orders; give one form");
    }
    for (absl::string_view part : absl::StrSplit(*list, ',')) {
      double a;
      if (!absl::SimpleAtod(part, &a) || !std::isfinite(a) || !(a > 1.0)) {
        return Bad("orders", *list, "must be a comma-separated list of numbers > 1");
      }
      r.orders.push_back(a);
    }
  } else {
    int max_order = 256;
    if (const std::string* m = get("max-order")) {
      if (!absl::SimpleAtoi(*m, &max_order) || max_order < 2 || max_order > 1024) {
        return Bad("max-order", *m, "must be an integer in [2, 1024]");
      }
    }
    bool fractional = true;
    if (const std::string* fr = get("fractional-orders")) {
      absl::StatusOr<bool> v = Bool("fractional-orders", *fr);
      if (!v.ok()) return v.status();
      fractional = *v;
    }
    r.orders = RdpOrders(max_order, fractional);
  }
  return r;
}

std::string Num(double v) { return absl::StrFormat("%.10g", v); }

}  // namespace

constexpr char kPrivacyHelp[] =
    "usage: fedsim privacy --sampling-rate Q (--noise-multiplier Z | --target-epsilon E)\n"
    "                      --steps T [--delta D] [--max-order N] [--fractional-orders=B]\n"
    "                      [--orders A,B,...] [--conversion tight|classical] [--json]\n"
    "\n"
    "The Renyi-DP accountant (docs/dp.md): the epsilon of T Poisson-subsampled\n"
    "Gaussian steps at sampling rate Q and noise multiplier Z, or the smallest\n"
    "noise multiplier that keeps epsilon <= E.\n"
    "\n"
    "flags:\n"
    "  --sampling-rate=Q       per-step sampling rate, in (0, 1] (required)\n"
    "  --noise-multiplier=Z    noise std over the clipping norm, >= 0\n"
    "  --target-epsilon=E      instead of Z: find the smallest Z with epsilon <= E\n"
    "  --steps=T               number of steps, integer >= 0 (required)\n"
    "  --delta=D               in (0, 1), default 1e-5\n"
    "  --max-order=N           integer orders 2..N, default 256\n"
    "  --fractional-orders=B   also Opacus' orders 1.1..10.9, default true\n"
    "  --orders=A,B,...        an explicit grid of orders instead\n"
    "  --conversion=C          tight (default) or classical RDP-to-DP conversion\n"
    "  --json                  one JSON object on stdout\n"
    "\n"
    "Exit codes: 0 done, 2 bad or missing values (one line on stderr).";

int PrivacyCommand(const std::vector<std::string>& args, std::FILE* out,
                   std::FILE* err) {
  for (const std::string& a : args) {
    if (a == "--") break;
    if (a == "-h" || a == "-help" || a == "--help" || a == "--helpfull") {
      std::fprintf(out, "%s\n", kPrivacyHelp);
      return 0;
    }
  }
  absl::StatusOr<Request> r = ParseRequest(args);
  if (!r.ok()) {
    std::fprintf(err, "fedsim privacy: %s\n", std::string(r.status().message()).c_str());
    return 2;
  }
  const char* conversion =
      r->conversion == RdpConversion::kTight ? "tight" : "classical";
  double z;
  if (r->target.has_value()) {
    absl::StatusOr<double> calibrated = CalibrateNoiseMultiplier(
        r->q, r->steps, r->delta, *r->target, r->orders, r->conversion);
    if (!calibrated.ok()) {
      std::fprintf(err, "fedsim privacy: %s\n",
                   std::string(calibrated.status().message()).c_str());
      return 2;
    }
    z = *calibrated;
  } else {
    z = *r->z;
  }
  RdpAccountant accountant(r->orders);
  accountant.Compose(r->q, z, r->steps);
  const PrivacySpent spent = accountant.Spent(r->delta, r->conversion);
  if (r->json) {
    nlohmann::json j = {{"sampling_rate", r->q},
                        {"noise_multiplier", z},
                        {"steps", r->steps},
                        {"delta", r->delta},
                        {"conversion", conversion},
                        {"orders", r->orders.size()}};
    // JSON has no infinity: an unbounded epsilon (z = 0) is null.
    j["epsilon"] = std::isinf(spent.epsilon) ? nlohmann::json() : nlohmann::json(spent.epsilon);
    j["order"] = std::isnan(spent.order) ? nlohmann::json() : nlohmann::json(spent.order);
    if (r->target.has_value()) j["target_epsilon"] = *r->target;
    std::fprintf(out, "%s\n", j.dump().c_str());
    return 0;
  }
  if (r->target.has_value()) {
    std::fprintf(out,
                 "noise multiplier z = %s keeps epsilon <= %s at delta = %s\n"
                 "  (epsilon %s at order %s; q = %s, %lld steps, %zu orders, "
                 "%s conversion)\n",
                 Num(z).c_str(), Num(*r->target).c_str(), Num(r->delta).c_str(),
                 Num(spent.epsilon).c_str(), Num(spent.order).c_str(),
                 Num(r->q).c_str(), static_cast<long long>(r->steps),
                 r->orders.size(), conversion);
  } else {
    std::fprintf(out,
                 "epsilon = %s at delta = %s (order %s)\n"
                 "  (q = %s, z = %s, %lld steps, %zu orders, %s conversion)\n",
                 Num(spent.epsilon).c_str(), Num(r->delta).c_str(),
                 Num(spent.order).c_str(), Num(r->q).c_str(), Num(z).c_str(),
                 static_cast<long long>(r->steps), r->orders.size(), conversion);
  }
  return 0;
}

}  // namespace fedsim
