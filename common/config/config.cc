#include "common/config/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

absl::StatusOr<v1::ExperimentConfig> ParseConfigYaml(absl::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
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
  if (!c.has_seed()) c.set_seed(1);
  const bool rounds_given = c.has_rounds();
  if (!c.has_rounds()) c.set_rounds(100);

  auto* data = c.mutable_data();
  if (data->source() == v1::DataConfig::SOURCE_UNSPECIFIED) {
    data->set_source(v1::DataConfig::SOURCE_FASHION_MNIST);
  }
  if (data->source() == v1::DataConfig::SOURCE_FASHION_MNIST &&
      data->path().empty()) {
    data->set_path("third_party/data/fashion-mnist");
  }
  if (!data->has_label_column()) data->set_label_column(-1);
  if (!data->has_has_header()) data->set_has_header(false);
  if (!data->has_num_features()) data->set_num_features(0);
  if (!data->has_classification()) data->set_classification(true);
  auto* ls = data->mutable_least_squares();
  if (!ls->has_examples_per_client()) ls->set_examples_per_client(50);
  if (!ls->has_dim()) ls->set_dim(5);
  if (!ls->has_noise_std()) ls->set_noise_std(0.1);
  if (!ls->has_heterogeneity()) ls->set_heterogeneity(0.0);
  if (!ls->has_test_examples()) ls->set_test_examples(500);
  auto* fp = data->mutable_fedprox_synthetic();
  if (!fp->has_alpha()) fp->set_alpha(1.0);
  if (!fp->has_beta()) fp->set_beta(1.0);
  if (!fp->has_iid()) fp->set_iid(false);

  auto* lsa = c.mutable_lsa();
  if (lsa->problem() == v1::LsaConfig::PROBLEM_UNSPECIFIED) {
    lsa->set_problem(v1::LsaConfig::PROBLEM_GARNET);
  }
  if (lsa->oracle() == v1::LsaConfig::ORACLE_UNSPECIFIED) {
    lsa->set_oracle(v1::LsaConfig::ORACLE_IID);
  }
  if (!lsa->has_states()) lsa->set_states(30);
  if (!lsa->has_actions()) lsa->set_actions(2);
  if (!lsa->has_branching()) lsa->set_branching(2);
  if (!lsa->has_features()) lsa->set_features(8);
  if (!lsa->has_gamma()) lsa->set_gamma(0.95);
  if (!lsa->has_kernel_heterogeneity()) lsa->set_kernel_heterogeneity(0.02);
  if (!lsa->has_reward_heterogeneity()) lsa->set_reward_heterogeneity(0.02);
  if (!lsa->has_environment_seed()) lsa->set_environment_seed(42);
  if (!lsa->has_noise_std()) lsa->set_noise_std(0.1);
  if (!lsa->has_theta0_offset()) lsa->set_theta0_offset(1.0);
  for (auto& mdp : *lsa->mutable_mdps()) {
    if (!mdp.has_gamma()) mdp.set_gamma(0.95);
  }
  const bool lsa_source = data->source() == v1::DataConfig::SOURCE_LSA;

  const bool natural_source =
      data->source() == v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC || lsa_source;
  auto* clients = c.mutable_clients();
  if (!clients->has_count()) {
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
  if (!clients->has_dirichlet_alpha()) clients->set_dirichlet_alpha(0.5);
  if (!clients->has_shards_per_client()) clients->set_shards_per_client(2);
  if (!clients->has_straggler_fraction()) clients->set_straggler_fraction(0.0);

  auto* model = c.mutable_model();
  if (model->objective() == v1::ModelConfig::OBJECTIVE_UNSPECIFIED) {
    model->set_objective(
        data->source() == v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES
            ? v1::ModelConfig::OBJECTIVE_LEAST_SQUARES
            : v1::ModelConfig::OBJECTIVE_SOFTMAX);
  }
  if (!model->has_hidden_units()) model->set_hidden_units(64);
  if (!model->has_l2()) model->set_l2(0.0);

  auto* algo = c.mutable_algorithm();
  if (algo->name() == v1::AlgorithmConfig::NAME_UNSPECIFIED) {
    algo->set_name(lsa_source ? v1::AlgorithmConfig::NAME_FEDLSA
                              : v1::AlgorithmConfig::NAME_FEDAVG);
  }
  if (!algo->has_communication_probability()) algo->set_communication_probability(0.0);
  if (!algo->has_server_lr()) algo->set_server_lr(1.0);
  if (!algo->has_fedau_cutoff()) algo->set_fedau_cutoff(0);
  if (!algo->has_fedau_count_from_join()) algo->set_fedau_count_from_join(true);
  auto* opt = algo->mutable_server_optimizer();
  if (opt->kind() == v1::ServerOptimizerConfig::KIND_UNSPECIFIED) {
    opt->set_kind(v1::ServerOptimizerConfig::KIND_SGD);
  }
  if (!opt->has_momentum()) opt->set_momentum(0.9);
  if (!opt->has_beta1()) opt->set_beta1(0.9);
  if (!opt->has_beta2()) opt->set_beta2(0.99);
  if (!opt->has_tau()) opt->set_tau(1e-3);
  if (!algo->has_prox_mu()) algo->set_prox_mu(0.0);
  if (algo->scaffold_option() == v1::AlgorithmConfig::SCAFFOLD_OPTION_UNSPECIFIED) {
    algo->set_scaffold_option(v1::AlgorithmConfig::SCAFFOLD_OPTION_II);
  }
  if (!algo->has_keep_stragglers()) {
    algo->set_keep_stragglers(algo->name() == v1::AlgorithmConfig::NAME_FEDPROX);
  }
  if (algo->async_weights() == v1::AlgorithmConfig::ASYNC_WEIGHTS_UNSPECIFIED) {
    algo->set_async_weights(v1::AlgorithmConfig::ASYNC_WEIGHTS_WEIGHT);
  }
  if (algo->importance() == v1::AlgorithmConfig::IMPORTANCE_UNSPECIFIED) {
    algo->set_importance(v1::AlgorithmConfig::IMPORTANCE_UNIFORM);
  }
  if (!algo->has_window()) algo->set_window(0.5);
  if (!algo->has_buffer_size()) algo->set_buffer_size(5);
  if (!algo->has_staleness_scaling()) algo->set_staleness_scaling(false);

  auto* async = c.mutable_async();
  if (!async->has_horizon()) async->set_horizon(0.0);
  if (async->compute_time() == v1::AsyncConfig::COMPUTE_TIME_UNSPECIFIED) {
    async->set_compute_time(v1::AsyncConfig::COMPUTE_TIME_FX);
  }
  if (!async->has_fx_percent()) async->set_fx_percent(0.0);
  if (!async->has_log_normal_sigma()) async->set_log_normal_sigma(0.5);
  auto* net = async->mutable_network_delay();
  if (net->kind() == v1::TimeDistribution::KIND_UNSPECIFIED) {
    net->set_kind(v1::TimeDistribution::KIND_NONE);
  }
  if (!net->has_mean()) net->set_mean(0.1);
  if (!net->has_sigma()) net->set_sigma(0.5);
  if (!async->has_eval_interval()) async->set_eval_interval(0.0);
  if (!async->has_max_staleness()) async->set_max_staleness(0);
  if (async->clock() == v1::AsyncConfig::CLOCK_UNSPECIFIED) {
    async->set_clock(v1::AsyncConfig::CLOCK_VIRTUAL);
  }
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
  if (part->model() == v1::ParticipationConfig::MODEL_UNSPECIFIED) {
    part->set_model(v1::ParticipationConfig::MODEL_UNIFORM);
  }
  // LSA agents all take part by default (the SCAFFLSA setting).
  if (!part->has_client_fraction()) part->set_client_fraction(lsa_source ? 1.0 : 0.1);
  if (part->probabilities() == v1::ParticipationConfig::PROBABILITIES_UNSPECIFIED) {
    part->set_probabilities(v1::ParticipationConfig::PROBABILITIES_CONSTANT);
  }
  if (!part->has_p_mean()) part->set_p_mean(0.1);
  if (!part->has_p_min()) part->set_p_min(0.02);
  if (!part->has_label_alpha()) part->set_label_alpha(0.1);
  if (!part->has_markov_a()) part->set_markov_a(0.05);
  if (!part->has_cycle_period()) part->set_cycle_period(100);

  auto* local = c.mutable_local();
  if (!local->has_epochs()) local->set_epochs(1);
  if (!local->has_batch_size()) local->set_batch_size(32);
  if (!local->has_lr()) local->set_lr(0.05);
  if (!local->has_max_steps()) local->set_max_steps(0);
  if (!local->has_momentum()) local->set_momentum(0.0);
  if (!local->has_fresh_batches()) local->set_fresh_batches(false);
  if (!local->has_grad_clip_norm()) local->set_grad_clip_norm(0.0);
  auto* dp = local->mutable_dp();
  if (dp->mode() == v1::DpConfig::MODE_UNSPECIFIED) dp->set_mode(v1::DpConfig::MODE_NONE);
  if (!dp->has_clip()) dp->set_clip(1.0);
  if (!dp->has_error_clip()) dp->set_error_clip(dp->clip());
  if (!dp->has_target_epsilon()) dp->set_target_epsilon(0.0);
  // A target epsilon calibrates z (at BuildExperiment); otherwise z = 1.
  if (!dp->has_noise_multiplier() && !(dp->target_epsilon() > 0.0)) {
    dp->set_noise_multiplier(1.0);
  }
  if (!dp->has_delta()) dp->set_delta(1e-5);
  if (!dp->has_epsilon_budget()) dp->set_epsilon_budget(0.0);
  if (dp->conversion() == v1::DpConfig::CONVERSION_UNSPECIFIED) {
    dp->set_conversion(v1::DpConfig::CONVERSION_TIGHT);
  }
  if (!dp->has_max_order()) dp->set_max_order(256);
  if (!dp->has_fractional_orders()) dp->set_fractional_orders(true);

  auto* eval = c.mutable_eval();
  if (!eval->has_every()) eval->set_every(1);
  if (!eval->has_train_loss()) eval->set_train_loss(true);

  auto* runtime = c.mutable_runtime();
  if (!runtime->has_threads()) runtime->set_threads(1);

  auto* logging = c.mutable_logging();
  if (!logging->has_tensorboard()) logging->set_tensorboard(false);

  auto* dist = c.mutable_distributed();
  if (!dist->has_round_deadline_s()) dist->set_round_deadline_s(600.0);
  if (!dist->has_min_workers()) dist->set_min_workers(1);
  if (!dist->has_start_timeout_s()) dist->set_start_timeout_s(120.0);
  if (!dist->has_long_poll_s()) dist->set_long_poll_s(10.0);
  if (!dist->has_max_message_bytes()) dist->set_max_message_bytes(64 << 20);
  if (!dist->has_min_quorum()) dist->set_min_quorum(1);
  if (!dist->has_heartbeat_interval_s()) dist->set_heartbeat_interval_s(30.0);
  if (!dist->has_heartbeat_patience()) dist->set_heartbeat_patience(2);
  // 1 MiB, or half the message limit if that is smaller (a chunk and its
  // request header must fit in one message).
  if (!dist->has_chunk_bytes()) {
    dist->set_chunk_bytes(std::min<int64_t>(1 << 20, dist->max_message_bytes() / 2));
  }
  if (!dist->has_max_workers()) dist->set_max_workers(1000);
  if (!dist->has_max_inflight_per_worker()) dist->set_max_inflight_per_worker(16);
  if (!dist->has_max_upload_buffer_bytes()) {
    dist->set_max_upload_buffer_bytes(int64_t{1} << 30);
  }
  if (!dist->has_max_concurrent_streams()) dist->set_max_concurrent_streams(100);
  if (!dist->has_rejection_events_per_minute()) dist->set_rejection_events_per_minute(100);
  if (!dist->has_resource_quota_bytes()) {
    dist->set_resource_quota_bytes(
        std::max<int64_t>(int64_t{2} << 30, 2 * dist->max_message_bytes()));
  }

  auto* ckpt = c.mutable_checkpoint();
  if (!ckpt->has_every()) ckpt->set_every(1);
  if (!ckpt->has_keep()) ckpt->set_keep(3);
  if (!ckpt->has_min_interval_s()) {
    const bool slow_to_save = IsAsyncAlgorithm(c.algorithm().name()) ||
                              AlgorithmTraitsOf(c.algorithm().name()).server_memory();
    ckpt->set_min_interval_s(slow_to_save ? 1.0 : 0.0);
  }

  auto* agg = c.mutable_aggregation();
  if (agg->rule() == v1::AggregationConfig::RULE_UNSPECIFIED) {
    agg->set_rule(v1::AggregationConfig::RULE_MEAN);
  }
  if (!agg->has_trim_fraction()) agg->set_trim_fraction(0.1);
  if (!agg->has_byzantine()) agg->set_byzantine(0);
  if (!agg->has_multi_krum_m()) agg->set_multi_krum_m(0);
  if (!agg->has_max_update_norm()) agg->set_max_update_norm(0.0);
  if (agg->norm_bound_action() == v1::AggregationConfig::NORM_BOUND_ACTION_UNSPECIFIED) {
    agg->set_norm_bound_action(v1::AggregationConfig::NORM_BOUND_ACTION_REJECT);
  }
  auto* adv = c.mutable_adversary();
  if (!adv->has_fraction()) adv->set_fraction(0.0);
  if (adv->attack() == v1::AdversaryConfig::ATTACK_UNSPECIFIED) {
    adv->set_attack(v1::AdversaryConfig::ATTACK_SIGN_FLIP);
  }
  if (!adv->has_scale()) adv->set_scale(100.0);
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
  check.Ge("aggregation.trim_fraction", agg.trim_fraction(), 0.0)
      .Require(agg.trim_fraction() < 0.5,
               absl::StrCat("aggregation.trim_fraction = ", agg.trim_fraction(),
                            "; must be < 0.5 (trimmed_mean keeps the middle "
                            "1 - 2 beta of the values)"))
      .Ge("aggregation.byzantine", agg.byzantine(), 0)
      .Ge("aggregation.multi_krum_m", agg.multi_krum_m(), 0)
      .Ge("aggregation.max_update_norm", agg.max_update_norm(), 0.0)
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
  switch (agg.rule()) {
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
  check.Ge("adversary.fraction", adv.fraction(), 0.0)
      .Le("adversary.fraction", adv.fraction(), 1.0)
      .Require(adv.fraction() == 0.0 || adv.clients_size() == 0,
               absl::StrCat("adversary.fraction = ", adv.fraction(),
                            " and adversary.clients both set; give one of them"))
      .Require(std::isfinite(adv.scale()),
               absl::StrCat("adversary.scale = ", adv.scale(), "; must be finite"))
      .Require(!adversary || !async,
               absl::StrCat("adversary with algorithm.name = ", algo_name,
                            "; Byzantine clients are simulated in synchronous rounds only"));
  for (int i = 0; i < adv.clients_size(); ++i) {
    check.Ge(absl::StrCat("adversary.clients[", i, "]"), adv.clients(i), int64_t{0})
        .Require(adv.clients(i) < n_clients,
                 absl::StrCat("adversary.clients[", i, "] = ", adv.clients(i),
                              "; must be < clients.count = ", n_clients));
  }
  return check.status();
}

}  // namespace

absl::Status ValidateConfig(const v1::ExperimentConfig& c) {
  Checker check;
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
  const bool natural_ok =
      data.source() == v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC ||
      data.source() == v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES || lsa_source;
  check.Require(lsa_source == lsa_algorithm,
                lsa_source ? "data.source = lsa needs algorithm.name = fedlsa or scafflsa"
                           : "algorithm.name = fedlsa or scafflsa needs data.source = lsa")
      .Require(!lsa_algorithm || c.local().max_steps() >= 1 ||
                   c.algorithm().communication_probability() > 0.0,
               "local.max_steps = 0; FedLSA and SCAFFLSA need H = local.max_steps >= 1 "
               "local steps (or algorithm.communication_probability > 0)")
      .Ge("algorithm.communication_probability",
          c.algorithm().communication_probability(), 0.0)
      .Le("algorithm.communication_probability",
          c.algorithm().communication_probability(), 1.0)
      // SCAFFLSA with partial participation (client_fraction < 1 or a
      // participation model other than uniform) is fedsim's EXTENSION, not
      // the paper's algorithm: docs/lsa.md, "Extension: partial
      // participation".
      .Ge("lsa.states", lsa.states(), 2)
      .Ge("lsa.actions", lsa.actions(), 2)
      .Ge("lsa.branching", lsa.branching(), 1)
      .Le("lsa.branching", lsa.branching(), lsa.states())
      .Ge("lsa.features", lsa.features(), 1)
      .Ge("lsa.gamma", lsa.gamma(), 0.0)
      .Require(lsa.gamma() < 1.0, "lsa.gamma must be < 1")
      .Ge("lsa.kernel_heterogeneity", lsa.kernel_heterogeneity(), 0.0)
      .Ge("lsa.reward_heterogeneity", lsa.reward_heterogeneity(), 0.0)
      .Ge("lsa.noise_std", lsa.noise_std(), 0.0)
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
  check.Gt("local.dp.clip", dp.clip(), 0.0)
      .Gt("local.dp.error_clip", dp.error_clip(), 0.0)
      .Require(!dp.has_noise_multiplier() || dp.noise_multiplier() >= 0.0,
               absl::StrCat("local.dp.noise_multiplier = ", dp.noise_multiplier(),
                            "; must be >= 0"))
      .Gt("local.dp.delta", dp.delta(), 0.0)
      .Require(dp.delta() < 1.0,
               absl::StrCat("local.dp.delta = ", dp.delta(), "; must be < 1"))
      .Ge("local.dp.target_epsilon", dp.target_epsilon(), 0.0)
      .Require(!(dp.target_epsilon() > 0.0 && dp.has_noise_multiplier()),
               absl::StrCat("local.dp.target_epsilon = ", dp.target_epsilon(),
                            " with local.dp.noise_multiplier = ",
                            dp.noise_multiplier(),
                            "; set one of them (a target calibrates the noise)"))
      .Ge("local.dp.epsilon_budget", dp.epsilon_budget(), 0.0)
      .Ge("local.dp.max_order", dp.max_order(), 2)
      .Le("local.dp.max_order", dp.max_order(), 1024)
      .Require(!dp_on || !lsa_source,
               absl::StrCat("local.dp.mode = ", dp_mode,
                            " with data.source = lsa; DP-SGD needs a model "
                            "trained by local SGD"))
      .Require(!dp.ghost_clipping() || c.model().objective() != v1::ModelConfig::OBJECTIVE_MLP,
               "local.dp.ghost_clipping = true with model.objective = mlp; ghost "
               "clipping needs a linear model (least_squares, logistic, softmax)")
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
      .Ge("algorithm.server_optimizer.momentum", opt.momentum(), 0.0)
      .Require(opt.momentum() < 1.0,
               absl::StrCat("algorithm.server_optimizer.momentum = ", opt.momentum(),
                            "; must be < 1"))
      .Ge("algorithm.server_optimizer.beta1", opt.beta1(), 0.0)
      .Require(opt.beta1() < 1.0,
               absl::StrCat("algorithm.server_optimizer.beta1 = ", opt.beta1(),
                            "; must be < 1"))
      .Ge("algorithm.server_optimizer.beta2", opt.beta2(), 0.0)
      .Require(opt.beta2() < 1.0,
               absl::StrCat("algorithm.server_optimizer.beta2 = ", opt.beta2(),
                            "; must be < 1"))
      .Gt("algorithm.server_optimizer.tau", opt.tau(), 0.0)
      .Ge("algorithm.prox_mu", algo.prox_mu(), 0.0)
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
      .Ge("clients.straggler_fraction", stragglers, 0.0)
      .Le("clients.straggler_fraction", stragglers, 1.0)
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
  check.Ge("rounds", c.rounds(), 1)
      .Require(!idx_source || !data.path().empty(),
               "data.path is empty; an IDX source needs the directory of its files")
      .Require(!file_source || !data.train_file().empty(),
               "data.train_file is empty; CSV and LIBSVM sources need it")
      .Require(!file_source || !data.test_file().empty(),
               "data.test_file is empty; CSV and LIBSVM sources need it")
      .Ge("data.num_features", data.num_features(), int64_t{0})
      .Ge("data.least_squares.examples_per_client",
          data.least_squares().examples_per_client(), 1)
      .Ge("data.least_squares.dim", data.least_squares().dim(), 1)
      .Ge("data.least_squares.noise_std", data.least_squares().noise_std(), 0.0)
      .Ge("data.least_squares.heterogeneity",
          data.least_squares().heterogeneity(), 0.0)
      .Ge("data.least_squares.test_examples",
          data.least_squares().test_examples(), 1)
      .Ge("data.fedprox_synthetic.alpha", data.fedprox_synthetic().alpha(), 0.0)
      .Ge("data.fedprox_synthetic.beta", data.fedprox_synthetic().beta(), 0.0)
      .Ge("clients.count", clients.count(), 1)
      .Require(clients.partition() != v1::ClientsConfig::PARTITION_NATURAL ||
                   natural_ok,
               "clients.partition = natural; only synthetic sources have a "
               "natural split (use iid, dirichlet or shards)")
      .Require(data.source() != v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC ||
                   clients.partition() == v1::ClientsConfig::PARTITION_NATURAL,
               "clients.partition must be natural for data.source = "
               "fedprox_synthetic (its devices are the clients)")
      .Gt("clients.dirichlet_alpha", clients.dirichlet_alpha(), 0.0)
      .Ge("clients.shards_per_client", clients.shards_per_client(), 1)
      .Ge("model.hidden_units", c.model().hidden_units(), 1)
      .Ge("model.l2", c.model().l2(), 0.0)
      .Gt("participation.client_fraction",
          c.participation().client_fraction(), 0.0)
      .Le("participation.client_fraction",
          c.participation().client_fraction(), 1.0)
      .Gt("algorithm.server_lr", c.algorithm().server_lr(), 0.0)
      .Ge("algorithm.fedau_cutoff", c.algorithm().fedau_cutoff(), int64_t{0})
      .Gt("participation.p_mean", part.p_mean(), 0.0)
      .Le("participation.p_mean", part.p_mean(), 1.0)
      .Ge("participation.p_min", part.p_min(), 0.0)
      .Le("participation.p_min", part.p_min(), 1.0)
      .Gt("participation.label_alpha", part.label_alpha(), 0.0)
      .Gt("participation.markov_a", part.markov_a(), 0.0)
      .Le("participation.markov_a", part.markov_a(), 1.0)
      .Ge("participation.cycle_period", part.cycle_period(), 1)
      .Require(part.model() != v1::ParticipationConfig::MODEL_TRACE ||
                   !part.trace_file().empty(),
               "participation.trace_file is empty; participation.model = trace "
               "needs the file listing each round's clients")
      .Require(part.probabilities() != v1::ParticipationConfig::PROBABILITIES_LIST ||
                   part.p_size() == clients.count(),
               absl::StrCat("participation.p lists ", part.p_size(),
                            " probabilities; participation.probabilities = list "
                            "needs one per client (clients.count = ",
                            clients.count(), ")"))
      .Require(part.join_rounds().empty() || part.join_rounds_size() == clients.count(),
               absl::StrCat("participation.join_rounds lists ", part.join_rounds_size(),
                            " rounds; it needs none or one per client (clients.count = ",
                            clients.count(), ")"));
  for (int i = 0; i < part.p_size(); ++i) {
    check.Gt(absl::StrCat("participation.p[", i, "]"), part.p(i), 0.0)
        .Le(absl::StrCat("participation.p[", i, "]"), part.p(i), 1.0);
  }
  for (int i = 0; i < part.join_rounds_size(); ++i) {
    check.Ge(absl::StrCat("participation.join_rounds[", i, "]"), part.join_rounds(i),
             int64_t{0});
  }
  const bool async_algorithm = IsAsyncAlgorithm(c.algorithm().name());
  const auto& async = c.async();
  const auto& net = async.network_delay();
  check.Ge("local.momentum", c.local().momentum(), 0.0)
      .Require(c.local().momentum() < 1.0,
               absl::StrCat("local.momentum = ", c.local().momentum(),
                            "; must be < 1"))
      .Ge("local.grad_clip_norm", c.local().grad_clip_norm(), 0.0)
      .Require(!c.local().fresh_batches() ||
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
      .Gt("algorithm.window", c.algorithm().window(), 0.0)
      .Ge("algorithm.buffer_size", c.algorithm().buffer_size(), 1)
      .Require(c.algorithm().name() != v1::AlgorithmConfig::NAME_FEDBUFF ||
                   c.algorithm().buffer_size() <= clients.count(),
               absl::StrCat("algorithm.buffer_size = ", c.algorithm().buffer_size(),
                            "; must be <= clients.count = ", clients.count()))
      .Require(!c.algorithm().staleness_scaling() ||
                   c.algorithm().name() == v1::AlgorithmConfig::NAME_FEDBUFF,
               absl::StrCat("algorithm.staleness_scaling = true with algorithm.name = ",
                            algo_name, "; it is a FedBuff option"))
      .Ge("async.ticks_per_unit", async.ticks_per_unit(), int64_t{1})
      .Le("async.ticks_per_unit", async.ticks_per_unit(), int64_t{1000000000})
      .Ge("async.horizon", async.horizon(), 0.0)
      .Le("async.horizon", async.horizon(), 1e9)
      .Ge("async.fx_percent", async.fx_percent(), 0.0)
      .Require(async.fx_percent() < 100.0,
               absl::StrCat("async.fx_percent = ", async.fx_percent(),
                            "; must be < 100 (the fastest client needs 1 - X/100 > 0)"))
      .Gt("async.log_normal_sigma", async.log_normal_sigma(), 0.0)
      .Require(async.compute_time() != v1::AsyncConfig::COMPUTE_TIME_TRACE ||
                   !async.trace_file().empty(),
               "async.trace_file is empty; async.compute_time = trace needs the "
               "file of per-task times")
      .Require(net.kind() == v1::TimeDistribution::KIND_NONE || net.mean() > 0.0,
               absl::StrCat("async.network_delay.mean = ", net.mean(),
                            "; must be > 0"))
      .Gt("async.network_delay.sigma", net.sigma(), 0.0)
      .Ge("async.eval_interval", async.eval_interval(), 0.0)
      .Ge("async.max_staleness", async.max_staleness(), int64_t{0});
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
  for (int i = 0; i < c.distributed().worker_slowdown_size(); ++i) {
    check.Ge(absl::StrCat("distributed.worker_slowdown[", i, "]"),
             c.distributed().worker_slowdown(i), 1.0)
        .Le(absl::StrCat("distributed.worker_slowdown[", i, "]"),
            c.distributed().worker_slowdown(i), 1000.0);
  }
  // Window, horizon and eval interval must be whole ticks >= 1.
  const double tpu = static_cast<double>(async.ticks_per_unit());
  check.Require(!async_algorithm ||
                    c.algorithm().window() * tpu >= 1.0,
                absl::StrCat("algorithm.window = ", c.algorithm().window(),
                             "; must be at least one tick (1 / async.ticks_per_unit)"));
  check
      .Ge("local.epochs", c.local().epochs(), 1)
      .Ge("local.batch_size", c.local().batch_size(), int64_t{0})
      .Gt("local.lr", c.local().lr(), 0.0)
      .Ge("local.max_steps", c.local().max_steps(), int64_t{0})
      .Ge("eval.every", c.eval().every(), 1)
      .Ge("runtime.threads", c.runtime().threads(), 1)
      .Le("runtime.threads", c.runtime().threads(), 1024)
      .Gt("distributed.round_deadline_s", c.distributed().round_deadline_s(), 0.0)
      .Ge("distributed.min_workers", c.distributed().min_workers(), 1)
      .Gt("distributed.start_timeout_s", c.distributed().start_timeout_s(), 0.0)
      .Gt("distributed.long_poll_s", c.distributed().long_poll_s(), 0.0)
      .Ge("distributed.max_message_bytes", c.distributed().max_message_bytes(),
          int64_t{1} << 20)
      .Le("distributed.max_message_bytes", c.distributed().max_message_bytes(),
          int64_t{1} << 30)
      .Ge("distributed.min_quorum", c.distributed().min_quorum(), 1)
      .Gt("distributed.heartbeat_interval_s", c.distributed().heartbeat_interval_s(), 0.0)
      .Ge("distributed.heartbeat_patience", c.distributed().heartbeat_patience(), 1)
      .Ge("distributed.chunk_bytes", c.distributed().chunk_bytes(), int64_t{1024})
      .Le("distributed.chunk_bytes", c.distributed().chunk_bytes(),
          c.distributed().max_message_bytes() / 2)
      .Ge("distributed.max_workers", c.distributed().max_workers(), 1)
      .Ge("distributed.max_inflight_per_worker",
          c.distributed().max_inflight_per_worker(), 1)
      .Ge("distributed.max_upload_buffer_bytes",
          c.distributed().max_upload_buffer_bytes(),
          c.distributed().max_message_bytes())
      .Ge("distributed.max_concurrent_streams",
          c.distributed().max_concurrent_streams(), 1)
      .Ge("distributed.resource_quota_bytes", c.distributed().resource_quota_bytes(),
          2 * c.distributed().max_message_bytes())
      .Ge("distributed.rejection_events_per_minute",
          c.distributed().rejection_events_per_minute(), 0)
      .Ge("checkpoint.every", c.checkpoint().every(), 0)
      .Ge("checkpoint.keep", c.checkpoint().keep(), 1)
      .Ge("checkpoint.min_interval_s", c.checkpoint().min_interval_s(), 0.0);
  FEDSIM_RETURN_IF_ERROR(check.status());
  return ValidateRobust(c);
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigText(absl::string_view yaml) {
  FEDSIM_ASSIGN_OR_RETURN(v1::ExperimentConfig config, ParseConfigYaml(yaml));
  ApplyDefaults(config);
  FEDSIM_RETURN_IF_ERROR(ValidateConfig(config));
  return config;
}

absl::StatusOr<v1::ExperimentConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("config: cannot open '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto config = LoadConfigText(buffer.str());
  if (!config.ok()) return AnnotateStatus(config.status(), path);
  return config;
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

}  // namespace fedsim
