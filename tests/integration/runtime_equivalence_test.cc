// One config and seed give bit-identical runs whatever the runtime: the
// embedded runtime on 1 and 2 threads, and coordinator + 3 worker
// processes over gRPC on loopback (`fedsim launch`).
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_config.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace runtime_equivalence_test {
namespace {

using test::ReadFile;
using test::Column;
using test::Hashes;

enum class Mode { kEmbedded, kLaunch };

std::string RunIt(const std::string& yaml, Mode mode, const std::string& name) {
  return test::RunConfig(yaml, ::testing::TempDir() + "/equiv_" + name,
                         mode == Mode::kEmbedded ? 0 : 3);
}

void ExpectIdentical(const std::string& a, const std::string& b) {
  const std::vector<std::string> ha = Hashes(a), hb = Hashes(b);
  ASSERT_FALSE(ha.empty());
  EXPECT_EQ(ha, hb) << a << " vs " << b;
  EXPECT_EQ(ReadFile(a + "/model.bin"), ReadFile(b + "/model.bin"));
}

constexpr char kSoftmax[] = R"(
seed: 7
rounds: 6
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
model: {objective: softmax}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 2, batch_size: 10, lr: 0.05}
)";

TEST(RuntimeEquivalenceTest, FedAvgIsBitIdenticalAcrossThreadsAndProcesses) {
  const std::string one = RunIt(absl::StrCat(kSoftmax, "runtime: {threads: 1}\n"),
                                Mode::kEmbedded, "fedavg_1");
  const std::string two = RunIt(absl::StrCat(kSoftmax, "runtime: {threads: 2}\n"),
                                Mode::kEmbedded, "fedavg_2");
  const std::string dist = RunIt(kSoftmax, Mode::kLaunch, "fedavg_dist");
  ExpectIdentical(one, two);
  ExpectIdentical(one, dist);
  // The runs did move the model.
  const std::vector<std::string> h = Hashes(one);
  EXPECT_NE(h.front(), h.back());
}

// model.precision float64 (the float32 default is the test above) is
// bit-identical across runtimes too, and a different model from float32's.
TEST(RuntimeEquivalenceTest, Float64FedAvgIsBitIdenticalAcrossThreadsAndProcesses) {
  std::string yaml = kSoftmax;
  const std::string model = "model: {objective: softmax}";
  ASSERT_NE(yaml.find(model), std::string::npos);
  yaml.replace(yaml.find(model), model.size(), "model: {objective: softmax, precision: float64}");
  const std::string two = RunIt(absl::StrCat(yaml, "runtime: {threads: 2}\n"),
                                Mode::kEmbedded, "fedavg64_2");
  const std::string dist = RunIt(yaml, Mode::kLaunch, "fedavg64_dist");
  ExpectIdentical(two, dist);
  const std::string float32 = RunIt(absl::StrCat(kSoftmax, "runtime: {threads: 2}\n"),
                                    Mode::kEmbedded, "fedavg32_2");
  EXPECT_NE(Hashes(two).back(), Hashes(float32).back());
}

// Client-contiguous rows (BuildExperiment's default) change where rows
// live, not which rows a client reads or in which order: against the
// files' order (keep_row_order, what bench_export_partition hands to the
// baselines), every client's j-th row has the same features and label.
TEST(RuntimeEquivalenceTest, ContiguousRowsAreTheSameRowsPerClient) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(
      "clients: {count: 50, partition: dirichlet, dirichlet_alpha: 0.5}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Experiment> moved = BuildExperiment(*config);
  absl::StatusOr<Experiment> kept = BuildExperiment(*config, "", /*keep_row_order=*/true);
  ASSERT_TRUE(moved.ok()) << moved.status();
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_EQ(moved->data.client_rows.size(), 50u);
  ASSERT_EQ(kept->data.client_rows.size(), 50u);
  std::int64_t next = 0;
  bool order_differs = false;
  for (std::size_t k = 0; k < 50; ++k) {
    const auto& m = moved->data.client_rows[k];
    const auto& o = kept->data.client_rows[k];
    ASSERT_EQ(m.size(), o.size()) << k;
    for (std::size_t j = 0; j < m.size(); ++j) {
      ASSERT_EQ(m[j], next++) << "client " << k << " is not one block";
      order_differs = order_differs || m[j] != o[j];
      ASSERT_EQ(moved->data.train.features.row(m[j]), kept->data.train.features.row(o[j]))
          << k << " " << j;
      ASSERT_EQ(moved->data.train.labels[m[j]], kept->data.train.labels[o[j]]) << k << " " << j;
    }
  }
  EXPECT_TRUE(order_differs);
  EXPECT_EQ(moved->data.test.features, kept->data.test.features);
}

// SCAFFLSA keeps control variates and a Markov chain's state per client:
// the coordinator owns them and sends them with the tasks (any worker
// serves any client), and the result is that of the embedded run.
constexpr char kScaffLsa[] = R"(
seed: 3
rounds: 20
data: {source: lsa}
clients: {count: 7}
algorithm: {name: scafflsa}
local: {lr: 0.1, max_steps: 10}
lsa: {problem: garnet, oracle: markov, kernel_heterogeneity: 10}
)";

TEST(RuntimeEquivalenceTest, ScaffLsaWithClientStateIsBitIdentical) {
  const std::string embedded = RunIt(kScaffLsa, Mode::kEmbedded, "scafflsa_e");
  const std::string dist = RunIt(kScaffLsa, Mode::kLaunch, "scafflsa_d");
  ExpectIdentical(embedded, dist);
}

// EXTENSION: SCAFFLSA with partial participation. The anchors travel down
// with the tasks (server_control), xi_c and the pending iterate with the
// client state.
constexpr char kScaffLsaPartial[] = R"(
seed: 4
rounds: 20
data: {source: lsa}
clients: {count: 7}
participation: {client_fraction: 0.5}
algorithm: {name: scafflsa}
local: {lr: 0.1, max_steps: 10}
lsa: {problem: garnet, oracle: markov, kernel_heterogeneity: 10}
)";

TEST(RuntimeEquivalenceTest, ScaffLsaPartialParticipationIsBitIdentical) {
  const std::string embedded = RunIt(kScaffLsaPartial, Mode::kEmbedded, "scafflsa_pp_e");
  const std::string dist = RunIt(kScaffLsaPartial, Mode::kLaunch, "scafflsa_pp_d");
  ExpectIdentical(embedded, dist);
  // m = round(0.5 * 7) = 4 of 7 agents took part in every round.
  EXPECT_EQ(Column(dist, "participants"),
            std::vector<std::string>(20, "4"));
}

// FedProx with its proximal term, kept stragglers (their epochs drawn from
// keyed streams) and a Yogi server optimiser.
constexpr char kFedProxYogi[] = R"(
seed: 11
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 1, beta: 1}}
clients: {count: 12, partition: natural, straggler_fraction: 0.5}
participation: {client_fraction: 0.5}
algorithm: {name: fedprox, prox_mu: 0.5, server_lr: 0.1, server_optimizer: {kind: yogi}}
local: {epochs: 3, batch_size: 10, lr: 0.02}
)";

TEST(RuntimeEquivalenceTest, FedProxWithStragglersAndYogiIsBitIdentical) {
  const std::string one = RunIt(absl::StrCat(kFedProxYogi, "runtime: {threads: 1}\n"),
                                Mode::kEmbedded, "fedprox_1");
  const std::string two = RunIt(absl::StrCat(kFedProxYogi, "runtime: {threads: 2}\n"),
                                Mode::kEmbedded, "fedprox_2");
  const std::string dist = RunIt(kFedProxYogi, Mode::kLaunch, "fedprox_dist");
  ExpectIdentical(one, two);
  ExpectIdentical(one, dist);
  const std::vector<std::string> h = Hashes(one);
  EXPECT_NE(h.front(), h.back());
}

// SCAFFOLD keeps c_i per client (travelling with its tasks and results) and
// sends c and Delta c_i over the wire; partial participation and kept
// stragglers.
constexpr char kScaffold[] = R"(
seed: 5
rounds: 6
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 10, partition: natural, straggler_fraction: 0.3}
participation: {client_fraction: 0.6}
algorithm: {name: scaffold, scaffold_option: i, server_lr: 1, keep_stragglers: true}
local: {epochs: 2, batch_size: 10, lr: 0.02}
)";

TEST(RuntimeEquivalenceTest, ScaffoldWithClientStateIsBitIdentical) {
  const std::string one = RunIt(absl::StrCat(kScaffold, "runtime: {threads: 2}\n"),
                                Mode::kEmbedded, "scaffold_e");
  const std::string dist = RunIt(kScaffold, Mode::kLaunch, "scaffold_d");
  ExpectIdentical(one, dist);
  const std::vector<std::string> h = Hashes(one);
  EXPECT_NE(h.front(), h.back());
}

// The same with 1024-byte chunks: d = 610, so the parameters, c, Delta c_i,
// the update and the client state (c_i) all travel in chunks both ways.
TEST(RuntimeEquivalenceTest, ScaffoldWithChunkedClientStateIsBitIdentical) {
  const std::string one = RunIt(kScaffold, Mode::kEmbedded, "scaffold_chunk_e");
  const std::string dist = RunIt(absl::StrCat(kScaffold, "distributed: {chunk_bytes: 1024}\n"),
                                 Mode::kLaunch, "scaffold_chunk_d");
  ExpectIdentical(one, dist);
  EXPECT_EQ(ReadFile(dist + "/events.jsonl").find("chunk_rejected"), std::string::npos);
}

// A robust rule with Byzantine clients (docs/robust.md): the attack is
// applied by the round engine as results arrive (Gaussian draws from keyed
// streams), updates over the norm bound are clipped, and Multi-Krum picks
// its updates in client-id order: the same bits whatever the runtime.
constexpr char kRobust[] = R"(
seed: 13
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 2, batch_size: 10, lr: 0.05}
aggregation: {rule: multi_krum, byzantine: 1, max_update_norm: 20, norm_bound_action: clip}
adversary: {fraction: 0.25, attack: gaussian, scale: 3}
)";

TEST(RuntimeEquivalenceTest, RobustRuleWithByzantineClientsIsBitIdentical) {
  const std::string one = RunIt(absl::StrCat(kRobust, "runtime: {threads: 1}\n"),
                                Mode::kEmbedded, "robust_1");
  const std::string two = RunIt(absl::StrCat(kRobust, "runtime: {threads: 2}\n"),
                                Mode::kEmbedded, "robust_2");
  const std::string dist = RunIt(kRobust, Mode::kLaunch, "robust_dist");
  ExpectIdentical(one, two);
  ExpectIdentical(one, dist);
  const std::vector<std::string> h = Hashes(one);
  EXPECT_NE(h.front(), h.back());
  // The attack and the clipping did happen.
  const std::string events = ReadFile(one + "/events.jsonl");
  EXPECT_NE(events.find("\"byzantine_clients\""), std::string::npos);
  EXPECT_NE(events.find("\"update_clipped\""), std::string::npos);
}

}  // namespace
}  // namespace runtime_equivalence_test
}  // namespace fedsim
