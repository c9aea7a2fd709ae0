#include "common/config/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace fedsim {
namespace {

namespace pb = google::protobuf;

std::string JoinPath(const std::string& prefix, absl::string_view key) {
  return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
}

absl::Status Bad(const std::string& path, absl::string_view value,
                 absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("config: ", path, " = '", value, "'; ", rule));
}

std::string KnownKeys(const pb::Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) {
    names.push_back(d->field(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

// Upper-snake prefix of an enum's values: "Source" -> "SOURCE_".
std::string EnumPrefix(const pb::EnumDescriptor* e) {
  std::string out;
  for (char c : e->name()) {
    if (absl::ascii_isupper(c) && !out.empty()) out.push_back('_');
    out.push_back(absl::ascii_toupper(c));
  }
  return out + "_";
}

absl::StatusOr<const pb::EnumValueDescriptor*> ParseEnum(
    const pb::EnumDescriptor* e, const std::string& text,
    const std::string& path) {
  const std::string upper = absl::AsciiStrToUpper(text);
  const std::string prefix = EnumPrefix(e);
  std::vector<std::string> choices;
  for (int i = 0; i < e->value_count(); ++i) {
    const pb::EnumValueDescriptor* v = e->value(i);
    if (v->number() == 0) continue;  // *_UNSPECIFIED is never a choice
    std::string shortname = v->name();
    if (shortname.rfind(prefix, 0) == 0) shortname = shortname.substr(prefix.size());
    choices.push_back(absl::AsciiStrToLower(shortname));
    if (upper == v->name() || upper == shortname) return v;
  }
  return Bad(path, text, absl::StrCat("must be one of: ",
                                      absl::StrJoin(choices, ", ")));
}

absl::Status SetScalar(pb::Message& msg, const pb::FieldDescriptor* f,
                       const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: ", path, " must be a single value"));
  }
  const std::string text = node.Scalar();
  const pb::Reflection* r = msg.GetReflection();
  const bool repeated = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return Bad(path, text, "must be an integer");
      repeated ? r->AddInt32(&msg, f, v) : r->SetInt32(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return Bad(path, text, "must be an integer");
      repeated ? r->AddInt64(&msg, f, v) : r->SetInt64(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) {
        return Bad(path, text, "must be a non-negative integer");
      }
      repeated ? r->AddUInt32(&msg, f, v) : r->SetUInt32(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) {
        return Bad(path, text, "must be a non-negative integer");
      }
      repeated ? r->AddUInt64(&msg, f, v) : r->SetUInt64(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      double v;
      if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
        return Bad(path, text, "must be a finite number");
      }
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
        repeated ? r->AddFloat(&msg, f, static_cast<float>(v))
                 : r->SetFloat(&msg, f, static_cast<float>(v));
      } else {
        repeated ? r->AddDouble(&msg, f, v) : r->SetDouble(&msg, f, v);
      }
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      bool v;
      if (lower == "true" || lower == "yes" || lower == "on") {
        v = true;
      } else if (lower == "false" || lower == "no" || lower == "off") {
        v = false;
      } else {
        return Bad(path, text, "must be true or false");
      }
      repeated ? r->AddBool(&msg, f, v) : r->SetBool(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      repeated ? r->AddString(&msg, f, text) : r->SetString(&msg, f, text);
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      FEDSIM_ASSIGN_OR_RETURN(const pb::EnumValueDescriptor* v,
                              ParseEnum(f->enum_type(), text, path));
      repeated ? r->AddEnum(&msg, f, v) : r->SetEnum(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return absl::InternalError("SetScalar called on a message field");
  }
  return absl::OkStatus();
}

absl::Status MapOnto(const YAML::Node& node, pb::Message& msg,
                     const std::string& path) {
  const pb::Descriptor* d = msg.GetDescriptor();
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: ", path.empty() ? "the document" : path,
        " must be a mapping of keys to values (keys: ", KnownKeys(d), ")"));
  }
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      // e.g. `local: {lr: 1, [0.5, 0.5]}`: yaml-cpp reads the list as a key.
      return absl::InvalidArgumentError(absl::StrCat(
          "config: ", path.empty() ? "the document" : path,
          " has a key that is a list or mapping; keys are names (keys: ", KnownKeys(d),
          ")"));
    }
    const std::string key = kv.first.as<std::string>();
    const std::string key_path = JoinPath(path, key);
    const pb::FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", key_path, ": unknown key (known keys",
                       path.empty() ? "" : absl::StrCat(" of ", path), ": ",
                       KnownKeys(d), ")"));
    }
    const YAML::Node& value = kv.second;
    if (value.IsNull()) continue;  // `key:` with nothing behind it: keep the default
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        if (!value.IsSequence()) {
          return absl::InvalidArgumentError(
              absl::StrCat("config: ", key_path, " must be a list"));
        }
        for (std::size_t i = 0; i < value.size(); ++i) {
          FEDSIM_RETURN_IF_ERROR(MapOnto(
              value[i], *msg.GetReflection()->AddMessage(&msg, f),
              absl::StrCat(key_path, "[", i, "]")));
        }
      } else {
        FEDSIM_RETURN_IF_ERROR(MapOnto(
            value, *msg.GetReflection()->MutableMessage(&msg, f), key_path));
      }
    } else if (f->is_repeated()) {
      if (!value.IsSequence()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config: ", key_path, " must be a list"));
      }
      for (std::size_t i = 0; i < value.size(); ++i) {
        FEDSIM_RETURN_IF_ERROR(
            SetScalar(msg, f, value[i], absl::StrCat(key_path, "[", i, "]")));
      }
    } else {
      FEDSIM_RETURN_IF_ERROR(SetScalar(msg, f, value, key_path));
    }
  }
  return absl::OkStatus();
}

// The declarative part of the config (options.proto's FieldRule on the
// fields of config.proto): defaults and ranges, read from the descriptors.

const v1::FieldRule& RuleOf(const pb::FieldDescriptor* f) {
  return f->options().GetExtension(v1::field);
}

// Whether `d` or a message below it declares a default (ApplyDefaults
// creates such sections, so config.json shows every default).
bool HasDefaults(const pb::Descriptor* d) {
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!f->is_repeated() && f->message_type() != d && HasDefaults(f->message_type())) {
        return true;
      }
    } else if (!RuleOf(f).default_().empty()) {
      return true;
    }
  }
  return false;
}

void ApplyFieldDefaults(pb::Message& m, const std::string& path) {
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string key = JoinPath(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) {
          ApplyFieldDefaults(*r->MutableRepeatedMessage(&m, f, j), absl::StrCat(key, "[", j, "]"));
        }
      } else if (HasDefaults(f->message_type())) {
        ApplyFieldDefaults(*r->MutableMessage(&m, f), key);
      }
      continue;
    }
    const std::string& text = RuleOf(f).default_();
    if (text.empty() || f->is_repeated()) continue;
    const bool unset = f->has_presence() ? !r->HasField(m, f)
                       : f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM
                           ? r->GetEnumValue(m, f) == 0
                           : false;
    if (!unset) continue;
    // A default that does not parse is a defect of config.proto, which
    // ConfigTest.EveryDeclaredDefaultParses catches.
    const absl::Status s = SetScalar(m, f, YAML::Node(text), key);
    FEDSIM_CHECK(s.ok()) << s;
  }
}

// The value of a numeric field (element `index` of a repeated one) as
// text, in the form the messages use, and as a double to compare.
std::pair<std::string, double> NumberOf(const pb::Message& m, const pb::FieldDescriptor* f,
                                        int index) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      const std::int64_t v = rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
      return {absl::StrCat(v), static_cast<double>(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      const std::int64_t v = rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
      return {absl::StrCat(v), static_cast<double>(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      const std::uint64_t v = rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
      return {absl::StrCat(v), static_cast<double>(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      const std::uint64_t v = rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
      return {absl::StrCat(v), static_cast<double>(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      const double v = rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
      return {absl::StrCat(v), v};
    }
    default: {
      const double v = rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
      return {absl::StrCat(v), v};
    }
  }
}

// A bound in the form of the field's values: integers without a decimal
// point.
std::string BoundText(const pb::FieldDescriptor* f, double bound) {
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE ||
      f->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
    return absl::StrCat(bound);
  }
  return absl::StrCat(static_cast<std::int64_t>(bound));
}

// "config: KEY = VALUE; must be OP BOUND" for the first value, in field
// order (depth first), outside its declared range.
absl::Status CheckFieldRanges(const pb::Message& m, const std::string& path) {
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string key = JoinPath(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) {
          FEDSIM_RETURN_IF_ERROR(
              CheckFieldRanges(r->GetRepeatedMessage(m, f, j), absl::StrCat(key, "[", j, "]")));
        }
      } else if (r->HasField(m, f)) {
        FEDSIM_RETURN_IF_ERROR(CheckFieldRanges(r->GetMessage(m, f), key));
      }
      continue;
    }
    const v1::FieldRule& rule = RuleOf(f);
    if (!rule.has_min() && !rule.has_max()) continue;
    const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
    if (!f->is_repeated() && f->has_presence() && !r->HasField(m, f)) continue;
    for (int j = 0; j < n; ++j) {
      const auto [text, value] = NumberOf(m, f, j);
      const std::string name = f->is_repeated() ? absl::StrCat(key, "[", j, "]") : key;
      const auto fail = [&](const char* op, double bound) {
        return absl::InvalidArgumentError(absl::StrCat("config: ", name, " = ", text,
                                                       "; must be ", op, " ",
                                                       BoundText(f, bound)));
      };
      if (rule.has_min() &&
          !(rule.min_exclusive() ? value > rule.min() : value >= rule.min())) {
        return fail(rule.min_exclusive() ? ">" : ">=", rule.min());
      }
      if (rule.has_max() &&
          !(rule.max_exclusive() ? value < rule.max() : value <= rule.max())) {
        return fail(rule.max_exclusive() ? "<" : "<=", rule.max());
      }
    }
  }
  return absl::OkStatus();
}

// Range checks in the style of Ceres' OPTION_GE: the message names the key,
// its value and the rule.
class Checker {
 public:
  template <typename T>
  Checker& Ge(absl::string_view key, T value, T bound) {
    if (status_.ok() && !(value >= bound)) Fail(key, value, ">=", bound);
    return *this;
  }
  template <typename T>
  Checker& Gt(absl::string_view key, T value, T bound) {
    if (status_.ok() && !(value > bound)) Fail(key, value, ">", bound);
    return *this;
  }
  template <typename T>
  Checker& Le(absl::string_view key, T value, T bound) {
    if (status_.ok() && !(value <= bound)) Fail(key, value, "<=", bound);
    return *this;
  }
  Checker& Require(bool ok, absl::string_view message) {
    if (status_.ok() && !ok) {
      status_ = absl::InvalidArgumentError(absl::StrCat("config: ", message));
    }
    return *this;
  }
  absl::Status status() const { return status_; }

 private:
  template <typename T>
  void Fail(absl::string_view key, T value, absl::string_view op, T bound) {
    status_ = absl::InvalidArgumentError(absl::StrCat(
        "config: ", key, " = ", value, "; must be ", op, " ", bound));
  }
  absl::Status status_;
};

}  // namespace

const v1::AlgorithmTraits& AlgorithmTraitsOf(v1::AlgorithmConfig::Name name) {
  const google::protobuf::EnumValueDescriptor* value =
      v1::AlgorithmConfig::Name_descriptor()->FindValueByNumber(name);
  if (value == nullptr) return v1::AlgorithmTraits::default_instance();
  return value->options().GetExtension(v1::algorithm);
}

std::string AlgorithmConfigName(v1::AlgorithmConfig::Name name) {
  return absl::AsciiStrToLower(v1::AlgorithmConfig::Name_Name(name).substr(5));
}

bool IsAsyncAlgorithm(v1::AlgorithmConfig::Name name) {
  return AlgorithmTraitsOf(name).family() == v1::AlgorithmTraits::FAMILY_ASYNC;
}

namespace {

// "a, b and c": the config names of the algorithms whose traits satisfy
// `pred`, in the order of the schema.
std::string AlgorithmsWith(bool (*pred)(const v1::AlgorithmTraits&)) {
  std::vector<std::string> names;
  const google::protobuf::EnumDescriptor* e = v1::AlgorithmConfig::Name_descriptor();
  for (int i = 0; i < e->value_count(); ++i) {
    const auto name = static_cast<v1::AlgorithmConfig::Name>(e->value(i)->number());
    const v1::AlgorithmTraits& t = AlgorithmTraitsOf(name);
    if (t.family() != v1::AlgorithmTraits::FAMILY_UNSPECIFIED && pred(t)) {
      names.push_back(AlgorithmConfigName(name));
    }
  }
  if (names.size() <= 1) return names.empty() ? "none" : names[0];
  const std::string last = names.back();
  names.pop_back();
  return absl::StrCat(absl::StrJoin(names, ", "), " and ", last);
}

}  // namespace

// Sets "a.b.c=value" in `root` (creating sections a and a.b as needed).
absl::Status ApplyOverride(YAML::Node& root, const std::string& text) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", absl::CHexEscape(text), ": ", why));
  };
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos) return bad("expected KEY=VALUE (e.g. local.lr=0.1)");
  const std::vector<std::string> keys = absl::StrSplit(text.substr(0, eq), '.');
  for (const std::string& k : keys) {
    if (k.empty() || absl::StrContains(k, ' ')) {
      return bad("the key must be section.key, dot-separated names (e.g. local.lr)");
    }
  }
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return bad(absl::StrCat("the value is not valid YAML: ", absl::CHexEscape(e.msg)));
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  // yaml-cpp nodes are handles: walk with fresh handles, never reassign one.
  std::vector<YAML::Node> path = {root};
  for (std::size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node child = path.back()[keys[i]];
    if (!child.IsDefined() || child.IsNull()) {
      path.back()[keys[i]] = YAML::Node(YAML::NodeType::Map);
      child = path.back()[keys[i]];
    } else if (!child.IsMap()) {
      return bad(absl::StrCat(absl::StrJoin(keys.begin(), keys.begin() + i + 1, "."),
                              " is a value, not a section"));
    }
    path.push_back(child);
  }
  if (!path.back().IsMap()) return bad("the config is not a map of sections");
  path.back()[keys.back()] = value;
  return absl::OkStatus();
}

absl::StatusOr<v1::ExperimentConfig> ParseConfigYaml(absl::string_view yaml,
                                                     const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
    for (const std::string& o : overrides) FEDSIM_RETURN_IF_ERROR(ApplyOverride(root, o));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: not valid YAML at line ", e.mark.line + 1, ", column ",
        e.mark.column + 1, ": ", absl::CHexEscape(e.msg)));
  }
  v1::ExperimentConfig config;
  if (root.IsNull()) return config;
  try {
    if (absl::Status s = MapOnto(root, config, ""); !s.ok()) {
      // Keys and values from the file are quoted in the message: keep it one
      // line whatever bytes they hold (found by fuzz_Config).
      std::string line;
      for (const char ch : s.message()) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x20 || u == 0x7f) {
          line += absl::StrCat("\\x", absl::Hex(u, absl::kZeroPad2));
        } else {
          line += ch;
        }
      }
      return absl::Status(s.code(), line);
    }
  } catch (const YAML::Exception& e) {
    // A conversion the checks above missed: still a one-line config error
    // (found by fuzzing, docs/reliability.md), never a crash.
    return absl::InvalidArgumentError(absl::StrCat(
        "config: cannot read the value at line ", e.mark.line + 1, ", column ",
        e.mark.column + 1, ": ", absl::CHexEscape(e.msg)));
  }
  return config;
}

std::int64_t FxTicksPerUnit(std::int64_t n, double fx_percent) {
  constexpr std::int64_t kMicro = 1000000;
  constexpr std::int64_t kMax = 1000000000;
  if (n < 2 || !(fx_percent > 0.0) || !(fx_percent < 100.0)) return kMicro;
  // X = p / q with q = 10^k, k <= 6.
  std::int64_t q = 1;
  while (q <= kMicro && std::abs(fx_percent * static_cast<double>(q) -
                                 std::round(fx_percent * static_cast<double>(q))) >
                            1e-9 * static_cast<double>(q)) {
    q *= 10;
  }
  if (q > kMicro) return kMicro;
  const std::int64_t p = std::llround(fx_percent * static_cast<double>(q));
  // tau_i = 1 - i p / D with D = 100 q (n - 1): every tau_i is a multiple of
  // 1 / (D / gcd(p, D)).
  if (n - 1 > kMax) return kMicro;
  const std::int64_t d_full = 100 * q * (n - 1);
  if (d_full / (100 * q) != n - 1) return kMicro;  // overflow
  const std::int64_t d = d_full / std::gcd(p, d_full);
  const std::int64_t lcm = kMicro / std::gcd(kMicro, d);  // times d: the lcm
  if (lcm > kMax / d) return kMicro;
  return lcm * d;
}

void ApplyDefaults(v1::ExperimentConfig& c) {
  const bool rounds_given = c.has_rounds();
  // Every default declared in config.proto (FieldRule.default); then the
  // defaults that depend on other fields (FieldRule.default_rule), by
  // section.
  ApplyFieldDefaults(c, "");

  auto* data = c.mutable_data();
  if (data->source() == v1::DataConfig::SOURCE_FASHION_MNIST &&
      data->path().empty()) {
    data->set_path("third_party/data/fashion-mnist");
  }

  auto* lsa = c.mutable_lsa();
  const bool lsa_source = data->source() == v1::DataConfig::SOURCE_LSA;

  const bool natural_source =
      data->source() == v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC || lsa_source;
  auto* clients = c.mutable_clients();
  if (clients->partition() == v1::ClientsConfig::PARTITION_UNSPECIFIED &&
      data->source() == v1::DataConfig::SOURCE_LEAF) {
    clients->set_partition(v1::ClientsConfig::PARTITION_NATURAL);
  }
  // Sources whose files name the clients: unset, count means all of them
  // (the number is known once the files are read).
  const bool clients_from_files =
      clients->partition() == v1::ClientsConfig::PARTITION_NATURAL &&
      (data->source() == v1::DataConfig::SOURCE_NPZ ||
       data->source() == v1::DataConfig::SOURCE_NPY ||
       data->source() == v1::DataConfig::SOURCE_LEAF);
  if (!clients->has_count() && !clients_from_files) {
    if (lsa_source && lsa->problem() == v1::LsaConfig::PROBLEM_TD) {
      clients->set_count(lsa->mdps_size());
    } else if (lsa_source && lsa->problem() == v1::LsaConfig::PROBLEM_LINEAR) {
      clients->set_count(lsa->systems_size());
    } else {
      clients->set_count(lsa_source ? 10 : natural_source ? 30 : 100);
    }
  }
  if (clients->partition() == v1::ClientsConfig::PARTITION_UNSPECIFIED) {
    clients->set_partition(
        natural_source || data->source() ==
                              v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES
            ? v1::ClientsConfig::PARTITION_NATURAL
            : v1::ClientsConfig::PARTITION_IID);
  }

  if (data->source() == v1::DataConfig::SOURCE_CIFAR100 && !data->has_cifar100_labels()) {
    data->set_cifar100_labels(v1::DataConfig::CIFAR100_LABELS_FINE);
  }
  if ((data->source() == v1::DataConfig::SOURCE_NPZ ||
       data->source() == v1::DataConfig::SOURCE_NPY) &&
      !data->has_image_layout()) {
    data->set_image_layout(v1::DataConfig::IMAGE_LAYOUT_AUTO);
  }

  auto* model = c.mutable_model();
  if (model->objective() == v1::ModelConfig::OBJECTIVE_UNSPECIFIED &&
      (!model->architecture().empty() || model->layers_size() > 0)) {
    model->set_objective(v1::ModelConfig::OBJECTIVE_NETWORK);
  }
  if (model->objective() == v1::ModelConfig::OBJECTIVE_UNSPECIFIED) {
    model->set_objective(
        data->source() == v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES
            ? v1::ModelConfig::OBJECTIVE_LEAST_SQUARES
            : v1::ModelConfig::OBJECTIVE_SOFTMAX);
  }
  if (model->precision() == v1::ModelConfig::PRECISION_UNSPECIFIED) {
    // LSA has no objective; float64 there keeps its resolved config what
    // it was before the key (checkpoints of LSA runs stay resumable).
    model->set_precision(model->objective() == v1::ModelConfig::OBJECTIVE_LEAST_SQUARES ||
                                 lsa_source
                             ? v1::ModelConfig::PRECISION_FLOAT64
                             : v1::ModelConfig::PRECISION_FLOAT32);
  }

  auto* algo = c.mutable_algorithm();
  if (algo->name() == v1::AlgorithmConfig::NAME_UNSPECIFIED) {
    algo->set_name(lsa_source ? v1::AlgorithmConfig::NAME_FEDLSA
                              : v1::AlgorithmConfig::NAME_FEDAVG);
  }
  if (!algo->has_keep_stragglers()) {
    algo->set_keep_stragglers(algo->name() == v1::AlgorithmConfig::NAME_FEDPROX);
  }

  auto* async = c.mutable_async();
  // The tick: exact F-X times on the virtual clock (FxTicksPerUnit);
  // microseconds otherwise (random times, traces, the wall clock).
  if (!async->has_ticks_per_unit()) {
    const bool fx = async->clock() == v1::AsyncConfig::CLOCK_VIRTUAL &&
                    async->compute_time() == v1::AsyncConfig::COMPUTE_TIME_FX;
    async->set_ticks_per_unit(fx ? FxTicksPerUnit(c.clients().count(), async->fx_percent())
                                 : 1000000);
  }
  // With a time horizon, the horizon ends an asynchronous run.
  if (IsAsyncAlgorithm(algo->name()) && async->horizon() > 0.0 && !rounds_given) {
    c.set_rounds(std::numeric_limits<std::int32_t>::max());
  }

  auto* part = c.mutable_participation();
  // LSA agents all take part by default (the SCAFFLSA setting).
  if (!part->has_client_fraction()) part->set_client_fraction(lsa_source ? 1.0 : 0.1);

  auto* local = c.mutable_local();
  auto* dp = local->mutable_dp();
  if (!dp->has_error_clip()) dp->set_error_clip(dp->clip());
  // A target epsilon calibrates z (at BuildExperiment); otherwise z = 1.
  if (!dp->has_noise_multiplier() && !(dp->target_epsilon() > 0.0)) {
    dp->set_noise_multiplier(1.0);
  }

  auto* dist = c.mutable_distributed();
  // 1 MiB, or half the message limit if that is smaller (a chunk and its
  // request header must fit in one message).
  if (!dist->has_chunk_bytes()) {
    dist->set_chunk_bytes(std::min<int64_t>(1 << 20, dist->max_message_bytes() / 2));
  }
  if (!dist->has_resource_quota_bytes()) {
    dist->set_resource_quota_bytes(
        std::max<int64_t>(int64_t{2} << 30, 2 * dist->max_message_bytes()));
  }

}

namespace {

// Robust aggregation and adversary (docs/robust.md).
absl::Status ValidateRobust(const v1::ExperimentConfig& c) {
  Checker check;
  const auto& agg = c.aggregation();
  const auto& adv = c.adversary();
  const auto& algo = c.algorithm();
  const v1::AlgorithmTraits& traits = AlgorithmTraitsOf(algo.name());
  const std::string algo_name = AlgorithmConfigName(algo.name());
  const std::string rule =
      absl::AsciiStrToLower(v1::AggregationConfig::Rule_Name(agg.rule()).substr(5));
  const std::string action = absl::AsciiStrToLower(
      v1::AggregationConfig::NormBoundAction_Name(agg.norm_bound_action()).substr(18));
  const bool robust = agg.rule() != v1::AggregationConfig::RULE_MEAN;
  const bool async = IsAsyncAlgorithm(algo.name());
  const std::int64_t n_clients = c.clients().count();
  const auto f = static_cast<std::int64_t>(agg.byzantine());
  check.Require(agg.trim_fraction() < 0.5,
               absl::StrCat("aggregation.trim_fraction = ", agg.trim_fraction(),
                            "; must be < 0.5 (trimmed_mean keeps the middle "
                            "1 - 2 beta of the values)"))
      .Require(std::isfinite(agg.max_update_norm()),
               absl::StrCat("aggregation.max_update_norm = ", agg.max_update_norm(),
                            "; must be finite"))
      .Require(!robust || traits.no_robust_rule().empty(),
               absl::StrCat("aggregation.rule = ", rule, " with algorithm.name = ", algo_name,
                            "; robust rules replace the mean of ",
                            AlgorithmsWith([](const v1::AlgorithmTraits& t) {
                              return t.no_robust_rule().empty();
                            }),
                            " only (", traits.no_robust_rule(), ")"))
      .Require(agg.byzantine() == 0 || agg.rule() == v1::AggregationConfig::RULE_KRUM ||
                   agg.rule() == v1::AggregationConfig::RULE_MULTI_KRUM ||
                   agg.rule() == v1::AggregationConfig::RULE_BULYAN,
               absl::StrCat("aggregation.byzantine = ", agg.byzantine(),
                            " with aggregation.rule = ", rule,
                            "; f is a parameter of krum, multi_krum and bulyan"))
      .Require(agg.multi_krum_m() == 0 ||
                   agg.rule() == v1::AggregationConfig::RULE_MULTI_KRUM,
               absl::StrCat("aggregation.multi_krum_m = ", agg.multi_krum_m(),
                            " with aggregation.rule = ", rule,
                            "; m is a parameter of multi_krum"))
      .Require(agg.max_update_norm() == 0.0 ||
                   agg.norm_bound_action() == v1::AggregationConfig::NORM_BOUND_ACTION_REJECT ||
                   !traits.control_variates(),
               absl::StrCat("aggregation.norm_bound_action = ", action,
                            " with algorithm.name = ", algo_name,
                            "; changing an update would leave its control-variate "
                            "delta inconsistent (use reject)"));
  // The cohort: uniform participation selects max(round(C N), 1) clients a
  // round; other models may select up to N.
  const bool uniform =
      c.participation().model() == v1::ParticipationConfig::MODEL_UNIFORM;
  std::int64_t cohort =
      uniform ? std::max<std::int64_t>(
                    1, static_cast<std::int64_t>(std::floor(
                           c.participation().client_fraction() *
                               static_cast<double>(n_clients) + 0.5)))
              : n_clients;
  std::string cohort_text =
      uniform ? absl::StrCat("the cohort round(participation.client_fraction N) = ", cohort)
              : absl::StrCat("clients.count = ", cohort);
  // Dropped stragglers (keep_stragglers: false) never return a result.
  const double s = c.clients().straggler_fraction();
  if (s > 0.0 && !algo.keep_stragglers()) {
    cohort = static_cast<std::int64_t>(
        std::floor(static_cast<double>(cohort) * (1.0 - s) + 0.5));
    absl::StrAppend(&cohort_text, " less its dropped stragglers = ", cohort);
  }
  const auto need = [&](std::int64_t k) {
    return absl::StrCat("aggregation.rule = ", rule, " with aggregation.byzantine = ", f,
                        " needs at least ", k, " results a round, more than ",
                        cohort_text);
  };
  // Clients named by the data files with clients.count unset: N is known
  // when the files are read; the aggregator checks each round's results.
  const bool count_known = c.clients().has_count();
  switch (count_known ? agg.rule() : v1::AggregationConfig::RULE_MEAN) {
    case v1::AggregationConfig::RULE_KRUM:
      check.Require(cohort >= 2 * f + 3, need(2 * f + 3) + " (n >= 2f + 3)");
      break;
    case v1::AggregationConfig::RULE_MULTI_KRUM:
      check.Require(cohort >= 2 * f + 3, need(2 * f + 3) + " (n >= 2f + 3)")
          .Require(agg.multi_krum_m() <= cohort - f,
                   absl::StrCat("aggregation.multi_krum_m = ", agg.multi_krum_m(),
                                "; must be <= n - f = ", cohort - f, " for ",
                                cohort_text, " and aggregation.byzantine = ", f));
      break;
    case v1::AggregationConfig::RULE_BULYAN:
      check.Require(cohort >= 4 * f + 3, need(4 * f + 3) + " (n >= 4f + 3)");
      break;
    default:
      break;
  }
  const bool adversary = adv.fraction() > 0.0 || adv.clients_size() > 0;
  check.Require(adv.fraction() == 0.0 || adv.clients_size() == 0,
               absl::StrCat("adversary.fraction = ", adv.fraction(),
                            " and adversary.clients both set; give one of them"))
      .Require(std::isfinite(adv.scale()),
               absl::StrCat("adversary.scale = ", adv.scale(), "; must be finite"))
      .Require(!adversary || !async,
               absl::StrCat("adversary with algorithm.name = ", algo_name,
                            "; Byzantine clients are simulated in synchronous rounds only"));
  for (int i = 0; i < adv.clients_size(); ++i) {
    check.Require(!count_known || adv.clients(i) < n_clients,
                 absl::StrCat("adversary.clients[", i, "] = ", adv.clients(i),
                              "; must be < clients.count = ", n_clients));
  }
  return check.status();
}

}  // namespace

absl::Status ValidateConfig(const v1::ExperimentConfig& c) {
  // The ranges declared in config.proto (FieldRule.min/max), then the
  // rules that involve other fields, by section.
  FEDSIM_RETURN_IF_ERROR(CheckFieldRanges(c, ""));
  Checker check;
  const auto& model = c.model();
  const bool network = model.objective() == v1::ModelConfig::OBJECTIVE_NETWORK;
  const std::string objective_name =
      absl::AsciiStrToLower(v1::ModelConfig::Objective_Name(model.objective()).substr(10));
  check.Require(network || (model.architecture().empty() && model.layers_size() == 0),
                absl::StrCat("model.objective = ", objective_name,
                             " with model.architecture or model.layers; a network's "
                             "objective is network (leave model.objective out)"))
      .Require(!network || !model.architecture().empty() || model.layers_size() > 0,
               "model.objective = network needs model.architecture (a preset) or "
               "model.layers")
      .Require(model.architecture().empty() || model.layers_size() == 0,
               absl::StrCat("model.architecture = ", model.architecture(),
                            " with model.layers; give one of them"))
      .Require(model.input_shape_size() == 0 || model.layers_size() > 0,
               "model.input_shape without model.layers; a preset has its own input shape")
      .Require(model.input_shape_size() == 0 || model.input_shape_size() == 1 ||
                   model.input_shape_size() == 3,
               absl::StrCat("model.input_shape has ", model.input_shape_size(),
                            " values; need [C, H, W] or [F]"))
      .Require(!model.has_dropout() || model.dropout() == 0.0 || !model.architecture().empty(),
               "model.dropout without model.architecture; in model.layers, set p on "
               "each dropout layer")
      .Require(model.init_file().empty() || network,
               absl::StrCat("model.init_file with model.objective = ", objective_name,
                            "; init_file starts a network (model.architecture or "
                            "model.layers)"))
      .Require(!network || c.data().source() != v1::DataConfig::SOURCE_LSA,
               "model.objective = network with data.source = lsa; LSA has no network");
  const auto& data = c.data();
  const auto& clients = c.clients();
  const bool file_source = data.source() == v1::DataConfig::SOURCE_CSV ||
                           data.source() == v1::DataConfig::SOURCE_LIBSVM;
  const bool idx_source = data.source() == v1::DataConfig::SOURCE_IDX ||
                          data.source() == v1::DataConfig::SOURCE_FASHION_MNIST;
  const bool lsa_source = data.source() == v1::DataConfig::SOURCE_LSA;
  const bool lsa_algorithm =
      AlgorithmTraitsOf(c.algorithm().name()).family() == v1::AlgorithmTraits::FAMILY_LSA;
  const auto& lsa = c.lsa();
  const auto& part = c.participation();
  const bool clients_in_files = data.source() == v1::DataConfig::SOURCE_NPZ ||
                                data.source() == v1::DataConfig::SOURCE_NPY ||
                                data.source() == v1::DataConfig::SOURCE_LEAF;
  const bool natural_ok =
      data.source() == v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC ||
      data.source() == v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES || lsa_source ||
      clients_in_files;
  const bool natural_files =
      clients_in_files && clients.partition() == v1::ClientsConfig::PARTITION_NATURAL;
  const bool path_source = data.source() == v1::DataConfig::SOURCE_NPZ ||
                           data.source() == v1::DataConfig::SOURCE_NPY ||
                           data.source() == v1::DataConfig::SOURCE_CIFAR10 ||
                           data.source() == v1::DataConfig::SOURCE_CIFAR100 ||
                           data.source() == v1::DataConfig::SOURCE_LEAF;
  const std::string source_name =
      absl::AsciiStrToLower(v1::DataConfig::Source_Name(data.source()).substr(7));
  check.Require(!path_source || !data.path().empty(),
                absl::StrCat("data.path is empty; data.source = ", source_name,
                             data.source() == v1::DataConfig::SOURCE_NPZ
                                 ? " needs the .npz file"
                                 : " needs the folder of its files"))
      .Require(!data.has_cifar100_labels() ||
                   data.source() == v1::DataConfig::SOURCE_CIFAR100,
               absl::StrCat("data.cifar100_labels with data.source = ", source_name,
                            "; it picks CIFAR-100's labels (data.source: cifar100)"))
      .Require(!data.has_image_layout() ||
                   data.source() == v1::DataConfig::SOURCE_NPZ ||
                   data.source() == v1::DataConfig::SOURCE_NPY,
               absl::StrCat("data.image_layout with data.source = ", source_name,
                            "; it describes npz and npy image arrays"))
      .Require((clients.min_samples() == 0 && clients.max_samples() == 0) || natural_files,
               absl::StrCat("clients.min_samples / max_samples with data.source = ",
                            source_name, " and clients.partition = ",
                            absl::AsciiStrToLower(v1::ClientsConfig::Partition_Name(
                                                      clients.partition())
                                                      .substr(10)),
                            "; they filter the clients the files name (npz, npy, leaf with "
                            "partition natural)"))
      .Require(clients.max_samples() == 0 || clients.max_samples() >= clients.min_samples(),
               absl::StrCat("clients.max_samples = ", clients.max_samples(),
                            " < clients.min_samples = ", clients.min_samples(),
                            "; no client could be kept"));
  check.Require(lsa_source == lsa_algorithm,
                lsa_source ? "data.source = lsa needs algorithm.name = fedlsa or scafflsa"
                           : "algorithm.name = fedlsa or scafflsa needs data.source = lsa")
      .Require(!lsa_algorithm || c.local().max_steps() >= 1 ||
                   c.algorithm().communication_probability() > 0.0,
               "local.max_steps = 0; FedLSA and SCAFFLSA need H = local.max_steps >= 1 "
               "local steps (or algorithm.communication_probability > 0)")
      // SCAFFLSA with partial participation (client_fraction < 1 or a
      // participation model other than uniform) is fedsim's EXTENSION, not
      // the paper's algorithm: docs/lsa.md, "Extension: partial
      // participation".
      .Le("lsa.branching", lsa.branching(), lsa.states())
      .Require(!lsa_source || lsa.problem() != v1::LsaConfig::PROBLEM_TD ||
                   lsa.mdps_size() == c.clients().count(),
               absl::StrCat("clients.count = ", c.clients().count(), " but lsa.mdps lists ",
                            lsa.mdps_size(), " MDPs; one per agent"))
      .Require(!lsa_source || lsa.problem() != v1::LsaConfig::PROBLEM_LINEAR ||
                   lsa.systems_size() == c.clients().count(),
               absl::StrCat("clients.count = ", c.clients().count(),
                            " but lsa.systems lists ", lsa.systems_size(),
                            " systems; one per agent"));
  const auto& dp = c.local().dp();
  const bool dp_on = dp.mode() != v1::DpConfig::MODE_NONE;
  const std::string dp_mode =
      absl::AsciiStrToLower(v1::DpConfig::Mode_Name(dp.mode()).substr(5));
  check.Require(!(dp.target_epsilon() > 0.0 && dp.has_noise_multiplier()),
               absl::StrCat("local.dp.target_epsilon = ", dp.target_epsilon(),
                            " with local.dp.noise_multiplier = ",
                            dp.noise_multiplier(),
                            "; set one of them (a target calibrates the noise)"))
      .Require(!dp_on || !lsa_source,
               absl::StrCat("local.dp.mode = ", dp_mode,
                            " with data.source = lsa; DP-SGD needs a model "
                            "trained by local SGD"))
      .Require(!dp_on || c.model().l2() == 0.0,
               absl::StrCat("model.l2 = ", c.model().l2(), " with local.dp.mode = ",
                            dp_mode, "; DP local training does not support the "
                            "L2 term (set model.l2: 0)"));
  // Baselines (docs/baselines.md): FedProx, SCAFFOLD, server optimisers,
  // stragglers.
  const auto& algo = c.algorithm();
  const auto& opt = algo.server_optimizer();
  const std::string algo_name = AlgorithmConfigName(algo.name());
  const v1::AlgorithmTraits& traits = AlgorithmTraitsOf(algo.name());
  {
    const auto& local = c.local();
    const std::string schedule = absl::AsciiStrToLower(
        v1::LocalConfig::LrSchedule_Name(local.lr_schedule()).substr(12));
    check.Require(local.lr_schedule() == v1::LocalConfig::LR_SCHEDULE_CONSTANT ||
                      traits.family() == v1::AlgorithmTraits::FAMILY_ROUNDS,
                  absl::StrCat("local.lr_schedule = ", schedule, " with algorithm.name = ",
                               algo_name, "; a schedule applies to the synchronous rounds "
                               "of local SGD (not LSA, not the asynchronous algorithms)"))
        .Require(local.lr_schedule() != v1::LocalConfig::LR_SCHEDULE_COSINE ||
                     local.lr_min() < local.lr(),
                 absl::StrCat("local.lr_min = ", local.lr_min(), " with local.lr = ", local.lr(),
                              "; cosine annealing needs lr_min < lr"))
        .Require(!local.has_lr_min() || local.lr_min() == 0.0 ||
                     local.lr_schedule() == v1::LocalConfig::LR_SCHEDULE_COSINE,
                 absl::StrCat("local.lr_min = ", local.lr_min(), " with local.lr_schedule = ",
                              schedule, "; lr_min belongs to the cosine schedule"));
    const bool step = local.lr_schedule() == v1::LocalConfig::LR_SCHEDULE_STEP;
    // The last round's rate must stay a positive number (gamma^k underflows).
    const double last_step_lr =
        local.lr() * std::pow(local.lr_gamma(),
                              static_cast<double>(std::max<std::int64_t>(c.rounds() - 1, 0) /
                                                  local.lr_step_rounds()));
    check.Require(step || (!local.has_lr_gamma() && !local.has_lr_step_rounds()) ||
                      (local.lr_gamma() == 0.1 && local.lr_step_rounds() == 100),
                  absl::StrCat("local.lr_gamma or local.lr_step_rounds with local.lr_schedule = ",
                               schedule, "; they belong to the step schedule"))
        .Require(!step || last_step_lr > 0.0,
                 absl::StrCat("local.lr_schedule = step: lr ", local.lr(), " x lr_gamma ",
                              local.lr_gamma(), "^", (c.rounds() - 1) / local.lr_step_rounds(),
                              " underflows to 0 by the last round; raise lr_gamma or "
                              "lr_step_rounds"));
  }
  const double stragglers = clients.straggler_fraction();
  const bool keeps_partial_work = algo.keep_stragglers() && stragglers > 0.0;
  check.Require(opt.kind() == v1::ServerOptimizerConfig::KIND_SGD || traits.server_optimizer(),
                absl::StrCat("algorithm.server_optimizer.kind = ",
                             absl::AsciiStrToLower(
                                 v1::ServerOptimizerConfig::Kind_Name(opt.kind()).substr(5)),
                             " with algorithm.name = ", algo_name,
                             "; server optimisers compose with ",
                             AlgorithmsWith([](const v1::AlgorithmTraits& t) {
                               return t.server_optimizer();
                             })))
      .Require(algo.prox_mu() == 0.0 || traits.prox_term(),
               absl::StrCat("algorithm.prox_mu = ", algo.prox_mu(),
                            " with algorithm.name = ", algo_name,
                            "; the proximal term belongs to ",
                            AlgorithmsWith([](const v1::AlgorithmTraits& t) {
                              return t.prox_term();
                            })))
      .Require(traits.no_local_dp().empty() ||
                   c.local().dp().mode() == v1::DpConfig::MODE_NONE,
               absl::StrCat("local.dp.mode is not none with algorithm.name = ",
                            algo_name, "; DP local training does not support ",
                            traits.no_local_dp()))
      .Require(stragglers == 0.0 || !lsa_source,
               absl::StrCat("clients.straggler_fraction = ", stragglers,
                            " with data.source = lsa; stragglers are for "
                            "local SGD algorithms"))
      .Require(stragglers == 0.0 || traits.stragglers(),
               absl::StrCat("clients.straggler_fraction = ", stragglers,
                            " with algorithm.name = ", algo_name,
                            "; stragglers are simulated for ",
                            AlgorithmsWith([](const v1::AlgorithmTraits& t) {
                              return t.stragglers();
                            }),
                            " only"))
      .Require(!keeps_partial_work ||
                   (c.local().max_steps() > 0 ? c.local().max_steps() >= 2
                                              : c.local().epochs() >= 2),
               absl::StrCat("clients.straggler_fraction = ", stragglers,
                            " with algorithm.keep_stragglers = true and ",
                            c.local().max_steps() > 0
                                ? absl::StrCat("local.max_steps = ", c.local().max_steps())
                                : absl::StrCat("local.epochs = ", c.local().epochs()),
                            "; a kept straggler does 1 to E - 1 epochs (1 to "
                            "I - 1 steps), so E (or I) must be >= 2"));
  check.Require(!idx_source || !data.path().empty(),
               "data.path is empty; an IDX source needs the directory of its files")
      .Require(!file_source || !data.train_file().empty(),
               "data.train_file is empty; CSV and LIBSVM sources need it")
      .Require(!file_source || !data.test_file().empty(),
               "data.test_file is empty; CSV and LIBSVM sources need it")
      .Require(clients.partition() != v1::ClientsConfig::PARTITION_NATURAL ||
                   natural_ok,
               "clients.partition = natural; only synthetic sources, npz/npy "
               "(client_train) and leaf have a natural split (use iid, dirichlet or shards)")
      .Require(data.source() != v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC ||
                   clients.partition() == v1::ClientsConfig::PARTITION_NATURAL,
               "clients.partition must be natural for data.source = "
               "fedprox_synthetic (its devices are the clients)")
      .Require(part.model() != v1::ParticipationConfig::MODEL_TRACE ||
                   !part.trace_file().empty(),
               "participation.trace_file is empty; participation.model = trace "
               "needs the file listing each round's clients")
      .Require(part.probabilities() != v1::ParticipationConfig::PROBABILITIES_LIST ||
                   !clients.has_count() || part.p_size() == clients.count(),
               absl::StrCat("participation.p lists ", part.p_size(),
                            " probabilities; participation.probabilities = list "
                            "needs one per client (clients.count = ",
                            clients.count(), ")"))
      .Require(part.join_rounds().empty() || !clients.has_count() ||
                   part.join_rounds_size() == clients.count(),
               absl::StrCat("participation.join_rounds lists ", part.join_rounds_size(),
                            " rounds; it needs none or one per client (clients.count = ",
                            clients.count(), ")"));
  const bool async_algorithm = IsAsyncAlgorithm(c.algorithm().name());
  const auto& async = c.async();
  const auto& net = async.network_delay();
  check.Require(!c.local().fresh_batches() ||
                   (c.local().max_steps() >= 1 && c.local().batch_size() >= 1),
               absl::StrCat("local.fresh_batches = true with local.max_steps = ",
                            c.local().max_steps(), " and local.batch_size = ",
                            c.local().batch_size(),
                            "; fresh batches need max_steps >= 1 and batch_size >= 1"))
      .Require(!dp_on || (c.local().momentum() == 0.0 && !c.local().fresh_batches() &&
                          c.local().grad_clip_norm() == 0.0),
               absl::StrCat("local.dp.mode = ", dp_mode, " with local.momentum, "
                            "local.fresh_batches or local.grad_clip_norm set; DP "
                            "local training supports none of them"))
      .Require(!async_algorithm || !dp_on,
               absl::StrCat("local.dp.mode = ", dp_mode, " with algorithm.name = ",
                            algo_name, "; asynchronous algorithms do not support DP"))
      .Require(!async_algorithm ||
                   part.model() == v1::ParticipationConfig::MODEL_UNIFORM,
               absl::StrCat("participation.model is not uniform with algorithm.name = ",
                            algo_name, "; asynchronous algorithms keep every client "
                            "working (their speeds are set in the async section)"))
      .Require(c.algorithm().name() != v1::AlgorithmConfig::NAME_FEDBUFF ||
                   !clients.has_count() || c.algorithm().buffer_size() <= clients.count(),
               absl::StrCat("algorithm.buffer_size = ", c.algorithm().buffer_size(),
                            "; must be <= clients.count = ", clients.count()))
      .Require(!c.algorithm().staleness_scaling() ||
                   c.algorithm().name() == v1::AlgorithmConfig::NAME_FEDBUFF,
               absl::StrCat("algorithm.staleness_scaling = true with algorithm.name = ",
                            algo_name, "; it is a FedBuff option"))
      .Require(async.fx_percent() < 100.0,
               absl::StrCat("async.fx_percent = ", async.fx_percent(),
                            "; must be < 100 (the fastest client needs 1 - X/100 > 0)"))
      .Require(async.compute_time() != v1::AsyncConfig::COMPUTE_TIME_TRACE ||
                   !async.trace_file().empty(),
               "async.trace_file is empty; async.compute_time = trace needs the "
               "file of per-task times")
      .Require(net.kind() == v1::TimeDistribution::KIND_NONE || net.mean() > 0.0,
               absl::StrCat("async.network_delay.mean = ", net.mean(),
                            "; must be > 0"));
  // On the wall clock task times are real: the virtual clock's time models
  // do not apply (docs/async.md, "The wall clock").
  if (async.clock() == v1::AsyncConfig::CLOCK_WALL) {
    std::string modelled;
    if (async.compute_time() != v1::AsyncConfig::COMPUTE_TIME_FX) {
      modelled = absl::StrCat("async.compute_time = ",
                              v1::AsyncConfig::ComputeTime_Name(async.compute_time()));
    } else if (async.fx_percent() != 0.0) {
      modelled = absl::StrCat("async.fx_percent = ", async.fx_percent());
    } else if (net.kind() != v1::TimeDistribution::KIND_NONE) {
      modelled = absl::StrCat("async.network_delay.kind = ",
                              v1::TimeDistribution::Kind_Name(net.kind()));
    }
    check.Require(modelled.empty(),
                  absl::StrCat(modelled, " with async.clock = wall; the wall clock "
                               "measures real task times (set worker speeds with "
                               "distributed.worker_slowdown)"));
  }
  // Window, horizon and eval interval must be whole ticks >= 1.
  const double tpu = static_cast<double>(async.ticks_per_unit());
  check.Require(!async_algorithm ||
                    c.algorithm().window() * tpu >= 1.0,
                absl::StrCat("algorithm.window = ", c.algorithm().window(),
                             "; must be at least one tick (1 / async.ticks_per_unit)"));
  check.Le("distributed.chunk_bytes", c.distributed().chunk_bytes(),
          c.distributed().max_message_bytes() / 2)
      .Ge("distributed.max_upload_buffer_bytes",
          c.distributed().max_upload_buffer_bytes(),
          c.distributed().max_message_bytes())
      .Ge("distributed.resource_quota_bytes", c.distributed().resource_quota_bytes(),
          2 * c.distributed().max_message_bytes());
  FEDSIM_RETURN_IF_ERROR(check.status());
  return ValidateRobust(c);
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigText(absl::string_view yaml,
                                                    const std::vector<std::string>& overrides) {
  FEDSIM_ASSIGN_OR_RETURN(v1::ExperimentConfig config, ParseConfigYaml(yaml, overrides));
  ApplyDefaults(config);
  FEDSIM_RETURN_IF_ERROR(ValidateConfig(config));
  return config;
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigText(absl::string_view yaml) {
  return LoadConfigText(yaml, {});
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigFile(const std::string& path,
                                                    const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("config: cannot open '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto config = LoadConfigText(buffer.str(), overrides);
  if (!config.ok()) return AnnotateStatus(config.status(), path);
  return config;
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigFile(const std::string& path) {
  return LoadConfigFile(path, {});
}

std::string ConfigToJson(const v1::ExperimentConfig& config) {
  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Printing a well-formed message cannot fail.
  (void)pb::util::MessageToJsonString(config, &out, options);
  return out;
}

namespace {

std::string TypeText(const pb::FieldDescriptor* f) {
  std::string t;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      t = "integer";
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      t = "number";
      break;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      t = "bool";
      break;
    case pb::FieldDescriptor::CPPTYPE_STRING:
      t = "text";
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = f->enum_type();
      const std::string prefix = EnumPrefix(e);
      std::vector<std::string> names;
      for (int i = 0; i < e->value_count(); ++i) {
        if (e->value(i)->number() == 0) continue;
        std::string n = e->value(i)->name();
        if (n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
        names.push_back(absl::AsciiStrToLower(n));
      }
      t = absl::StrJoin(names, " \\| ");
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return f->is_repeated() ? absl::StrCat("list of ", t) : t;
}

std::string RangeText(const pb::FieldDescriptor* f) {
  const v1::FieldRule& rule = RuleOf(f);
  if (rule.has_min() && rule.has_max()) {
    return absl::StrCat("in ", rule.min_exclusive() ? "(" : "[", BoundText(f, rule.min()), ", ",
                        BoundText(f, rule.max()), rule.max_exclusive() ? ")" : "]");
  }
  if (rule.has_min()) {
    return absl::StrCat(rule.min_exclusive() ? "> " : ">= ", BoundText(f, rule.min()));
  }
  if (rule.has_max()) {
    return absl::StrCat(rule.max_exclusive() ? "< " : "<= ", BoundText(f, rule.max()));
  }
  return "";
}

void FieldRows(const pb::Descriptor* d, const std::string& path, std::string& out) {
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    std::string key = JoinPath(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      FieldRows(f->message_type(), f->is_repeated() ? key + "[]" : key, out);
      continue;
    }
    const v1::FieldRule& rule = RuleOf(f);
    const std::string def = !rule.default_rule().empty() ? rule.default_rule()
                            : !rule.default_().empty()   ? absl::StrCat("`", rule.default_(), "`")
                                                         : "";
    absl::StrAppend(&out, "| `", key, "` | ", TypeText(f), " | ", def, " | ", RangeText(f),
                    " |\n");
  }
}

}  // namespace

std::string ConfigFieldTable() {
  std::string out = "| key | type | default | range |\n| --- | --- | --- | --- |\n";
  FieldRows(v1::ExperimentConfig::descriptor(), "", out);
  return out;
}

}  // namespace fedsim
