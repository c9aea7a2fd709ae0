// Tests of server/strategy/stragglers (FedProx's systems heterogeneity):
// how many stragglers a round has, that dropping and keeping them follow
// the FedProx code, and that the draws are keyed and uniform.
#include <cstdint>
#include <map>
#include <vector>

#include "common/base/task.h"
#include "gtest/gtest.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/scaffold.h"
#include "server/strategy/stragglers.h"

namespace fedsim {
namespace stragglers_test {
namespace {

std::vector<ClientId> Ids(std::int64_t n, std::int64_t stride = 1) {
  std::vector<ClientId> ids;
  for (std::int64_t k = 0; k < n; ++k) ids.push_back(ClientId(k * stride));
  return ids;
}

TEST(StragglersTest, CountIsMMinusRoundedActive) {
  // FedProx's code keeps round(m (1 - s)) active clients.
  EXPECT_EQ(NumStragglers(10, 0.0), 0);
  EXPECT_EQ(NumStragglers(10, 0.5), 5);
  EXPECT_EQ(NumStragglers(10, 0.9), 9);  // 10 * 0.1 = 0.99999... -> 1 active
  EXPECT_EQ(NumStragglers(10, 1.0), 10);
  EXPECT_EQ(NumStragglers(3, 0.5), 1);   // 1.5 active rounds half up to 2
  EXPECT_EQ(NumStragglers(1, 0.4), 0);
  EXPECT_EQ(NumStragglers(1, 0.5), 0);   // 0.5 rounds up to 1 active
  EXPECT_EQ(NumStragglers(0, 0.5), 0);
}

TEST(StragglersTest, NoStragglersPlansEveryoneWithTheFullWork) {
  LocalTrainingSpec local;
  local.epochs = 20;
  const std::vector<ClientId> p = Ids(10, 3);
  const std::vector<TaskSpec> tasks = PlanWithStragglers({}, 4, p, local);
  ASSERT_EQ(tasks.size(), 10u);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    EXPECT_EQ(tasks[i].client, p[i]);
    EXPECT_EQ(tasks[i].local.epochs, 20);
  }
}

TEST(StragglersTest, DroppedStragglersGetNoTask) {
  LocalTrainingSpec local;
  local.epochs = 20;
  StragglerOptions options{0.9, false, 11};
  const std::vector<ClientId> p = Ids(10, 2);
  for (Round t = 0; t < 20; ++t) {
    const std::vector<TaskSpec> tasks = PlanWithStragglers(options, t, p, local);
    ASSERT_EQ(tasks.size(), 1u);
    EXPECT_EQ(tasks[0].local.epochs, 20);
  }
}

TEST(StragglersTest, KeptStragglersRunOneToEMinusOneEpochs) {
  LocalTrainingSpec local;
  local.epochs = 5;
  StragglerOptions options{0.5, true, 11};
  const std::vector<ClientId> p = Ids(10);
  std::map<int, int> epochs_seen;
  std::vector<int> straggled(10, 0);
  const int rounds = 4000;
  for (Round t = 0; t < rounds; ++t) {
    const std::vector<TaskSpec> tasks = PlanWithStragglers(options, t, p, local);
    ASSERT_EQ(tasks.size(), 10u);
    int partial = 0;
    for (const TaskSpec& task : tasks) {
      if (task.local.epochs < 5) {
        ++partial;
        ++straggled[task.client.value];
        ++epochs_seen[task.local.epochs];
        EXPECT_GE(task.local.epochs, 1);
      } else {
        EXPECT_EQ(task.local.epochs, 5);
      }
    }
    EXPECT_EQ(partial, 5) << "round " << t;
  }
  // Every participant straggles with probability 1/2 (binomial sd ~32), and
  // a straggler's epochs are uniform on {1, 2, 3, 4} (sd ~61 each).
  for (int k = 0; k < 10; ++k) EXPECT_NEAR(straggled[k], rounds / 2, 160) << k;
  ASSERT_EQ(epochs_seen.size(), 4u);
  for (const auto& [e, count] : epochs_seen) {
    EXPECT_NEAR(count, rounds * 5 / 4, 320) << "epochs " << e;
  }
}

TEST(StragglersTest, KeptStragglersWithMaxStepsRunFewerSteps) {
  LocalTrainingSpec local;
  local.max_steps = 3;
  StragglerOptions options{1.0, true, 2};
  std::map<std::int64_t, int> seen;
  for (Round t = 0; t < 200; ++t) {
    for (const TaskSpec& task : PlanWithStragglers(options, t, Ids(4), local)) {
      ++seen[task.local.max_steps];
    }
  }
  ASSERT_EQ(seen.size(), 2u);  // steps 1 and 2 only
  EXPECT_GT(seen[1], 300);
  EXPECT_GT(seen[2], 300);
}

TEST(StragglersTest, PlansAreKeyedBySeedAndRound) {
  LocalTrainingSpec local;
  local.epochs = 20;
  StragglerOptions options{0.5, true, 5};
  const std::vector<ClientId> p = Ids(10);
  const auto epochs = [&](std::uint64_t seed, Round t) {
    StragglerOptions o = options;
    o.seed = seed;
    std::vector<int> out;
    for (const TaskSpec& task : PlanWithStragglers(o, t, p, local)) {
      out.push_back(task.local.epochs);
    }
    return out;
  };
  EXPECT_EQ(epochs(5, 3), epochs(5, 3));
  EXPECT_NE(epochs(5, 3), epochs(5, 4));
  EXPECT_NE(epochs(5, 3), epochs(6, 3));
}

TEST(StragglersTest, FedAvgDropsAndFedProxKeeps) {
  LocalTrainingSpec local;
  local.epochs = 20;
  FedAvgOptions fedavg;
  fedavg.local = local;
  fedavg.stragglers = {0.5, false, 9};
  FedAvgOptions fedprox = fedavg;
  fedprox.fedprox = true;
  fedprox.local.prox_mu = 1.0;
  fedprox.stragglers.keep = true;
  FedAvg a(fedavg, std::vector<std::int64_t>(10, 5));
  FedAvg b(fedprox, std::vector<std::int64_t>(10, 5));
  EXPECT_EQ(b.name(), "FedProx");
  const std::vector<TaskSpec> ta = a.Plan(0, Ids(10));
  const std::vector<TaskSpec> tb = b.Plan(0, Ids(10));
  ASSERT_EQ(ta.size(), 5u);
  ASSERT_EQ(tb.size(), 10u);
  // The same clients straggle; FedAvg plans exactly the others.
  std::size_t j = 0;
  for (const TaskSpec& t : tb) {
    EXPECT_EQ(t.local.prox_mu, 1.0);
    if (t.local.epochs == 20) {
      ASSERT_LT(j, ta.size());
      EXPECT_EQ(ta[j++].client, t.client);
    }
  }
  EXPECT_EQ(j, ta.size());
}

}  // namespace
}  // namespace stragglers_test
}  // namespace fedsim
