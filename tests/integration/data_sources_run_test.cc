// Whole runs on the data formats of docs/data.md, generated in their exact
// formats: a FEMNIST-shaped LEAF set with leaf_cnn_femnist and its natural
// clients, CIFAR-10 binaries with a CNN, normalisation and augmentation
// (crops and flips drawn from the tasks' streams), and memory-mapped .npy
// arrays with a client_train column, each ending on the same model_hash
// column embedded (1 and 2 threads) and over worker processes.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/data_files.h"
#include "tests/testing/run_config.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace data_sources_run_test {
namespace {

namespace fs = std::filesystem;
using test::Events;
using test::Hashes;

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/data_sources_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string RunIt(const std::string& yaml, const std::string& name, int workers, int threads) {
  return test::RunConfig(absl::StrCat(yaml, "runtime: {threads: ", threads, "}\n"),
                         ::testing::TempDir() + "/data_sources_run_" + name, workers);
}

std::vector<std::string> HashesOf(const std::string& yaml, const std::string& name, int workers,
                                  int threads) {
  return Hashes(RunIt(yaml, name, workers, threads));
}

// Returns the run directory of the embedded one-thread run.
std::string ExpectSameEverywhere(const std::string& yaml, const std::string& name, int workers) {
  const std::string dir = RunIt(yaml, name + "_1", 0, 1);
  const std::vector<std::string> one = Hashes(dir);
  EXPECT_FALSE(one.empty());
  if (one.empty()) return dir;
  EXPECT_NE(one.front(), one.back()) << "the run did not move the model";
  EXPECT_EQ(HashesOf(yaml, name + "_2", 0, 2), one);
  EXPECT_EQ(HashesOf(yaml, name + "_dist", workers, 1), one);
  return dir;
}

// Four FEMNIST writers of 3 to 6 images in two training files, each with
// one test image (LEAF's split by samples).
std::string FemnistDir() {
  const std::string dir = Dir("femnist");
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/test");
  std::vector<std::string> users;
  std::vector<nlohmann::json> xs, ys, test_xs, test_ys;
  for (int u = 0; u < 4; ++u) {
    users.push_back(absl::StrCat("f", 1000 + u, "_", u));
    xs.push_back(test::LeafPixels(3 + u, u));
    nlohmann::json y = nlohmann::json::array();
    for (int i = 0; i < 3 + u; ++i) y.push_back((u * 17 + i * 5) % 62);
    ys.push_back(y);
    test_xs.push_back(test::LeafPixels(1, 40 + u));
    test_ys.push_back(nlohmann::json::array({u * 11 % 62}));
  }
  test::WriteBytes(dir + "/train/a.json",
                   test::LeafFile({users[0], users[1]}, {xs[0], xs[1]}, {ys[0], ys[1]}).dump());
  test::WriteBytes(dir + "/train/b.json",
                   test::LeafFile({users[2], users[3]}, {xs[2], xs[3]}, {ys[2], ys[3]}).dump());
  test::WriteBytes(dir + "/test/a.json", test::LeafFile(users, test_xs, test_ys).dump());
  return dir;
}

// leaf_cnn_femnist (6.6 M parameters) in the release build; under the
// sanitizers (-O1, about 20 times slower) a small CNN on the same files,
// so the loader and the run still go through them.
#if defined(__SANITIZE_ADDRESS__)
constexpr char kFemnistModel[] = R"(model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, out: 2, kernel: 5, same: true}
    - {type: relu}
    - {type: maxpool2d, kernel: 4}
    - {type: flatten}
    - {type: linear, out: 62}
)";
#else
constexpr char kFemnistModel[] = "model: {architecture: leaf_cnn_femnist}\n";
#endif

TEST(DataSourcesRunTest, LeafFemnistWithItsWritersAsClientsIsBitIdenticalAcrossRuntimes) {
  const std::string yaml = absl::StrCat(R"(
seed: 4
rounds: 2
data: {source: leaf, path: ')", FemnistDir(), R"(', num_classes: 62}
)", kFemnistModel, R"(participation: {client_fraction: 0.5}
local: {epochs: 1, batch_size: 2, lr: 0.02}
checkpoint: {every: 0}
)");
  const std::string dir = ExpectSameEverywhere(yaml, "femnist", 2);
  const std::vector<nlohmann::json> start = Events(dir, "run_start");
  ASSERT_EQ(start.size(), 1u);
  EXPECT_EQ(start[0]["clients"], 4);
  EXPECT_EQ(start[0]["train_rows"], 3 + 4 + 5 + 6);
  EXPECT_EQ(start[0]["test_rows"], 4);
}

// CIFAR-10's binary format: 48 training and 16 test images.
std::string CifarDir() {
  const std::string dir = Dir("cifar");
  std::string train, test;
  for (int i = 0; i < 48; ++i) train += test::CifarRecord(0, 0, (i * 3) % 10, false, i * 13);
  for (int i = 0; i < 16; ++i) test += test::CifarRecord(0, 0, (i * 7) % 10, false, 500 + i);
  test::WriteBytes(dir + "/data_batch_1.bin", train.substr(0, 3073 * 30));
  test::WriteBytes(dir + "/data_batch_2.bin", train.substr(3073 * 30));
  test::WriteBytes(dir + "/test_batch.bin", test);
  return dir;
}

constexpr char kCifarCnn[] = R"(
rounds: 3
clients: {count: 4}
participation: {client_fraction: 0.5}
model:
  input_shape: [3, 32, 32]
  layers:
    - {type: conv2d, out: 4, kernel: 3, padding: 1}
    - {type: relu}
    - {type: maxpool2d, kernel: 4}
    - {type: flatten}
    - {type: linear, out: 10}
local: {epochs: 1, batch_size: 6, lr: 0.05, augment: {crop_padding: 4, horizontal_flip: true}}
)";

TEST(DataSourcesRunTest, AugmentedCifarCnnIsBitIdenticalAcrossRuntimes) {
  const std::string data = absl::StrCat(
      "seed: 6\ndata: {source: cifar10, path: '", CifarDir(),
      "', normalize_mean: [0.49, 0.48, 0.45], normalize_std: [0.25, 0.24, 0.26]}\n");
  const std::string yaml = data + kCifarCnn;
  ExpectSameEverywhere(yaml, "cifar", 3);
  // Augmentation changes the trajectory; the same run without it differs.
  std::string plain = yaml;
  plain.replace(plain.find(", augment: {crop_padding: 4, horizontal_flip: true}"),
                std::string(", augment: {crop_padding: 4, horizontal_flip: true}").size(), "");
  EXPECT_NE(HashesOf(plain, "cifar_plain", 0, 1).back(),
            HashesOf(yaml, "cifar_again", 0, 1).back());
}

// A folder of .npy arrays: float32 features read in place from their
// mapping, a client_train column of 5 clients with uneven sizes.
std::string NpyDir() {
  const std::string dir = Dir("npy");
  const std::int64_t n = 90, t = 30, d = 12;
  std::vector<float> x(static_cast<std::size_t>(n * d)), xt(static_cast<std::size_t>(t * d));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n)), yt(static_cast<std::size_t>(t));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    y[static_cast<std::size_t>(i)] = (i * 7) % 3;
    // Clients of 10, 15, 20, 25 and 20 rows, interleaved ((7 i) mod 90
    // runs over every row once).
    const std::int64_t j = (i * 7) % 90;
    ids[static_cast<std::size_t>(i)] =
        static_cast<std::int32_t>(100 + (j < 10 ? 0 : j < 25 ? 1 : j < 45 ? 2 : j < 70 ? 3 : 4));
    for (std::int64_t k = 0; k < d; ++k) {
      x[static_cast<std::size_t>(i * d + k)] =
          static_cast<float>(((i * 31 + k * 7) % 23) / 11.0 - 1.0 + 0.5 * (k % 3 == y[static_cast<std::size_t>(i)]));
    }
  }
  for (std::int64_t i = 0; i < t; ++i) {
    yt[static_cast<std::size_t>(i)] = i % 3;
    for (std::int64_t k = 0; k < d; ++k) {
      xt[static_cast<std::size_t>(i * d + k)] = static_cast<float>(((i * 17 + k * 5) % 19) / 9.0 - 1.0);
    }
  }
  test::WriteNpy(dir + "/x_train.npy", "<f4", {n, d}, x);
  test::WriteNpy(dir + "/y_train.npy", "<i8", {n}, y);
  test::WriteNpy(dir + "/x_test.npy", "<f4", {t, d}, xt);
  test::WriteNpy(dir + "/y_test.npy", "<i8", {t}, yt);
  test::WriteNpy(dir + "/client_train.npy", "<i4", {n}, ids);
  return dir;
}

TEST(DataSourcesRunTest, MappedNpyWithNaturalClientsIsBitIdenticalAcrossRuntimes) {
  const std::string yaml = absl::StrCat("seed: 9\nrounds: 4\ndata: {source: npy, path: '",
                                        NpyDir(), R"('}
clients: {partition: natural}
participation: {client_fraction: 0.6}
local: {epochs: 2, batch_size: 4, lr: 0.1}
)");
  const std::string dir = ExpectSameEverywhere(yaml, "npy", 2);
  const std::vector<nlohmann::json> start = Events(dir, "run_start");
  ASSERT_EQ(start.size(), 1u);
  EXPECT_EQ(start[0]["clients"], 5);
  EXPECT_EQ(start[0]["train_rows"], 90);
}

}  // namespace
}  // namespace data_sources_run_test
}  // namespace fedsim
