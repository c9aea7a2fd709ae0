// FedVARP and MIFA run through the registry, the round engine and both
// runtimes' shared drive loop (docs/fedvarp_mifa.md §4-5), on the
// least-squares problem of fedavg_exact_test: 4 clients of 40 rows each
// (equal n_k), one full-batch local step, so a client's update is
// deterministic, Delta_n(x) = -lr grad F_n(x).
#include <string>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "runtime/embedded.h"
#include "server/coordinator/checkpoint_policy.h"
#include "server/coordinator/run_builder.h"

namespace fedsim {
namespace fedvarp_mifa_run_test {
namespace {

std::string Config(const std::string& algorithm, const std::string& participation,
                   int rounds, double lr = 0.2) {
  return absl::StrCat(R"(
seed: 5
rounds: )", rounds, R"(
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 40, dim: 6, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: )", participation, R"(
algorithm: {name: )", algorithm, R"(, server_lr: 1}
local: {epochs: 1, batch_size: 0, lr: )", lr, R"(}
checkpoint: {every: 0}
runtime: {threads: 2}
)");
}

FlatVector FinalModel(const std::string& yaml, const std::string& name) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, ::testing::TempDir() + "/" + name, "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(RunEmbedded(*run).ok());
  return run->engine->model();
}

// §5: with every client in every round, MIFA is FedAvg with weights 1/N.
// fedsim's FedAvg weighs by n_k / m; with equal n_k and N = 4 the weights
// are exactly 1/4, and MIFA's (sum y_n) / 4 is FedAvg's sum (1/4) Delta_n
// bit for bit (scaling by a power of two is exact). FedVARP's
// mean (Delta - y) + mean y equals it up to rounding.
TEST(FedVarpMifaRunTest, FullParticipationIsEqualWeightFedAvg) {
  const std::string all = "{client_fraction: 1}";
  const FlatVector fedavg = FinalModel(Config("fedavg", all, 30), "full_fedavg");
  const FlatVector mifa = FinalModel(Config("mifa", all, 30), "full_mifa");
  const FlatVector fedvarp = FinalModel(Config("fedvarp", all, 30), "full_fedvarp");
  EXPECT_EQ(mifa, fedavg) << "mifa   " << mifa.transpose() << "\nfedavg " << fedavg.transpose();
  EXPECT_LT((fedvarp - fedavg).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_NE(fedvarp, FlatVector::Zero(fedvarp.size()));
}

// §4.1: under heterogeneous Bernoulli participation (p = 0.1 ... 0.9) both
// reach the exact fixed point of full-participation equal-weight FedAvg,
// the zero of sum_n grad F_n: here (equal n_k, one step) the pooled
// least-squares optimum, in closed form. average_participating, the mean
// over the round's participants, stays biased towards the frequent
// clients.
TEST(FedVarpMifaRunTest, HeterogeneousParticipationReachesTheUnbiasedFixedPoint) {
  const std::string yaml = Config("fedavg", "{client_fraction: 1}", 1);
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Experiment> e = BuildExperiment(*config);
  ASSERT_TRUE(e.ok()) << e.status();
  const Eigen::MatrixXd x = e->data.train.features.cast<double>();
  const Eigen::VectorXd opt =
      (x.transpose() * x).ldlt().solve(x.transpose() * e->data.train.labels);

  // A smaller step than FedAvg's: stale updates of rare clients make the
  // memory methods unstable sooner (§4.1, stability).
  constexpr double kLr = 0.05;
  const std::string bernoulli =
      "{model: bernoulli, probabilities: list, p: [0.1, 0.3, 0.6, 0.9]}";
  for (const std::string algorithm : {"mifa", "fedvarp"}) {
    const FlatVector w =
        FinalModel(Config(algorithm, bernoulli, 3000, kLr), "het_" + algorithm);
    EXPECT_LT((w - opt).norm(), 1e-9 * (1 + opt.norm())) << algorithm;
  }
  const FlatVector biased =
      FinalModel(Config("average_participating", bernoulli, 3000, kLr), "het_average_participating");
  EXPECT_GT((biased - opt).norm(), 1e-3) << "average_participating is biased";
}

// What composes with them is read from their traits (config.proto).
TEST(FedVarpMifaRunTest, ConfigRefusesWhatDoesNotCompose) {
  for (const std::string algorithm : {"fedvarp", "mifa"}) {
    const std::string base = Config(algorithm, "{client_fraction: 1}", 1);
    EXPECT_TRUE(LoadConfigText(base).ok()) << algorithm;
    const absl::Status robust =
        LoadConfigText(base + "aggregation: {rule: coordinate_median}\n").status();
    EXPECT_NE(robust.message().find("robust rules replace the mean of fedavg and fedprox only"),
              std::string::npos)
        << robust;
    const absl::Status optimiser = LoadConfigText(
        absl::StrCat(base, "algorithm: {name: ", algorithm,
                     ", server_optimizer: {kind: adam}}\n")).status();
    EXPECT_FALSE(optimiser.ok()) << algorithm;
    const absl::Status stragglers =
        LoadConfigText(base + "clients: {count: 4, partition: natural, straggler_fraction: "
                              "0.5}\n").status();
    EXPECT_NE(stragglers.message().find(absl::StrCat(
                  "clients.straggler_fraction = 0.5 with algorithm.name = ", algorithm,
                  "; stragglers are simulated for")),
              std::string::npos)
        << stragglers;
    absl::StatusOr<v1::ExperimentConfig> resolved =
        LoadConfigText(Config(algorithm, "{client_fraction: 1}", 1) + "checkpoint: {every: 1}\n");
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    EXPECT_EQ(resolved->checkpoint().min_interval_s(), 1.0) << algorithm;
  }
}

// A checkpoint holds the N d memory; one that could not fit in a protobuf
// message is refused before the run computes anything (here with a limit
// of 200 bytes: MIFA's state is 4 x 6 values and 24 bytes, the model 6).
TEST(FedVarpMifaRunTest, ACheckpointTooLargeIsRefusedAtTheStart) {
  absl::StatusOr<v1::ExperimentConfig> config =
      LoadConfigText(Config("mifa", "{client_fraction: 1}", 1) + "checkpoint: {every: 1}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, ::testing::TempDir() + "/too_large", "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(CheckCheckpointSize(*run, 264).ok());
  const absl::Status refused = CheckCheckpointSize(*run, 263);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(),
            "config: checkpoint.every = 1; a checkpoint of this run would hold 264 bytes (the "
            "model 48 bytes, the strategy's state 216 bytes, the clients' states 0 bytes), over "
            "the 263 bytes one checkpoint can hold: use fewer clients or parameters, or turn "
            "checkpoints off (checkpoint.every: 0)");
  config->mutable_checkpoint()->set_every(0);
  absl::StatusOr<CoordinatorRun> off =
      PrepareRun(*config, ::testing::TempDir() + "/too_large_off", "embedded");
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(CheckCheckpointSize(*off, 1).ok());
}

}  // namespace
}  // namespace fedvarp_mifa_run_test
}  // namespace fedsim
