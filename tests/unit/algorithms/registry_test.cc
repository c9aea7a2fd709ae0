// The algorithm registry (algorithms/registry.h): every algorithm of the
// schema is registered once, its parts fit its family, and what the config
// code derives from the traits on the enum values (families, validation
// messages, client-state layouts) is what the hand-written lists said.
#include "algorithms/registry.h"

#include <set>
#include <string>

#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace {

using ::testing::HasSubstr;

std::vector<v1::AlgorithmConfig::Name> SchemaNames() {
  std::vector<v1::AlgorithmConfig::Name> names;
  const google::protobuf::EnumDescriptor* e = v1::AlgorithmConfig::Name_descriptor();
  for (int i = 0; i < e->value_count(); ++i) {
    const auto name = static_cast<v1::AlgorithmConfig::Name>(e->value(i)->number());
    if (name != v1::AlgorithmConfig::NAME_UNSPECIFIED) names.push_back(name);
  }
  return names;
}

TEST(AlgorithmRegistryTest, EveryAlgorithmOfTheSchemaIsRegisteredOnceWithTraits) {
  std::set<int> seen;
  for (const Algorithm* a : Algorithms()) {
    EXPECT_TRUE(seen.insert(a->name).second) << AlgorithmConfigName(a->name) << " twice";
  }
  for (const v1::AlgorithmConfig::Name name : SchemaNames()) {
    const std::string n = AlgorithmConfigName(name);
    absl::StatusOr<const Algorithm*> a = FindAlgorithm(name);
    ASSERT_TRUE(a.ok()) << n << ": " << a.status();
    EXPECT_EQ((*a)->name, name);
    EXPECT_NE(AlgorithmTraitsOf(name).family(), v1::AlgorithmTraits::FAMILY_UNSPECIFIED) << n;
  }
  EXPECT_EQ(seen.size(), SchemaNames().size());
  const absl::Status unknown = FindAlgorithm(v1::AlgorithmConfig::NAME_UNSPECIFIED).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "config: algorithm.name = unspecified is not a registered algorithm");
}

TEST(AlgorithmRegistryTest, PartsFitTheFamily) {
  for (const Algorithm* a : Algorithms()) {
    const std::string n = AlgorithmConfigName(a->name);
    const bool async = AlgorithmTraitsOf(a->name).family() == v1::AlgorithmTraits::FAMILY_ASYNC;
    EXPECT_EQ(a->make_strategy == nullptr, async) << n;
    EXPECT_NE(a->client_step, nullptr) << n;
    EXPECT_EQ(IsAsyncAlgorithm(a->name), async) << n;
  }
  EXPECT_EQ(AsyncSchemeOf(v1::AlgorithmConfig::NAME_FEDFIX), AsyncScheme::kFedFix);
  EXPECT_EQ(AsyncSchemeOf(v1::AlgorithmConfig::NAME_FEDBUFF), AsyncScheme::kFedBuff);
  EXPECT_EQ(AsyncSchemeOf(v1::AlgorithmConfig::NAME_CLOCK_FEDAVG), AsyncScheme::kSyncFedAvg);
  EXPECT_EQ(AsyncSchemeOf(v1::AlgorithmConfig::NAME_ASYNC_FEDAVG), AsyncScheme::kAsyncFedAvg);
}

v1::ExperimentConfig Resolved(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> c = ParseConfigYaml(yaml);
  EXPECT_TRUE(c.ok()) << c.status();
  ApplyDefaults(*c);
  return *c;
}

TEST(AlgorithmRegistryTest, ClientStateLayouts) {
  const std::int64_t d = 7;
  EXPECT_TRUE(ClientStateLayoutOf(Resolved("algorithm: {name: fedavg}"), d).empty());
  EXPECT_FALSE(ClientsKeepState(Resolved("algorithm: {name: fedau}")));
  EXPECT_EQ(ClientStateLayoutOf(Resolved("algorithm: {name: scaffold}"), d),
            (ClientStateLayout{{kScaffoldControl, d}}));
  EXPECT_EQ(ClientStateLayoutOf(Resolved("data: {source: lsa}\nalgorithm: {name: scafflsa}"), d),
            (ClientStateLayout{{kScaffLsaControl, d}, {kScaffLsaLastIterate, d},
                               {kScaffLsaLastRound, 1}}));
  EXPECT_EQ(ClientStateLayoutOf(
                Resolved("data: {source: lsa}\nlsa: {oracle: markov}\nalgorithm: {name: fedlsa}"), d),
            (ClientStateLayout{{kLsaMarkovState, 1}}));
  EXPECT_EQ(ClientStateLayoutOf(Resolved("local: {dp: {mode: dicesgd}}"), d),
            (ClientStateLayout{{kDiceSgdErrorBuffer, d}}));
  EXPECT_TRUE(ClientsKeepState(Resolved("local: {dp: {mode: dicesgd}}")));
}

// The lists in these messages come from the traits, in schema order.
TEST(AlgorithmRegistryTest, ValidationMessagesComeFromTheTraits) {
  const absl::Status robust = ValidateConfig(
      Resolved("algorithm: {name: scaffold}\naggregation: {rule: coordinate_median}"));
  EXPECT_EQ(robust.message(),
            "config: aggregation.rule = coordinate_median with algorithm.name = scaffold; robust "
            "rules replace the mean of fedavg and fedprox only (SCAFFOLD's control variates need "
            "the plain mean)");
  const absl::Status optimiser = ValidateConfig(
      Resolved("algorithm: {name: scaffold, server_optimizer: {kind: adam}}"));
  EXPECT_THAT(optimiser.message(),
              HasSubstr("server optimisers compose with fedavg, fedau, known_prob, "
                        "average_participating, average_all and fedprox"));
  const absl::Status prox = ValidateConfig(Resolved("algorithm: {name: fedavg, prox_mu: 0.1}"));
  EXPECT_THAT(prox.message(), HasSubstr("the proximal term belongs to fedprox"));
  const absl::Status dp =
      ValidateConfig(Resolved("algorithm: {name: fedprox}\nlocal: {dp: {mode: clip}}"));
  EXPECT_THAT(dp.message(), HasSubstr("DP local training does not support FedProx's proximal term"));
  const absl::Status clip = ValidateConfig(Resolved(
      "algorithm: {name: scaffold}\naggregation: {max_update_norm: 1, norm_bound_action: clip}"));
  EXPECT_THAT(clip.message(), HasSubstr("control-variate delta inconsistent"));
  EXPECT_TRUE(ValidateConfig(Resolved("algorithm: {name: fedavg}\naggregation: {max_update_norm: "
                                      "1, norm_bound_action: clip}"))
                  .ok());
}

// RunTask checks what every algorithm needs before its client step, and a
// client step refuses fields of another algorithm.
TEST(AlgorithmRegistryTest, RunTaskRefusesForeignTasks) {
  const v1::ExperimentConfig config = Resolved("clients: {count: 3}");
  absl::StatusOr<Experiment> e = BuildExperiment(config);
  ASSERT_TRUE(e.ok()) << e.status();
  absl::StatusOr<const Algorithm*> fedavg = FindAlgorithm(v1::AlgorithmConfig::NAME_FEDAVG);
  ASSERT_TRUE(fedavg.ok());
  Task t;
  t.id = TaskId(5);
  t.client = ClientId(3);
  t.params = std::make_shared<const FlatVector>(FlatVector::Zero(e->num_parameters()));
  EXPECT_THAT(RunTask(**fedavg, *e, 1, t, nullptr).status().message(),
              HasSubstr("task 5 names client 3; the experiment has 3 clients"));
  t.client = ClientId(1);
  EXPECT_TRUE(RunTask(**fedavg, *e, 1, t, nullptr).ok());
  t.scaffold = ScaffoldTaskFields{t.params, ScaffoldOption::kOptionII};
  EXPECT_THAT(RunTask(**fedavg, *e, 1, t, nullptr).status().message(),
              HasSubstr("carries SCAFFOLD's fields"));
  t.params = std::make_shared<const FlatVector>(FlatVector::Zero(e->num_parameters() + 1));
  EXPECT_THAT(RunTask(**fedavg, *e, 1, t, nullptr).status().message(),
              HasSubstr("parameters, expected"));
}

}  // namespace
}  // namespace fedsim
