// Config keys `aggregation` and `adversary` (docs/robust.md): defaults, and
// one-line errors naming key, value and rule for every precondition and
// refused combination.
#include <string>

#include "absl/status/status.h"
#include "common/config/config.h"
#include "fedsim/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace robust_config_test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string RobustErrorOf(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_FALSE(config.ok()) << "accepted:\n" << yaml;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(config.status().message());
  EXPECT_THAT(message, StartsWith("config: "));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  return message;
}

TEST(RobustConfigTest, DefaultsAreTheMeanWithoutBoundOrAdversary) {
  absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->aggregation().rule(), v1::AggregationConfig::RULE_MEAN);
  EXPECT_EQ(c->aggregation().trim_fraction(), 0.1);
  EXPECT_EQ(c->aggregation().byzantine(), 0);
  EXPECT_EQ(c->aggregation().multi_krum_m(), 0);
  EXPECT_EQ(c->aggregation().max_update_norm(), 0.0);
  EXPECT_EQ(c->aggregation().norm_bound_action(),
            v1::AggregationConfig::NORM_BOUND_ACTION_REJECT);
  EXPECT_EQ(c->adversary().fraction(), 0.0);
  EXPECT_EQ(c->adversary().attack(), v1::AdversaryConfig::ATTACK_SIGN_FLIP);
  EXPECT_EQ(c->adversary().scale(), 100.0);
}

TEST(RobustConfigTest, AcceptsRulesWhosePreconditionsHold) {
  // Cohort 10 of 10 clients: Krum f = 3 needs 9, Bulyan f = 1 needs 7.
  const std::string base =
      "clients: {count: 10}\nparticipation: {client_fraction: 1.0}\n";
  for (const char* agg :
       {"{rule: coordinate_median}", "{rule: trimmed_mean, trim_fraction: 0.49}",
        "{rule: krum, byzantine: 3}", "{rule: multi_krum, byzantine: 3, multi_krum_m: 7}",
        "{rule: bulyan, byzantine: 1}", "{max_update_norm: 10, norm_bound_action: clip}"}) {
    absl::StatusOr<v1::ExperimentConfig> c =
        LoadConfigText(base + "aggregation: " + agg + "\nadversary: {fraction: 0.2}\n");
    EXPECT_TRUE(c.ok()) << agg << ": " << c.status();
  }
}

TEST(RobustConfigTest, PreconditionsAgainstTheCohortAreConfigErrors) {
  const std::string base = "clients: {count: 10}\nparticipation: {client_fraction: 0.5}\n";
  EXPECT_EQ(RobustErrorOf(base + "aggregation: {rule: krum, byzantine: 2}"),
            "config: aggregation.rule = krum with aggregation.byzantine = 2 needs at "
            "least 7 results a round, more than the cohort "
            "round(participation.client_fraction N) = 5 (n >= 2f + 3)");
  EXPECT_THAT(RobustErrorOf(base + "aggregation: {rule: bulyan, byzantine: 1}"),
              HasSubstr("needs at least 7 results a round"));
  EXPECT_THAT(RobustErrorOf(base + "aggregation: {rule: multi_krum, byzantine: 1, "
                                   "multi_krum_m: 5}"),
              HasSubstr("aggregation.multi_krum_m = 5; must be <= n - f = 4"));
  EXPECT_THAT(RobustErrorOf("aggregation: {rule: trimmed_mean, trim_fraction: 0.5}"),
              HasSubstr("aggregation.trim_fraction = 0.5; must be < 0.5"));
  EXPECT_THAT(RobustErrorOf("aggregation: {byzantine: -1}"),
              HasSubstr("aggregation.byzantine = -1; must be >= 0"));
  EXPECT_THAT(RobustErrorOf("aggregation: {rule: coordinate_median, byzantine: 1}"),
              HasSubstr("f is a parameter of krum, multi_krum and bulyan"));
  EXPECT_THAT(RobustErrorOf("aggregation: {max_update_norm: -1}"),
              HasSubstr("aggregation.max_update_norm = -1; must be >= 0"));
  // Dropped stragglers count against the cohort: 10 - round(10 * 0.5) = 5.
  EXPECT_THAT(RobustErrorOf("clients: {count: 10, straggler_fraction: 0.5}\n"
                            "participation: {client_fraction: 1}\n"
                            "aggregation: {rule: krum, byzantine: 2}"),
              HasSubstr("needs at least 7 results a round, more than the cohort "
                        "round(participation.client_fraction N) = 10 less its dropped "
                        "stragglers = 5 (n >= 2f + 3)"));
  // Other participation models: the bound is clients.count.
  EXPECT_THAT(RobustErrorOf("clients: {count: 4}\nparticipation: {model: bernoulli}\n"
                            "aggregation: {rule: krum, byzantine: 1}"),
              HasSubstr("more than clients.count = 4"));
}

TEST(RobustConfigTest, RefusesCombinationsThatMakeNoSense) {
  EXPECT_THAT(RobustErrorOf("algorithm: {name: scaffold}\naggregation: {rule: krum}"),
              HasSubstr("aggregation.rule = krum with algorithm.name = scaffold; robust "
                        "rules replace the mean of fedavg and fedprox only (SCAFFOLD"));
  EXPECT_THAT(RobustErrorOf("algorithm: {name: fedau}\naggregation: {rule: coordinate_median}"),
              HasSubstr("FedAU's weights would be ignored"));
  EXPECT_THAT(RobustErrorOf("algorithm: {name: fedbuff}\naggregation: {rule: trimmed_mean}"),
              HasSubstr("asynchronous steps"));
  EXPECT_THAT(RobustErrorOf("data: {source: lsa}\nlocal: {max_steps: 5}\n"
                            "aggregation: {rule: coordinate_median}"),
              HasSubstr("LSA's analysis needs the plain mean"));
  EXPECT_THAT(RobustErrorOf("algorithm: {name: scaffold}\n"
                            "aggregation: {max_update_norm: 1, norm_bound_action: zero}"),
              HasSubstr("aggregation.norm_bound_action = zero with algorithm.name = scaffold"));
  EXPECT_THAT(RobustErrorOf("algorithm: {name: async_fedavg}\nadversary: {fraction: 0.1}"),
              HasSubstr("Byzantine clients are simulated in synchronous rounds only"));
  EXPECT_THAT(RobustErrorOf("adversary: {fraction: 0.1, clients: [1]}"),
              HasSubstr("both set"));
  EXPECT_THAT(RobustErrorOf("clients: {count: 10}\nadversary: {clients: [3, 10]}"),
              HasSubstr("adversary.clients[1] = 10; must be < clients.count = 10"));
  EXPECT_THAT(RobustErrorOf("adversary: {fraction: 1.5}"),
              HasSubstr("adversary.fraction = 1.5; must be <= 1"));
}

}  // namespace
}  // namespace robust_config_test
}  // namespace fedsim
