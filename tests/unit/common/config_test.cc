// Tests of common/config: the YAML mapping (unknown keys at every level,
// wrong types, enum spellings, nulls), the defaults, every validation rule,
// and the JSON round trip of a resolved config.
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "fedsim/v1/config.pb.h"
#include "fedsim/v1/options.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace config_test {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace pb = google::protobuf;

v1::ExperimentConfig LoadOrDie(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status() << "\n" << yaml;
  return config.ok() ? *std::move(config) : v1::ExperimentConfig();
}

// The error of loading `yaml`, which must fail with kInvalidArgument on one
// line starting with "config: ".
std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_FALSE(config.ok()) << "accepted:\n" << yaml;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
  const std::string message(config.status().message());
  EXPECT_THAT(message, StartsWith("config: ")) << yaml;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  return message;
}

TEST(ConfigTest, EmptyDocumentGivesTheDocumentedDefaults) {
  const v1::ExperimentConfig c = LoadOrDie("");
  EXPECT_EQ(c.seed(), 1u);
  EXPECT_EQ(c.rounds(), 100);
  EXPECT_EQ(c.data().source(), v1::DataConfig::SOURCE_FASHION_MNIST);
  EXPECT_EQ(c.data().path(), "third_party/data/fashion-mnist");
  EXPECT_EQ(c.clients().count(), 100);
  EXPECT_EQ(c.clients().partition(), v1::ClientsConfig::PARTITION_IID);
  EXPECT_EQ(c.model().objective(), v1::ModelConfig::OBJECTIVE_SOFTMAX);
  EXPECT_EQ(c.model().precision(), v1::ModelConfig::PRECISION_FLOAT32);
  EXPECT_EQ(c.algorithm().name(), v1::AlgorithmConfig::NAME_FEDAVG);
  EXPECT_EQ(c.algorithm().server_lr(), 1.0);
  EXPECT_EQ(c.participation().model(), v1::ParticipationConfig::MODEL_UNIFORM);
  EXPECT_EQ(c.participation().client_fraction(), 0.1);
  EXPECT_EQ(c.participation().probabilities(),
            v1::ParticipationConfig::PROBABILITIES_CONSTANT);
  EXPECT_EQ(c.participation().p_mean(), 0.1);
  EXPECT_EQ(c.participation().p_min(), 0.02);
  EXPECT_EQ(c.participation().label_alpha(), 0.1);
  EXPECT_EQ(c.participation().markov_a(), 0.05);
  EXPECT_EQ(c.participation().cycle_period(), 100);
  EXPECT_TRUE(c.participation().trace_file().empty());
  EXPECT_TRUE(c.participation().join_rounds().empty());
  EXPECT_EQ(c.algorithm().fedau_cutoff(), 0);
  EXPECT_TRUE(c.algorithm().fedau_count_from_join());
  EXPECT_EQ(c.local().epochs(), 1);
  EXPECT_EQ(c.local().batch_size(), 32);
  EXPECT_EQ(c.local().lr(), 0.05);
  EXPECT_EQ(c.local().max_steps(), 0);
  EXPECT_EQ(c.eval().every(), 1);
  EXPECT_TRUE(c.eval().train_loss());
  EXPECT_EQ(c.runtime().threads(), 1);
  EXPECT_EQ(c.distributed().round_deadline_s(), 600.0);
  EXPECT_EQ(c.distributed().min_workers(), 1);
  EXPECT_EQ(c.distributed().long_poll_s(), 10.0);
  EXPECT_EQ(c.distributed().min_quorum(), 1);
  EXPECT_EQ(c.distributed().heartbeat_interval_s(), 30.0);
  EXPECT_EQ(c.distributed().heartbeat_patience(), 2);
}

TEST(ConfigTest, SourceDependentDefaults) {
  const v1::ExperimentConfig ls =
      LoadOrDie("data: {source: synthetic_least_squares}");
  EXPECT_EQ(ls.model().objective(), v1::ModelConfig::OBJECTIVE_LEAST_SQUARES);
  EXPECT_EQ(ls.model().precision(), v1::ModelConfig::PRECISION_FLOAT64);
  EXPECT_EQ(ls.clients().partition(), v1::ClientsConfig::PARTITION_NATURAL);
  EXPECT_EQ(ls.clients().count(), 100);
  const v1::ExperimentConfig fp = LoadOrDie("data: {source: fedprox_synthetic}");
  EXPECT_EQ(fp.model().objective(), v1::ModelConfig::OBJECTIVE_SOFTMAX);
  EXPECT_EQ(fp.clients().partition(), v1::ClientsConfig::PARTITION_NATURAL);
  EXPECT_EQ(fp.clients().count(), 30);
  EXPECT_EQ(fp.model().precision(), v1::ModelConfig::PRECISION_FLOAT32);
  EXPECT_EQ(LoadOrDie("data: {source: lsa}\nlocal: {max_steps: 5}").model().precision(),
            v1::ModelConfig::PRECISION_FLOAT64);
}

TEST(ConfigTest, PrecisionIsKeptWhenGivenAndChecked) {
  EXPECT_EQ(LoadOrDie("model: {precision: float64}").model().precision(),
            v1::ModelConfig::PRECISION_FLOAT64);
  EXPECT_EQ(LoadOrDie("data: {source: synthetic_least_squares}\nmodel: {precision: float32}")
                .model()
                .precision(),
            v1::ModelConfig::PRECISION_FLOAT32);
  const std::string error = ErrorOf("model: {precision: float16}");
  EXPECT_THAT(error, HasSubstr("model.precision"));
  EXPECT_THAT(error, HasSubstr("float16"));
  EXPECT_THAT(error, HasSubstr("float32"));
  EXPECT_THAT(error, HasSubstr("float64"));
}

TEST(ConfigTest, ExplicitValuesAreKept) {
  const v1::ExperimentConfig c = LoadOrDie(R"(
name: explicit
seed: 7
rounds: 3
local:
  lr: 0.5
  epochs: 2
  batch_size: 0
  max_steps: 9
eval:
  train_loss: false
participation:
  client_fraction: 1
)");
  EXPECT_EQ(c.name(), "explicit");
  EXPECT_EQ(c.seed(), 7u);
  EXPECT_EQ(c.rounds(), 3);
  EXPECT_EQ(c.local().lr(), 0.5);
  EXPECT_EQ(c.local().epochs(), 2);
  EXPECT_EQ(c.local().batch_size(), 0);  // set to 0 is not "unset"
  EXPECT_EQ(c.local().max_steps(), 9);
  EXPECT_FALSE(c.eval().train_loss());
  EXPECT_EQ(c.participation().client_fraction(), 1.0);
}

// One YAML document per validation rule and the key its message must name.
struct RuleCase {
  std::string yaml;
  std::string key;
};

TEST(ConfigTest, EveryValidationRuleRejectsAndNamesItsKey) {
  const std::vector<RuleCase> cases = {
      {"rounds: 0", "rounds"},
      {"data: {source: idx, path: ''}", "data.path"},
      {"data: {source: csv, test_file: t.csv}", "data.train_file"},
      {"data: {source: csv, train_file: t.csv}", "data.test_file"},
      {"data: {source: libsvm, test_file: t}", "data.train_file"},
      {"data: {source: libsvm, train_file: t}", "data.test_file"},
      {"data: {num_features: -1}", "data.num_features"},
      {"data: {least_squares: {examples_per_client: 0}}",
       "data.least_squares.examples_per_client"},
      {"data: {least_squares: {dim: 0}}", "data.least_squares.dim"},
      {"data: {least_squares: {noise_std: -0.1}}",
       "data.least_squares.noise_std"},
      {"data: {least_squares: {heterogeneity: -1}}",
       "data.least_squares.heterogeneity"},
      {"data: {least_squares: {test_examples: 0}}",
       "data.least_squares.test_examples"},
      {"data: {fedprox_synthetic: {alpha: -1}}", "data.fedprox_synthetic.alpha"},
      {"data: {fedprox_synthetic: {beta: -0.5}}", "data.fedprox_synthetic.beta"},
      {"clients: {count: 0}", "clients.count"},
      {"clients: {partition: natural}", "clients.partition"},
      {"data: {source: fedprox_synthetic}\nclients: {partition: iid}",
       "clients.partition"},
      {"clients: {dirichlet_alpha: 0}", "clients.dirichlet_alpha"},
      {"clients: {shards_per_client: 0}", "clients.shards_per_client"},
      {"model: {hidden_units: 0}", "model.hidden_units"},
      {"model: {l2: -1e-3}", "model.l2"},
      {"participation: {client_fraction: 0}", "participation.client_fraction"},
      {"participation: {client_fraction: 1.5}", "participation.client_fraction"},
      {"participation: {p_mean: 0}", "participation.p_mean"},
      {"participation: {p_mean: 1.01}", "participation.p_mean"},
      {"participation: {p_min: -0.1}", "participation.p_min"},
      {"participation: {p_min: 2}", "participation.p_min"},
      {"participation: {label_alpha: 0}", "participation.label_alpha"},
      {"participation: {markov_a: 0}", "participation.markov_a"},
      {"participation: {markov_a: 1.5}", "participation.markov_a"},
      {"participation: {cycle_period: 0}", "participation.cycle_period"},
      {"participation: {model: trace}", "participation.trace_file"},
      {"clients: {count: 3}\nparticipation: {probabilities: list, p: [0.1, 0.2]}",
       "participation.p"},
      {"clients: {count: 2}\nparticipation: {probabilities: list, p: [0.1, 0]}",
       "participation.p[1]"},
      {"clients: {count: 2}\nparticipation: {probabilities: list, p: [1.5, 0.2]}",
       "participation.p[0]"},
      {"clients: {count: 3}\nparticipation: {join_rounds: [0, 1]}",
       "participation.join_rounds"},
      {"clients: {count: 2}\nparticipation: {join_rounds: [0, -1]}",
       "participation.join_rounds[1]"},
      {"algorithm: {fedau_cutoff: -1}", "algorithm.fedau_cutoff"},
      {"algorithm: {server_lr: 0}", "algorithm.server_lr"},
      {"local: {epochs: 0}", "local.epochs"},
      {"local: {batch_size: -1}", "local.batch_size"},
      {"local: {lr: -0.5}", "local.lr"},
      {"local: {lr: 0}", "local.lr"},
      {"local: {max_steps: -2}", "local.max_steps"},
      {"eval: {every: 0}", "eval.every"},
      {"runtime: {threads: 0}", "runtime.threads"},
      {"runtime: {threads: 1025}", "runtime.threads"},
      {"distributed: {round_deadline_s: 0}", "distributed.round_deadline_s"},
      {"distributed: {min_workers: 0}", "distributed.min_workers"},
      {"distributed: {start_timeout_s: -1}", "distributed.start_timeout_s"},
      {"distributed: {long_poll_s: 0}", "distributed.long_poll_s"},
      {"distributed: {min_quorum: 0}", "distributed.min_quorum"},
      {"distributed: {heartbeat_interval_s: 0}", "distributed.heartbeat_interval_s"},
      {"distributed: {heartbeat_patience: 0}", "distributed.heartbeat_patience"},
      {"distributed: {max_message_bytes: 1000}",
       "distributed.max_message_bytes"},
      {"distributed: {max_message_bytes: 2147483648}",
       "distributed.max_message_bytes"},
      {"local: {dp: {clip: 0}}", "local.dp.clip"},
      {"local: {dp: {error_clip: -1}}", "local.dp.error_clip"},
      {"local: {dp: {noise_multiplier: -0.5}}", "local.dp.noise_multiplier"},
      {"local: {dp: {delta: 0}}", "local.dp.delta"},
      {"local: {dp: {delta: 1}}", "local.dp.delta"},
      {"local: {dp: {delta: 1.5}}", "local.dp.delta"},
      {"local: {dp: {target_epsilon: -1}}", "local.dp.target_epsilon"},
      {"local: {dp: {target_epsilon: 2, noise_multiplier: 1}}",
       "local.dp.target_epsilon"},
      {"local: {dp: {epsilon_budget: -1}}", "local.dp.epsilon_budget"},
      {"local: {dp: {max_order: 1}}", "local.dp.max_order"},
      {"local: {dp: {max_order: 2000}}", "local.dp.max_order"},
      {"local: {dp: {mode: clip}}\nmodel: {l2: 0.01}", "model.l2"},
      {"local: {max_steps: 2, dp: {mode: dicesgd}}\ndata: {source: lsa}\n"
       "algorithm: {name: fedlsa}",
       "local.dp.mode"},
      {"algorithm: {name: scaffold, server_optimizer: {kind: adam}}",
       "algorithm.server_optimizer.kind"},
      {"algorithm: {server_optimizer: {momentum: 1}}",
       "algorithm.server_optimizer.momentum"},
      {"algorithm: {server_optimizer: {momentum: -0.1}}",
       "algorithm.server_optimizer.momentum"},
      {"algorithm: {server_optimizer: {beta1: 1}}", "algorithm.server_optimizer.beta1"},
      {"algorithm: {server_optimizer: {beta2: -1}}", "algorithm.server_optimizer.beta2"},
      {"algorithm: {server_optimizer: {tau: 0}}", "algorithm.server_optimizer.tau"},
      {"algorithm: {name: fedprox, prox_mu: -1}", "algorithm.prox_mu"},
      {"algorithm: {name: fedavg, prox_mu: 0.1}", "algorithm.prox_mu"},
      {"algorithm: {name: fedprox}\nlocal: {dp: {mode: clip}}", "local.dp.mode"},
      {"algorithm: {name: scaffold}\nlocal: {dp: {mode: clip}}", "local.dp.mode"},
      {"clients: {straggler_fraction: -0.1}", "clients.straggler_fraction"},
      {"clients: {straggler_fraction: 1.5}", "clients.straggler_fraction"},
      {"clients: {straggler_fraction: 0.5}\nalgorithm: {name: fedprox}",
       "clients.straggler_fraction"},  // E = 1: no partial work possible
      {"clients: {straggler_fraction: 0.5}\nalgorithm: {keep_stragglers: true}\n"
       "local: {epochs: 5, max_steps: 1}",
       "local.max_steps"},
      {"data: {source: lsa}\nclients: {straggler_fraction: 0.5}\n"
       "algorithm: {name: fedlsa}\nlocal: {max_steps: 2}",
       "clients.straggler_fraction"},
  };
  for (const RuleCase& c : cases) {
    EXPECT_THAT(ErrorOf(c.yaml), HasSubstr(c.key)) << c.yaml;
  }
}

TEST(ConfigTest, BaselineDefaultsAndKeys) {
  const v1::ExperimentConfig d = LoadOrDie("");
  const auto& opt = d.algorithm().server_optimizer();
  EXPECT_EQ(opt.kind(), v1::ServerOptimizerConfig::KIND_SGD);
  EXPECT_EQ(opt.momentum(), 0.9);
  EXPECT_EQ(opt.beta1(), 0.9);
  EXPECT_EQ(opt.beta2(), 0.99);
  EXPECT_EQ(opt.tau(), 1e-3);
  EXPECT_EQ(d.algorithm().prox_mu(), 0.0);
  EXPECT_EQ(d.algorithm().scaffold_option(), v1::AlgorithmConfig::SCAFFOLD_OPTION_II);
  EXPECT_FALSE(d.algorithm().keep_stragglers());
  EXPECT_EQ(d.clients().straggler_fraction(), 0.0);
  // FedProx keeps stragglers by default, as in the FedProx code.
  const v1::ExperimentConfig p = LoadOrDie(
      "algorithm: {name: fedprox, prox_mu: 1}\nclients: {straggler_fraction: 0.9}\n"
      "local: {epochs: 20}");
  EXPECT_EQ(p.algorithm().name(), v1::AlgorithmConfig::NAME_FEDPROX);
  EXPECT_TRUE(p.algorithm().keep_stragglers());
  EXPECT_EQ(p.algorithm().prox_mu(), 1.0);
  EXPECT_EQ(p.clients().straggler_fraction(), 0.9);
  const v1::ExperimentConfig s = LoadOrDie(
      "algorithm: {name: scaffold, scaffold_option: i}\n"
      "participation: {client_fraction: 0.2}");
  EXPECT_EQ(s.algorithm().scaffold_option(), v1::AlgorithmConfig::SCAFFOLD_OPTION_I);
  const v1::ExperimentConfig a = LoadOrDie(
      "algorithm: {name: fedau, server_optimizer: {kind: yogi, tau: 0.01}}");
  EXPECT_EQ(a.algorithm().server_optimizer().kind(), v1::ServerOptimizerConfig::KIND_YOGI);
  EXPECT_EQ(a.algorithm().server_optimizer().tau(), 0.01);
}

TEST(ConfigTest, RangeMessageNamesKeyValueAndRule) {
  EXPECT_EQ(ErrorOf("local: {lr: -0.5}"), "config: local.lr = -0.5; must be > 0");
  EXPECT_EQ(ErrorOf("rounds: 0"), "config: rounds = 0; must be >= 1");
  EXPECT_EQ(ErrorOf("participation: {client_fraction: 1.5}"),
            "config: participation.client_fraction = 1.5; must be <= 1");
}

TEST(ConfigTest, DpDefaultsAndMessages) {
  const v1::ExperimentConfig off = LoadOrDie("");
  const v1::DpConfig& dp = off.local().dp();
  EXPECT_EQ(dp.mode(), v1::DpConfig::MODE_NONE);
  EXPECT_EQ(dp.clip(), 1.0);
  EXPECT_EQ(dp.error_clip(), 1.0);
  EXPECT_EQ(dp.noise_multiplier(), 1.0);
  EXPECT_EQ(dp.delta(), 1e-5);
  EXPECT_EQ(dp.target_epsilon(), 0.0);
  EXPECT_EQ(dp.epsilon_budget(), 0.0);
  EXPECT_EQ(dp.conversion(), v1::DpConfig::CONVERSION_TIGHT);
  EXPECT_EQ(dp.max_order(), 256);
  EXPECT_TRUE(dp.fractional_orders());
  // error_clip follows clip; a target epsilon leaves z to calibration.
  const v1::ExperimentConfig dice =
      LoadOrDie("local: {dp: {mode: dicesgd, clip: 0.1, target_epsilon: 2}}");
  EXPECT_EQ(dice.local().dp().mode(), v1::DpConfig::MODE_DICESGD);
  EXPECT_EQ(dice.local().dp().error_clip(), 0.1);
  EXPECT_FALSE(dice.local().dp().has_noise_multiplier());
  EXPECT_EQ(LoadOrDie("local: {dp: {conversion: classical}}").local().dp().conversion(),
            v1::DpConfig::CONVERSION_CLASSICAL);
  EXPECT_EQ(ErrorOf("local: {dp: {delta: 1}}"),
            "config: local.dp.delta = 1; must be < 1");
  EXPECT_EQ(ErrorOf("local: {dp: {noise_multiplier: -0.5}}"),
            "config: local.dp.noise_multiplier = -0.5; must be >= 0");
  EXPECT_EQ(ErrorOf("local: {dp: {clip: 0}}"), "config: local.dp.clip = 0; must be > 0");
  EXPECT_THAT(ErrorOf("local: {dp: {mode: clipping}}"), HasSubstr("none, clip, dicesgd"));
  EXPECT_THAT(ErrorOf("local: {dp: {mode: clip}}\nmodel: {l2: 0.01}"),
              HasSubstr("local.dp.mode = clip"));
}

TEST(ConfigTest, BoundaryValuesAreAccepted) {
  LoadOrDie(R"(
rounds: 1
participation: {client_fraction: 1, p_mean: 1, p_min: 1, markov_a: 1, cycle_period: 1}
algorithm: {fedau_cutoff: 0}
local: {batch_size: 0, max_steps: 0, epochs: 1}
runtime: {threads: 1024}
data: {least_squares: {noise_std: 0, heterogeneity: 0}}
model: {l2: 0}
distributed: {max_message_bytes: 1048576, min_workers: 1}
)");
  LoadOrDie("distributed: {max_message_bytes: 1073741824}");
}

// Every message-typed field reachable from ExperimentConfig, as key paths.
void MessagePaths(const pb::Descriptor* d, const std::string& prefix,
                  std::vector<std::pair<std::string, const pb::Descriptor*>>& out) {
  out.emplace_back(prefix, d);
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      MessagePaths(f->message_type(),
                   prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name()),
                   out);
    }
  }
}

// YAML that sets `leaf: value` at the dotted `path` (flow style).
std::string NestedYaml(const std::string& path, const std::string& leaf,
                       const std::string& value) {
  std::vector<std::string> parts;
  std::string::size_type start = 0;
  while (!path.empty()) {
    const auto dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::string yaml = absl::StrCat(leaf, ": ", value);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    yaml = absl::StrCat(*it, ": {", yaml, "}");
  }
  return yaml;
}

TEST(ConfigTest, UnknownKeysRejectedAtEveryLevel) {
  std::vector<std::pair<std::string, const pb::Descriptor*>> paths;
  MessagePaths(v1::ExperimentConfig::descriptor(), "", paths);
  ASSERT_GE(paths.size(), 12u);  // the root and its nested messages
  for (const auto& [path, descriptor] : paths) {
    const std::string yaml = NestedYaml(path, "bogus_key", "1");
    const std::string key = path.empty() ? "bogus_key" : path + ".bogus_key";
    const std::string error = ErrorOf(yaml);
    EXPECT_THAT(error, HasSubstr(absl::StrCat("config: ", key, ": unknown key")))
        << yaml;
    // The message lists the keys that are allowed there.
    EXPECT_THAT(error, HasSubstr(descriptor->field(0)->name())) << yaml;
  }
}

TEST(ConfigTest, MisspelledKeyIsRejected) {
  EXPECT_THAT(ErrorOf("local: {learning_rate: 0.1}"),
              HasSubstr("local.learning_rate: unknown key"));
  EXPECT_THAT(ErrorOf("round: 5"), HasSubstr("round: unknown key"));
}

TEST(ConfigTest, WrongTypesAreRejectedWithTheirKey) {
  const std::vector<RuleCase> cases = {
      {"rounds: ten", "rounds"},
      {"rounds: 1.5", "rounds"},
      {"rounds: 99999999999", "rounds"},  // overflows int32
      {"seed: -1", "seed"},               // uint64
      {"local: {lr: fast}", "local.lr"},
      {"local: {lr: .inf}", "local.lr"},
      {"local: {lr: .nan}", "local.lr"},
      {"local: {batch_size: 3.5}", "local.batch_size"},
      {"eval: {train_loss: maybe}", "eval.train_loss"},
      {"model: {objective: cnn}", "model.objective"},
      {"data: {source: 5}", "data.source"},
      {"local: 5", "local"},                 // a message given a scalar
      {"local: [1, 2]", "local"},            // a message given a list
      {"rounds: {a: 1}", "rounds"},          // a scalar given a map
      {"rounds: [1, 2]", "rounds"},          // a scalar given a list
      {"[1, 2, 3]", "the document"},         // the root must be a map
      {"just a string", "the document"},
  };
  for (const RuleCase& c : cases) {
    EXPECT_THAT(ErrorOf(c.yaml), HasSubstr(c.key)) << c.yaml;
  }
}

TEST(ConfigTest, BadEnumListsTheChoicesInLowerCase) {
  const std::string error = ErrorOf("model: {objective: cnn}");
  EXPECT_THAT(error, HasSubstr("least_squares"));
  EXPECT_THAT(error, HasSubstr("softmax"));
  EXPECT_THAT(error, HasSubstr("mlp"));
  EXPECT_THAT(error, ::testing::Not(HasSubstr("unspecified")));
}

TEST(ConfigTest, UnspecifiedEnumValueIsNotAChoice) {
  ErrorOf("model: {objective: unspecified}");
  ErrorOf("model: {objective: OBJECTIVE_UNSPECIFIED}");
}

TEST(ConfigTest, InvalidYamlReportsLine) {
  EXPECT_THAT(ErrorOf("rounds: 3\nlocal: {lr: 0.1\n"), HasSubstr("line"));
}

TEST(ConfigTest, EnumSuffixAndFullNamesBothAccepted) {
  for (const std::string spelling :
       {"softmax", "SOFTMAX", "Softmax", "OBJECTIVE_SOFTMAX", "objective_softmax"}) {
    EXPECT_EQ(LoadOrDie("model: {objective: " + spelling + "}").model().objective(),
              v1::ModelConfig::OBJECTIVE_SOFTMAX)
        << spelling;
  }
  // Multi-word enum names ("Source" -> SOURCE_...).
  EXPECT_EQ(LoadOrDie("data: {source: synthetic_least_squares}").data().source(),
            v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES);
  EXPECT_EQ(
      LoadOrDie("data: {source: SOURCE_SYNTHETIC_LEAST_SQUARES}").data().source(),
      v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES);
  EXPECT_EQ(LoadOrDie("clients: {partition: dirichlet}").clients().partition(),
            v1::ClientsConfig::PARTITION_DIRICHLET);
  EXPECT_EQ(LoadOrDie("participation: {model: MODEL_UNIFORM}").participation().model(),
            v1::ParticipationConfig::MODEL_UNIFORM);
}

TEST(ConfigTest, FedAuAndParticipationKeysLoad) {
  const v1::ExperimentConfig c = LoadOrDie(R"(
clients: {count: 3}
algorithm: {name: fedau, fedau_cutoff: 50, fedau_count_from_join: false}
participation:
  model: markov
  probabilities: list
  p: [0.5, 1, 0.02]
  markov_a: 1
  cycle_period: 1
  p_mean: 1
  p_min: 0
  join_rounds: [0, 0, 7]
)");
  EXPECT_EQ(c.algorithm().name(), v1::AlgorithmConfig::NAME_FEDAU);
  EXPECT_EQ(c.algorithm().fedau_cutoff(), 50);
  EXPECT_FALSE(c.algorithm().fedau_count_from_join());
  EXPECT_EQ(c.participation().model(), v1::ParticipationConfig::MODEL_MARKOV);
  EXPECT_THAT(c.participation().p(), ::testing::ElementsAre(0.5, 1.0, 0.02));
  EXPECT_THAT(c.participation().join_rounds(), ::testing::ElementsAre(0, 0, 7));
  for (const std::string name :
       {"fedau", "known_prob", "average_participating", "average_all"}) {
    LoadOrDie("algorithm: {name: " + name + "}");
  }
  for (const std::string model : {"uniform", "bernoulli", "markov", "cyclic"}) {
    LoadOrDie("participation: {model: " + model + "}");
  }
  EXPECT_EQ(LoadOrDie("participation: {model: trace, trace_file: t.txt}")
                .participation()
                .model(),
            v1::ParticipationConfig::MODEL_TRACE);
  EXPECT_EQ(LoadOrDie("participation: {probabilities: data_correlated}")
                .participation()
                .probabilities(),
            v1::ParticipationConfig::PROBABILITIES_DATA_CORRELATED);
}

// FedProx's synthetic setup (DATA.md): 30 devices, 10 a round, E = 20,
// B = 10, lr 0.01, 200 rounds, 90% stragglers.
TEST(ConfigTest, BaselineConfigsLoad) {
  for (const std::string name : {"fedprox", "fedavg", "scaffold", "fedadam"}) {
    absl::StatusOr<v1::ExperimentConfig> c =
        LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/" + name + "_synthetic.yaml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->data().source(), v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC) << name;
    EXPECT_EQ(c->clients().count(), 30) << name;
    EXPECT_EQ(c->clients().straggler_fraction(), 0.9) << name;
    EXPECT_EQ(c->local().epochs(), 20) << name;
    EXPECT_EQ(c->local().batch_size(), 10) << name;
    EXPECT_EQ(c->local().lr(), 0.01) << name;
    EXPECT_EQ(c->rounds(), 200) << name;
    EXPECT_EQ(c->algorithm().keep_stragglers(), name == "fedprox") << name;
  }
}

// SCAFFLSA with partial participation is an extension (docs/lsa.md): it
// loads, and only then does the agent use the server's anchors.
TEST(ConfigTest, ScaffLsaPartialParticipationIsAcceptedAsTheExtension) {
  const std::string lsa = "data: {source: lsa}\nlocal: {max_steps: 2}\n";
  struct Case {
    std::string yaml;
    bool partial;
  };
  const std::vector<Case> cases = {
      {"algorithm: {name: scafflsa}", false},
      {"algorithm: {name: scafflsa}\nparticipation: {client_fraction: 0.5}", true},
      {"algorithm: {name: scafflsa}\nparticipation: {model: bernoulli, p_mean: 0.3}",
       true},
      {"algorithm: {name: scafflsa, communication_probability: 0.2}\n"
       "participation: {client_fraction: 0.3}",
       true},
      {"algorithm: {name: fedlsa}\nparticipation: {client_fraction: 0.5}", false},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(lsa + c.yaml);
    ASSERT_TRUE(config.ok()) << c.yaml << ": " << config.status();
    EXPECT_EQ(ScaffLsaPartialParticipation(*config), c.partial) << c.yaml;
  }
  absl::StatusOr<v1::ExperimentConfig> example =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/scafflsa_partial.yaml");
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_TRUE(ScaffLsaPartialParticipation(*example));
  EXPECT_EQ(example->participation().client_fraction(), 0.3);
  EXPECT_EQ(example->clients().count(), 10);
}

TEST(ConfigTest, FedAuConfigsLoad) {
  for (const std::string name : {"bernoulli", "markov", "cyclic"}) {
    absl::StatusOr<v1::ExperimentConfig> c =
        LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/fedau_" + name + ".yaml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->clients().count(), 250) << name;
    EXPECT_EQ(c->local().max_steps(), 5) << name;
    EXPECT_EQ(c->local().batch_size(), 16) << name;
    EXPECT_EQ(c->clients().dirichlet_alpha(), 0.1) << name;
    EXPECT_EQ(c->participation().p_mean(), 0.1) << name;
    EXPECT_EQ(c->participation().p_min(), 0.02) << name;
    EXPECT_EQ(c->participation().probabilities(),
              v1::ParticipationConfig::PROBABILITIES_DATA_CORRELATED);
    EXPECT_EQ(c->algorithm().name(), v1::AlgorithmConfig::NAME_FEDAU);
  }
  absl::StatusOr<v1::ExperimentConfig> markov =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/fedau_markov.yaml");
  ASSERT_TRUE(markov.ok());
  EXPECT_EQ(markov->participation().markov_a(), 0.05);
  absl::StatusOr<v1::ExperimentConfig> cyclic =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/fedau_cyclic.yaml");
  ASSERT_TRUE(cyclic.ok());
  EXPECT_EQ(cyclic->participation().cycle_period(), 100);
}

TEST(ConfigTest, BoolSpellings) {
  for (const std::string t : {"true", "True", "yes", "on"}) {
    EXPECT_TRUE(LoadOrDie("eval: {train_loss: " + t + "}").eval().train_loss()) << t;
  }
  for (const std::string f : {"false", "FALSE", "no", "off"}) {
    EXPECT_FALSE(LoadOrDie("eval: {train_loss: " + f + "}").eval().train_loss()) << f;
  }
}

TEST(ConfigTest, YamlNullKeepsDefaults) {
  const v1::ExperimentConfig c = LoadOrDie(R"(
rounds:
local:
  lr:
  epochs: 3
eval:
distributed: ~
)");
  EXPECT_EQ(c.rounds(), 100);
  EXPECT_EQ(c.local().lr(), 0.05);
  EXPECT_EQ(c.local().epochs(), 3);
  EXPECT_EQ(c.eval().every(), 1);
  EXPECT_EQ(c.distributed().round_deadline_s(), 600.0);
  // Null is "not set" before defaults too.
  absl::StatusOr<v1::ExperimentConfig> raw = ParseConfigYaml("local:\n  lr:\n");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_FALSE(raw->local().has_lr());
}

TEST(ConfigTest, ParseDoesNotApplyDefaultsOrValidate) {
  absl::StatusOr<v1::ExperimentConfig> raw = ParseConfigYaml("local: {lr: -1}");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->local().lr(), -1.0);
  EXPECT_FALSE(raw->has_rounds());
  EXPECT_FALSE(ValidateConfig(*raw).ok());
}

TEST(ConfigTest, ApplyDefaultsIsIdempotent) {
  for (const std::string& yaml :
       {std::string(""), std::string("data: {source: fedprox_synthetic}"),
        std::string("local: {dp: {mode: clip, target_epsilon: 2}}"),
        std::string("data: {source: synthetic_least_squares}\nlocal: {lr: 0.3}"),
        std::string("clients: {count: 5, partition: shards}\nrounds: 2")}) {
    absl::StatusOr<v1::ExperimentConfig> parsed = ParseConfigYaml(yaml);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    v1::ExperimentConfig once = *parsed;
    ApplyDefaults(once);
    v1::ExperimentConfig twice = once;
    ApplyDefaults(twice);
    EXPECT_TRUE(MessageDifferencer::Equals(once, twice)) << yaml;
    EXPECT_TRUE(ValidateConfig(once).ok()) << yaml;
  }
}

TEST(ConfigTest, JsonRoundTripsToAnEqualMessage) {
  for (const std::string& yaml : {
           std::string(""),
           std::string(R"(
name: "round trip: with punctuation, \"quotes\" and unicode é"
seed: 18446744073709551615
rounds: 7
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 12, dim: 3, noise_std: 0.30000000000000004,
                  heterogeneity: 1e-300, test_examples: 9}
clients: {count: 4}
model: {l2: 0.1}
participation: {client_fraction: 0.3333333333333333}
algorithm: {server_lr: 0.7}
local: {epochs: 2, batch_size: 0, lr: 0.123456789012345678, max_steps: 5}
eval: {every: 2, train_loss: false}
runtime: {threads: 3}
distributed: {round_deadline_s: 1.5, min_workers: 2, start_timeout_s: 0.25,
              long_poll_s: 0.1, max_message_bytes: 2097152}
)"),
           std::string("data: {source: csv, train_file: a.csv, test_file: b.csv, "
                        "label_column: 0, has_header: true, classification: false}"),
           std::string("local: {dp: {mode: dicesgd, clip: 0.5, error_clip: 2, "
                        "target_epsilon: 3, delta: 1e-6, epsilon_budget: 4, "
                        "conversion: classical, max_order: 64, "
                        "fractional_orders: false}}"),
           std::string("local: {dp: {mode: clip, noise_multiplier: 0}}"),
       }) {
    const v1::ExperimentConfig original = LoadOrDie(yaml);
    const std::string json = ConfigToJson(original);
    const v1::ExperimentConfig reloaded = LoadOrDie(json);
    std::string diff;
    MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differencer.Compare(original, reloaded)) << diff << "\n" << json;
  }
}

TEST(ConfigTest, LoadConfigFileMissingIsNotFound) {
  absl::StatusOr<v1::ExperimentConfig> c =
      LoadConfigFile("/nonexistent/fedsim/config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/fedsim/config.yaml"));
}

TEST(ConfigTest, QuickstartConfigLoads) {
  absl::StatusOr<v1::ExperimentConfig> c =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/quickstart.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->clients().count(), 100);
  EXPECT_EQ(c->clients().partition(), v1::ClientsConfig::PARTITION_DIRICHLET);
  EXPECT_EQ(c->participation().client_fraction(), 0.1);
  EXPECT_EQ(c->model().objective(), v1::ModelConfig::OBJECTIVE_SOFTMAX);
}

}  // namespace
}  // namespace config_test
}  // namespace fedsim

namespace fedsim {
namespace config_test {
namespace {

TEST(ConfigTest, CheckpointIntervalDefaultsAndRules) {
  // At most one a second, rounds and asynchronous steps alike (issue 20: a
  // 1 ms round does not pay an fsync).
  EXPECT_EQ(LoadOrDie("").checkpoint().min_interval_s(), 1.0);
  EXPECT_EQ(LoadOrDie("algorithm: {name: fedfix}").checkpoint().min_interval_s(), 1.0);
  EXPECT_EQ(LoadOrDie("algorithm: {name: fedbuff}\ncheckpoint: {min_interval_s: 0}")
                .checkpoint()
                .min_interval_s(),
            0.0);
  EXPECT_EQ(LoadOrDie("checkpoint: {min_interval_s: 30}").checkpoint().min_interval_s(), 30.0);
  EXPECT_EQ(ErrorOf("checkpoint: {min_interval_s: -1}"),
            "config: checkpoint.min_interval_s = -1; must be >= 0");
  EXPECT_EQ(ErrorOf("checkpoint: {min_interval_s: .inf}"),
            "config: checkpoint.min_interval_s = '.inf'; must be a finite number");
}

TEST(ConfigTest, AsyncDefaultsAndRules) {
  const v1::ExperimentConfig d = LoadOrDie("algorithm: {name: fedfix}");
  EXPECT_EQ(d.algorithm().async_weights(), v1::AlgorithmConfig::ASYNC_WEIGHTS_WEIGHT);
  EXPECT_EQ(d.algorithm().importance(), v1::AlgorithmConfig::IMPORTANCE_UNIFORM);
  EXPECT_EQ(d.algorithm().window(), 0.5);
  EXPECT_EQ(d.algorithm().buffer_size(), 5);
  EXPECT_EQ(d.async().ticks_per_unit(), 1000000);
  EXPECT_EQ(d.async().compute_time(), v1::AsyncConfig::COMPUTE_TIME_FX);
  EXPECT_EQ(d.async().network_delay().kind(), v1::TimeDistribution::KIND_NONE);
  EXPECT_EQ(d.local().momentum(), 0.0);
  EXPECT_EQ(d.async().max_staleness(), 0);  // unbounded
  EXPECT_EQ(d.async().clock(), v1::AsyncConfig::CLOCK_VIRTUAL);
  EXPECT_EQ(d.rounds(), 100);  // no horizon: `rounds` steps
  // With a horizon the horizon ends the run, unless rounds is given.
  EXPECT_EQ(LoadOrDie("algorithm: {name: fedbuff}\nasync: {horizon: 50}").rounds(),
            2147483647);
  EXPECT_EQ(LoadOrDie("rounds: 7\nalgorithm: {name: fedbuff}\nasync: {horizon: 50}")
                .rounds(),
            7);
  EXPECT_EQ(LoadOrDie("async: {horizon: 50}").rounds(), 100);  // fedavg

  EXPECT_EQ(ErrorOf("algorithm: {name: fedbuff, buffer_size: 101}"),
            "config: algorithm.buffer_size = 101; must be <= clients.count = 100");
  EXPECT_EQ(ErrorOf("algorithm: {name: fedfix, window: 0}"),
            "config: algorithm.window = 0; must be > 0");
  EXPECT_THAT(ErrorOf("algorithm: {name: fedfix, window: 0.0000001}"),
              HasSubstr("algorithm.window = 1e-07; must be at least one tick"));
  EXPECT_THAT(ErrorOf("async: {fx_percent: 100}"),
              HasSubstr("async.fx_percent = 100; must be < 100"));
  EXPECT_THAT(ErrorOf("algorithm: {name: fedfix, staleness_scaling: true}"),
              HasSubstr("algorithm.staleness_scaling = true with algorithm.name = "
                        "fedfix; it is a FedBuff option"));
  EXPECT_THAT(ErrorOf("algorithm: {name: async_fedavg}\nlocal: {dp: {mode: clip}}"),
              HasSubstr("asynchronous algorithms do not support DP"));
  EXPECT_THAT(ErrorOf("algorithm: {name: fedfix}\nparticipation: {model: bernoulli}"),
              HasSubstr("participation.model is not uniform with algorithm.name = fedfix"));
  EXPECT_THAT(ErrorOf("async: {compute_time: trace}"), HasSubstr("async.trace_file is empty"));
  EXPECT_THAT(ErrorOf("async: {compute_time: gamma}"),
              HasSubstr("fx, exponential, log_normal, trace"));
  EXPECT_THAT(ErrorOf("async: {network_delay: {kind: constant, mean: 0}}"),
              HasSubstr("async.network_delay.mean = 0; must be > 0"));
  EXPECT_THAT(ErrorOf("local: {momentum: 1}"), HasSubstr("local.momentum = 1; must be < 1"));
  EXPECT_THAT(ErrorOf("local: {fresh_batches: true}"),
              HasSubstr("fresh batches need max_steps >= 1"));
  EXPECT_THAT(ErrorOf("algorithm: {async_weights: heavy}"),
              HasSubstr("identical, weight"));
  EXPECT_EQ(ErrorOf("async: {max_staleness: -1}"),
            "config: async.max_staleness = -1; must be >= 0");
  EXPECT_THAT(ErrorOf("async: {clock: sundial}"), HasSubstr("virtual, wall"));
}

TEST(ConfigTest, AsyncExampleConfigsLoad) {
  for (const std::string name : {"fedfix_fx", "fedbuff_lognormal", "async_fedavg_fx"}) {
    absl::StatusOr<v1::ExperimentConfig> c =
        LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/" + name + ".yaml");
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
    EXPECT_TRUE(IsAsyncAlgorithm(c->algorithm().name())) << name;
    EXPECT_GT(c->async().horizon(), 0.0) << name;
  }
  absl::StatusOr<v1::ExperimentConfig> dist =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/fedfix_distributed.yaml");
  ASSERT_TRUE(dist.ok()) << dist.status();
  EXPECT_EQ(dist->algorithm().name(), v1::AlgorithmConfig::NAME_FEDFIX);
  EXPECT_EQ(dist->async().max_staleness(), 2);
  absl::StatusOr<v1::ExperimentConfig> wall =
      LoadConfigFile(FEDSIM_SOURCE_DIR "/configs/fedfix_wall.yaml");
  ASSERT_TRUE(wall.ok()) << wall.status();
  EXPECT_EQ(wall->async().clock(), v1::AsyncConfig::CLOCK_WALL);
  EXPECT_EQ(wall->distributed().worker_slowdown_size(), 2);
}

// The declarative schema (options.proto's FieldRule on config.proto's
// fields): every declared default parses and lies in its field's range,
// every optional key has a default or says how it gets one, and a range
// violation is reported in the one-line form of every other rule.
namespace pb = ::google::protobuf;

void EveryField(const pb::Descriptor* d, const std::string& path,
                std::vector<std::pair<std::string, const pb::FieldDescriptor*>>& out) {
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string key = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      EveryField(f->message_type(), key, out);
    } else {
      out.emplace_back(key, f);
    }
  }
}

TEST(ConfigSchemaTest, EveryDeclaredDefaultIsAppliedAndInRange) {
  v1::ExperimentConfig c;
  c.mutable_lsa()->add_mdps();  // a repeated section's defaults too
  ApplyDefaults(c);
  EXPECT_EQ(c.lsa().mdps(0).gamma(), 0.95);
  v1::ExperimentConfig layers;
  layers.mutable_model()->add_layers();
  ApplyDefaults(layers);
  EXPECT_EQ(layers.model().layers(0).init(), v1::LayerConfig::INIT_TORCH);
  std::vector<std::pair<std::string, const pb::FieldDescriptor*>> fields;
  EveryField(v1::ExperimentConfig::descriptor(), "", fields);
  int declared = 0;
  for (const auto& [key, f] : fields) {
    const v1::FieldRule& rule = f->options().GetExtension(v1::field);
    if (rule.default_().empty()) continue;
    ++declared;
    EXPECT_FALSE(f->is_repeated()) << key << ": a default on a list";
    // The default parses as a value of its key (lists of sections aside:
    // lsa.mdps' gamma is checked above, model.layers' init below).
    if (key.rfind("lsa.mdps.", 0) == 0 || key.rfind("model.layers.", 0) == 0) continue;
    const std::vector<std::string> parts = absl::StrSplit(key, '.');
    std::string yaml;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) absl::StrAppend(&yaml, parts[i], ": {");
    absl::StrAppend(&yaml, parts.back(), ": ", rule.default_(),
                    std::string(parts.size() - 1, '}'));
    absl::StatusOr<v1::ExperimentConfig> parsed = ParseConfigYaml(yaml);
    EXPECT_TRUE(parsed.ok()) << key << " = " << rule.default_() << ": " << parsed.status();
  }
  EXPECT_GT(declared, 100);
  // The defaults of an empty config pass every range.
  EXPECT_TRUE(LoadConfigText("{}").ok()) << LoadConfigText("{}").status();
}

TEST(ConfigSchemaTest, EveryOptionalKeyHasADefaultOrSaysHowItGetsOne) {
  std::vector<std::pair<std::string, const pb::FieldDescriptor*>> fields;
  EveryField(v1::ExperimentConfig::descriptor(), "", fields);
  for (const auto& [key, f] : fields) {
    if (!f->has_presence() && f->cpp_type() != pb::FieldDescriptor::CPPTYPE_ENUM) continue;
    if (f->is_repeated()) continue;
    const v1::FieldRule& rule = f->options().GetExtension(v1::field);
    EXPECT_TRUE(!rule.default_().empty() || !rule.default_rule().empty())
        << key << " has neither a default nor a default_rule";
  }
}

TEST(ConfigSchemaTest, RangesAreReportedFromTheSchema) {
  EXPECT_EQ(ErrorOf("clients: {dirichlet_alpha: 0}"),
            "config: clients.dirichlet_alpha = 0; must be > 0");
  EXPECT_EQ(ErrorOf("distributed: {max_message_bytes: 5}"),
            "config: distributed.max_message_bytes = 5; must be >= 1048576");
  EXPECT_EQ(ErrorOf("runtime: {threads: 2000}"), "config: runtime.threads = 2000; must be <= 1024");
  EXPECT_EQ(ErrorOf("algorithm: {server_optimizer: {beta2: 1}}"),
            "config: algorithm.server_optimizer.beta2 = 1; must be < 1");
  EXPECT_EQ(ErrorOf("data: {source: lsa}\nlsa: {problem: td, mdps: [{gamma: 1}]}\n"
                    "clients: {count: 1}"),
            "config: lsa.mdps[0].gamma = 1; must be < 1");
  // A key that depends on others is checked only once set.
  EXPECT_EQ(ErrorOf("local: {dp: {mode: clip, noise_multiplier: -1}}"),
            "config: local.dp.noise_multiplier = -1; must be >= 0");
  EXPECT_TRUE(LoadConfigText("local: {dp: {mode: clip, target_epsilon: 3}}").ok());
}

}  // namespace
}  // namespace config_test
}  // namespace fedsim

namespace fedsim {
namespace config_test {
namespace {

TEST(LrScheduleConfigTest, SchedulesNeedSynchronousRoundsAndCosineNeedsLrMinBelowLr) {
  absl::StatusOr<v1::ExperimentConfig> ok =
      LoadConfigText("local: {lr: 0.1, lr_schedule: cosine, lr_min: 0.001}\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->local().lr_schedule(), v1::LocalConfig::LR_SCHEDULE_COSINE);
  EXPECT_EQ(LoadConfigText("{}")->local().lr_schedule(), v1::LocalConfig::LR_SCHEDULE_CONSTANT);
  absl::StatusOr<v1::ExperimentConfig> bad = LoadConfigText(
      "algorithm: {name: fedbuff}\nlocal: {lr_schedule: step}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              testing::HasSubstr("local.lr_schedule = step with algorithm.name = fedbuff; a "
                                 "schedule applies to the synchronous rounds"));
  bad = LoadConfigText("local: {lr: 0.1, lr_schedule: step, lr_min: 0.01}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              testing::HasSubstr("lr_min belongs to the cosine schedule"));
  bad = LoadConfigText("rounds: 1000\nlocal: {lr: 0.1, lr_schedule: step, lr_gamma: 0.1, "
                       "lr_step_rounds: 1}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), testing::HasSubstr("underflows to 0"));
  bad = LoadConfigText("local: {lr: 0.1, lr_schedule: cosine, lr_min: 0.1}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              testing::HasSubstr("local.lr_min = 0.1 with local.lr = 0.1; cosine annealing "
                                 "needs lr_min < lr"));
}

}  // namespace
}  // namespace config_test
}  // namespace fedsim

namespace fedsim {
namespace config_test {
namespace {

// --set overrides (fedsim run CONFIG --set KEY=VALUE): scalars, enums,
// nested sections, repeated fields and whole maps, each giving the config
// the file would give; unknown keys and bad values fail with the very line
// the file's own key or value would.
TEST(ConfigOverrideTest, OverridesAreReadAsTheFilesOwnKeys) {
  constexpr char kBase[] =
      "data: {source: synthetic_least_squares}\nclients: {count: 4}\nlocal: {lr: 0.5}\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"local.lr=0.1"}, "local: {lr: 0.1}\n"},                              // scalar
      {{"algorithm.name=fedprox", "algorithm.prox_mu=0.01"},                  // enum, new key
       "algorithm: {name: fedprox, prox_mu: 0.01}\n"},
      {{"local.dp.mode=clip", "local.dp.clip=2"},                             // nested section
       "local: {lr: 0.5, dp: {mode: clip, clip: 2}}\n"},
      {{"participation.probabilities=list", "participation.p=[0.5, 0.25, 1, 1]",
        "participation.model=bernoulli"},                                     // repeated
       "participation: {model: bernoulli, probabilities: list, p: [0.5, 0.25, 1, 1]}\n"},
      {{"local={epochs: 2, lr: 0.2}"}, "local: {epochs: 2, lr: 0.2}\n"},      // a map
      {{"local.lr=0.3", "local.lr=0.4"}, "local: {lr: 0.4}\n"},             // the last wins
  };
  for (const auto& [overrides, yaml] : cases) {
    absl::StatusOr<v1::ExperimentConfig> overridden = LoadConfigText(kBase, overrides);
    ASSERT_TRUE(overridden.ok()) << overridden.status();
    // The same keys written in the file (the base's own keys replaced).
    std::string file = "data: {source: synthetic_least_squares}\nclients: {count: 4}\n";
    if (yaml.rfind("local:", 0) != 0) file += "local: {lr: 0.5}\n";
    absl::StatusOr<v1::ExperimentConfig> written = LoadConfigText(file + yaml);
    ASSERT_TRUE(written.ok()) << written.status();
    EXPECT_EQ(ConfigToJson(*overridden), ConfigToJson(*written)) << absl::StrJoin(overrides, " ");
  }
  const auto error = [&](const std::vector<std::string>& overrides) {
    absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText(kBase, overrides);
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  EXPECT_EQ(error({"local.lr=-1"}), ErrorOf(std::string(kBase) + "local: {lr: -1}\n"));
  EXPECT_EQ(error({"local.lrr=1"}), ErrorOf(std::string(kBase) + "local: {lrr: 1}\n"));
  EXPECT_EQ(error({"algorithm.name=fedsgd"}),
            ErrorOf(std::string(kBase) + "algorithm: {name: fedsgd}\n"));
  EXPECT_EQ(error({"clients.count=[1, 2]"}),
            ErrorOf(std::string(kBase) + "clients: {count: [1, 2]}\n"));
  EXPECT_THAT(error({"local.lr"}), HasSubstr("--set local.lr: expected KEY=VALUE"));
  EXPECT_THAT(error({"local..lr=1"}), HasSubstr("--set local..lr=1: the key must be"));
  EXPECT_THAT(error({"local.lr.x=1"}), HasSubstr("--set local.lr.x=1: local.lr is a value"));
  EXPECT_THAT(error({"local.lr=[1"}), HasSubstr("--set local.lr=[1: the value is not valid YAML"));
  // An empty file takes overrides too.
  absl::StatusOr<v1::ExperimentConfig> empty = LoadConfigText("", {"rounds=7"});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->rounds(), 7);
}

}  // namespace
}  // namespace config_test
}  // namespace fedsim
