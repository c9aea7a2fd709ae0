// The row cache file (common/data/row_cache.h): what is written is what is
// mapped, the rows stay in the file's mapping, and a file that is not a
// whole cache for the key asked for is refused with a reason.
#include "common/data/row_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace fedsim {
namespace {

const std::string kKey(64, 'a');

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/row_cache_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

FederatedData Sample(bool with_optimum) {
  FederatedData d;
  d.train.features.resize(7, 3);
  for (int i = 0; i < 21; ++i) d.train.features.data()[i] = 0.25f * static_cast<float>(i) - 1.f;
  d.train.labels.resize(7);
  d.train.labels << 0, 1, 2, 1, 0, 2, 2;
  d.train.num_classes = 3;
  d.test.features.resize(2, 3);
  d.test.features << 1.5f, -2.f, 3.f, 0.f, 1e-7f, -1e30f;
  d.test.labels.resize(2);
  d.test.labels << 2, 0;
  d.test.num_classes = 3;
  d.client_rows = {{0, 1, 2}, {}, {3, 4, 5, 6}, {6}};
  d.eval_rows = {1, 5};
  if (with_optimum) {
    d.optimum = Eigen::VectorXd(2);
    *d.optimum << 0.5, -0.25;
  }
  return d;
}

void ExpectSame(const FederatedData& a, const FederatedData& b) {
  EXPECT_EQ(a.train.rows(), b.train.rows());
  EXPECT_EQ(a.train.labels, b.train.labels);
  EXPECT_EQ(a.train.num_classes, b.train.num_classes);
  EXPECT_EQ(a.test.rows(), b.test.rows());
  EXPECT_EQ(a.test.labels, b.test.labels);
  EXPECT_EQ(a.test.num_classes, b.test.num_classes);
  EXPECT_EQ(a.client_rows, b.client_rows);
  EXPECT_EQ(a.eval_rows, b.eval_rows);
  ASSERT_EQ(a.optimum.has_value(), b.optimum.has_value());
  if (a.optimum.has_value()) {
    EXPECT_EQ(*a.optimum, *b.optimum);
  }
}

std::string ProcMaps() {
  std::ifstream in("/proc/self/maps");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(RowCacheTest, WhatIsWrittenIsMappedAndTheRowsStayInTheFile) {
  for (const bool optimum : {false, true}) {
    const std::string path = Dir(optimum ? "opt" : "plain") + "/x.rows";
    const FederatedData data = Sample(optimum);
    ASSERT_TRUE(WriteRowCache(data, path, kKey, /*durable=*/true).ok());
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
    absl::StatusOr<FederatedData> mapped = MapRowCache(path, kKey);
    ASSERT_TRUE(mapped.ok()) << mapped.status();
    ExpectSame(data, *mapped);
    // The rows are views of the file, not copies.
    EXPECT_EQ(mapped->train.features.size(), 0);
    ASSERT_NE(mapped->train.shared, nullptr);
    EXPECT_EQ(mapped->train.size(), 7);
    EXPECT_EQ(mapped->train.dim(), 3);
    EXPECT_EQ(mapped->train.row(4)[1], data.train.features(4, 1));
    EXPECT_NE(ProcMaps().find(std::filesystem::canonical(path).string()), std::string::npos);
    const FederatedData moved = *std::move(mapped);
    mapped = absl::NotFoundError("gone");
    EXPECT_EQ(moved.test.rows(), data.test.features);  // the mapping outlives its first holder
  }
  // The last holder gone, the file is unmapped.
  EXPECT_EQ(ProcMaps().find("row_cache_plain/x.rows"), std::string::npos);
}

TEST(RowCacheTest, EmptyListsAndEmptyTestSetRoundTrip) {
  FederatedData data = Sample(false);
  data.test = Dataset();
  data.test.num_classes = 3;
  data.eval_rows.clear();
  const std::string path = Dir("empty") + "/x.rows";
  ASSERT_TRUE(WriteRowCache(data, path, kKey, /*durable=*/false).ok());
  absl::StatusOr<FederatedData> mapped = MapRowCache(path, kKey);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->test.size(), 0);
  EXPECT_TRUE(mapped->eval_rows.empty());
  EXPECT_EQ(mapped->client_rows, data.client_rows);
}

TEST(RowCacheTest, MissingFileIsNotFound) {
  absl::StatusOr<FederatedData> mapped = MapRowCache(Dir("missing") + "/x.rows", kKey);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kNotFound);
}

// Overwrites `bytes` at `offset` of the file.
void Poke(const std::string& path, std::int64_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string Int64(std::int64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string Float64(double v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

TEST(RowCacheTest, RefusesFilesThatAreNotAWholeCacheForTheKey) {
  const std::string dir = Dir("bad");
  const std::string good = dir + "/good.rows";
  ASSERT_TRUE(WriteRowCache(Sample(false), good, kKey, false).ok());
  const auto expect_refused = [&](const std::string& name, const std::string& key,
                                  const std::string& why,
                                  const std::function<void(const std::string&)>& damage) {
    const std::string path = dir + "/" + name + ".rows";
    std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
    damage(path);
    absl::StatusOr<FederatedData> mapped = MapRowCache(path, key);
    ASSERT_EQ(mapped.status().code(), absl::StatusCode::kDataLoss) << name;
    EXPECT_NE(mapped.status().message().find(path), std::string::npos) << mapped.status();
    EXPECT_NE(mapped.status().message().find(why), std::string::npos) << mapped.status();
  };
  const auto nothing = [](const std::string&) {};
  expect_refused("other_key", std::string(64, 'b'), "key differs", nothing);
  expect_refused("magic", kKey, "not a row cache file",
                 [](const std::string& p) { Poke(p, 0, "X"); });
  expect_refused("version", kKey, "version 7",
                 [](const std::string& p) { Poke(p, 72, Int64(7)); });
  expect_refused("truncated", kKey, "its header needs", [](const std::string& p) {
    std::filesystem::resize_file(p, std::filesystem::file_size(p) - 4096);
  });
  expect_refused("tiny", kKey, "at least 4096",
                 [](const std::string& p) { std::filesystem::resize_file(p, 100); });
  expect_refused("sizes", kKey, "sizes out of range",
                 [](const std::string& p) { Poke(p, 80, Int64(-3)); });
  // 2 rows of 2^62 features: the product would overflow to a small size.
  expect_refused("overflow", kKey, "sizes out of range", [](const std::string& p) {
    Poke(p, 80, Int64(2));
    Poke(p, 88, Int64(std::int64_t{1} << 62));
  });
  expect_refused("classes", kKey, "sizes out of range",
                 [](const std::string& p) { Poke(p, 104, Int64(std::int64_t{1} << 40)); });
  // Sections start at 4096: training rows (7 x 3 floats, one page), test
  // rows (one page), training labels at 3 * 4096.
  expect_refused("label", kKey, "label 3 is not a class of 3",
                 [](const std::string& p) { Poke(p, 3 * 4096 + 8, Float64(3.0)); });
  expect_refused("nan_label", kKey, "is not a class",
                 [](const std::string& p) { Poke(p, 3 * 4096, Float64(NAN)); });
  // Client offsets at 5 * 4096, rows at 6 * 4096.
  expect_refused("row", kKey, "client 0's row 7",
                 [](const std::string& p) { Poke(p, 6 * 4096, Int64(7)); });
  expect_refused("offsets", kKey, "client 1's offsets",
                 [](const std::string& p) { Poke(p, 5 * 4096 + 16, Int64(1)); });
  expect_refused("cover", kKey, "do not cover",
                 [](const std::string& p) { Poke(p, 5 * 4096 + 32, Int64(9)); });
  expect_refused("eval", kKey, "sample row -1",
                 [](const std::string& p) { Poke(p, 7 * 4096, Int64(-1)); });
}

TEST(RowCacheTest, WriteFailsCleanlyWhereTheFolderIsMissing) {
  const absl::Status s =
      WriteRowCache(Sample(false), Dir("nofolder") + "/no/such/x.rows", kKey, false);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot create"), std::string::npos) << s;
}

TEST(RowCacheTest, LockIsExclusiveBetweenHolders) {
  const std::string path = Dir("lock") + "/x.rows";
  absl::StatusOr<RowCacheLock> first = RowCacheLock::Acquire(path);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock locks belong to open file descriptions: a second open in this
  // process must not get it while the first is held.
  const int fd = ::open((path + ".lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_NE(::flock(fd, LOCK_EX | LOCK_NB), 0);
  first = absl::CancelledError("released");
  EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  ::close(fd);
}

}  // namespace
}  // namespace fedsim
