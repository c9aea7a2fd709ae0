// The file formats of common/data/file_sources.h and numpy_format.h: NumPy
// .npy/.npz (files written by numpy itself, and byte-level ones for the
// malformed cases), CIFAR-10/100 binaries, LEAF JSON; natural partitions
// with their filters; normalisation; augmentation (common/data/augment.h);
// the residency of mapped rows.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "common/data/augment.h"
#include "common/data/file_sources.h"
#include "common/data/numpy_format.h"
#include "common/data/row_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/data_files.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test::CifarRecord;
using test::LeafFile;
using test::LeafPixels;
using test::NpyBytes;
using test::RawBytes;
using test::WriteBytes;
using namespace std::string_literals;  // NOLINT(build/namespaces): "\x00" in byte strings

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/file_sources_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

absl::StatusOr<NpyArray> ParseBytes(const std::string& bytes, const std::string& name = "t.npy") {
  auto keep = std::make_shared<std::string>(bytes);
  return ParseNpy(reinterpret_cast<const std::byte*>(keep->data()),
                  static_cast<std::int64_t>(keep->size()), keep, name);
}

TEST(NpyTest, ParsesEveryDtypeInBothHeaderVersions) {
  const std::vector<std::int16_t> i16 = {-3, 7, 300};
  for (int major : {1, 2}) {
    absl::StatusOr<NpyArray> a =
        ParseBytes(NpyBytes("{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }",
                            RawBytes(i16), major));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->dtype, NpyDtype::kInt16);
    EXPECT_EQ(a->shape, std::vector<std::int64_t>({3}));
    EXPECT_EQ(a->At(0), -3.0);
    EXPECT_EQ(a->At(2), 300.0);
  }
  const std::vector<double> f64 = {0.5, -1.25, 3.0, 4.0, 5.0, 6.0};
  absl::StatusOr<NpyArray> b = ParseBytes(
      NpyBytes("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}", RawBytes(f64)));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->shape, std::vector<std::int64_t>({2, 3}));
  EXPECT_EQ(b->At(1), -1.25);
  const std::vector<std::uint8_t> u8 = {1, 0, 255};
  absl::StatusOr<NpyArray> c =
      ParseBytes(NpyBytes("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", RawBytes(u8)));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->At(2), 255.0);
  absl::StatusOr<NpyArray> d =
      ParseBytes(NpyBytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", RawBytes(u8)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->At(2), 1.0);
}

TEST(NpyTest, RefusesMalformedFilesWithOneLineNamingFileAndRule) {
  const std::string data(24, '\0');
  struct Case {
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"\x93NUMPX\x01\x00\x10\x00"s, "no \\x93NUMPY magic"},
      {"\x93NUMPY\x04\x00\x10\x00"s + std::string(16, ' '), "format version 4.0"},
      {NpyBytes("{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }", data),
       "big-endian"},
      {NpyBytes("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 1), }", data),
       "fortran_order = True"},
      {NpyBytes("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", data),
       "descr = '|O'"},
      {NpyBytes("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", data),
       "fedsim reads bool"},
      {NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", data),
       "truncated: shape (4) of float64 needs 32 data bytes"},
      {NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", data),
       "needs 16 data bytes"},
      {NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}", data),
       "unknown key 'x'"},
      {NpyBytes("{'descr': '<f8', 'shape': (3,), }", data),
       "needs descr, fortran_order and shape"},
      {NpyBytes("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }", data),
       "structured dtypes"},
      {"\x93NUMPY\x01\x00\xff\x00{"s, "truncated: the header needs 265 bytes"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<NpyArray> a = ParseBytes(c.bytes, "dir/bad.npy");
    ASSERT_FALSE(a.ok()) << c.message;
    EXPECT_TRUE(absl::IsInvalidArgument(a.status()));
    EXPECT_THAT(std::string(a.status().message()), HasSubstr("dir/bad.npy: "));
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(c.message));
    EXPECT_EQ(std::string(a.status().message()).find('\n'), std::string::npos);
  }
}

// Arrays written by numpy itself (np.save, np.savez, np.savez_compressed,
// the 2.0 header format), with values from formulas the checks below
// recompute. numpy is Debian's (python3-numpy, which python3-matplotlib of
// scripts/setup.sh brings).
constexpr char kNumpyScript[] = R"(
import numpy as np, sys, os
out = sys.argv[1]
n, h, w, c = 7, 5, 4, 3
i = np.arange(n * h * w * c)
nhwc = (i % 251).astype(np.uint8).reshape(n, h, w, c)
y = (np.arange(n) % 3).astype(np.int64)
ids = np.array([5, 2, 5, 9, 2, 5, 9], dtype=np.int32)
np.savez(os.path.join(out, 'stored.npz'), x_train=nhwc, y_train=y, x_test=nhwc[:2],
         y_test=y[:2].astype(np.uint8), client_train=ids)
f32 = (np.arange(n * 6, dtype=np.float32) * 0.25 - 3).reshape(n, 6)
np.savez_compressed(os.path.join(out, 'deflated.npz'), x_train=f32.astype(np.float64),
                    y_train=y.astype(np.float32), x_test=f32[:3], y_test=y[:3])
os.makedirs(os.path.join(out, 'npy'))
np.save(os.path.join(out, 'npy', 'x_train.npy'), f32)
np.save(os.path.join(out, 'npy', 'y_train.npy'), y.astype(np.int16))
np.save(os.path.join(out, 'npy', 'x_test.npy'), f32[:2])
np.save(os.path.join(out, 'npy', 'y_test.npy'), y[:2].reshape(2, 1))
np.save(os.path.join(out, 'npy', 'client_train.npy'), ids.astype(np.uint64))
with open(os.path.join(out, 'v2.npy'), 'wb') as f:
    np.lib.format.write_array(f, f32, version=(2, 0))
)";

std::string WriteWithNumpy() {
  const std::string dir = Dir("numpy");
  const std::string script = dir + "/write.py";
  WriteBytes(script, kNumpyScript);
  const std::string cmd = absl::StrCat("/usr/bin/python3 ", script, " ", dir);
  EXPECT_EQ(std::system(cmd.c_str()), 0)
      << cmd << " failed: this test needs Debian's python3-numpy (scripts/setup.sh)";
  return dir;
}

TEST(NumpyFilesTest, ArraysWrittenByNumpyReadBackExactly) {
  const std::string dir = WriteWithNumpy();
  // NHWC uint8 images: transposed to C x H x W, scaled by 1/255 as IDX.
  absl::StatusOr<FederatedData> a = LoadNpz(dir + "/stored.npz", {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->image, (ImageShape{3, 5, 4}));
  ASSERT_EQ(a->train.size(), 7);
  ASSERT_EQ(a->train.dim(), 60);
  for (std::int64_t r = 0; r < 7; ++r) {
    for (std::int64_t hh = 0; hh < 5; ++hh) {
      for (std::int64_t ww = 0; ww < 4; ++ww) {
        for (std::int64_t cc = 0; cc < 3; ++cc) {
          const std::int64_t flat = ((r * 5 + hh) * 4 + ww) * 3 + cc;
          const auto want = static_cast<float>(static_cast<double>(flat % 251) * (1.0 / 255.0));
          ASSERT_EQ(a->train.row(r)[cc * 20 + hh * 4 + ww], want) << r << " " << hh;
        }
      }
    }
    EXPECT_EQ(a->train.labels[r], static_cast<double>(r % 3));
  }
  EXPECT_EQ(a->test.size(), 2);
  EXPECT_EQ(a->train.num_classes, 3);
  EXPECT_EQ(a->train_row_clients, std::vector<std::int64_t>({5, 2, 5, 9, 2, 5, 9}));

  // Deflated members, float64 features rounded to float32, float labels.
  absl::StatusOr<FederatedData> b = LoadNpz(dir + "/deflated.npz", {});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->image.empty());
  for (std::int64_t k = 0; k < 7 * 6; ++k) {
    ASSERT_EQ(b->train.row(0)[k], static_cast<float>(k) * 0.25f - 3.0f);
  }
  EXPECT_TRUE(b->train_row_clients.empty());

  // The folder of .npy files: float32 features read in place from the
  // mapping; labels (rows, 1) and uint64 client ids.
  absl::StatusOr<FederatedData> c = LoadNpyFolder(dir + "/npy", {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->train.shared, nullptr);
  for (std::int64_t k = 0; k < 7 * 6; ++k) {
    ASSERT_EQ(c->train.row(0)[k], static_cast<float>(k) * 0.25f - 3.0f);
  }
  EXPECT_EQ(c->test.labels[1], 1.0);
  EXPECT_EQ(c->train_row_clients, a->train_row_clients);

  absl::StatusOr<NpyArray> v2 = ReadNpy(dir + "/v2.npy", /*map=*/false);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->shape, std::vector<std::int64_t>({7, 6}));
  EXPECT_EQ(v2->At(41), 41 * 0.25 - 3.0);
}

TEST(NumpyFilesTest, BadArraysAreRefusedWithOneLine) {
  const std::string dir = Dir("bad_arrays");
  const auto npy = [&](const std::string& name, const std::string& descr,
                       const std::string& shape, const std::string& data) {
    WriteBytes(dir + "/" + name,
               NpyBytes(absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ",
                                     shape, ", }"),
                        data));
  };
  const std::vector<float> x(12, 0.5f);
  npy("x_train.npy", "<f4", "(4, 3)", RawBytes(x));
  npy("x_test.npy", "<f4", "(2, 3)", RawBytes(std::vector<float>(6, 0.5f)));
  npy("y_test.npy", "<i8", "(2,)", RawBytes(std::vector<std::int64_t>{0, 1}));
  const auto expect_error = [&](const std::string& what) {
    absl::StatusOr<FederatedData> d = LoadNpyFolder(dir, {});
    ASSERT_FALSE(d.ok()) << what;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(what));
    EXPECT_EQ(std::string(d.status().message()).find('\n'), std::string::npos);
  };
  npy("y_train.npy", "<i8", "(3,)", RawBytes(std::vector<std::int64_t>{0, 1, 2}));
  expect_error("y_train.npy: 3 labels for the 4 rows of");
  npy("y_train.npy", "<i8", "(4,)", RawBytes(std::vector<std::int64_t>{0, 1, -2, 1}));
  expect_error("y_train.npy: row 2 = -2; a class label is an integer");
  npy("y_train.npy", "<f4", "(4,)", RawBytes(std::vector<float>{0, 1, 1.5f, 1}));
  expect_error("y_train.npy: row 2 = 1.5");
  npy("y_train.npy", "<i8", "(4, 2)", RawBytes(std::vector<std::int64_t>(8, 0)));
  expect_error("y_train.npy: shape (4, 2); labels are (rows,) or (rows, 1)");
  npy("y_train.npy", "<i8", "(4,)", RawBytes(std::vector<std::int64_t>{0, 1, 0, 1}));
  npy("client_train.npy", "<i8", "(3,)", RawBytes(std::vector<std::int64_t>{0, 1, 0}));
  expect_error("client_train.npy: 3 client ids for 4 training rows");
  npy("client_train.npy", "<f8", "(4,)", RawBytes(std::vector<double>{0, 1, 0, 1}));
  expect_error("client_train.npy: dtype float64; client ids are integers");
  npy("client_train.npy", "<i8", "(4,)", RawBytes(std::vector<std::int64_t>{0, -1, 0, 1}));
  expect_error("client_train.npy: row 1 = -1; client ids are integers >= 0");
  fs::remove(dir + "/client_train.npy");
  npy("x_test.npy", "<f4", "(2, 2)", RawBytes(std::vector<float>(4, 0.5f)));
  expect_error("x_train rows have shape (3,) but x_test rows (2,)");
  // Converted arrays are scanned for NaN (float32 ones read in place are
  // not: file_sources.h).
  npy("x_test.npy", "<f8", "(2, 3)", RawBytes(std::vector<double>{0, 1, 2, 3, 4, NAN}));
  expect_error("x_test.npy: row 1 value 2 = nan; features must be finite in float32");
  npy("x_test.npy", "<f8", "(2, 3)", RawBytes(std::vector<double>{0, 1, 2, 3, 1e39, 0}));
  expect_error("x_test.npy: row 1 value 1 = 1e+39; features must be finite in float32");
  npy("x_test.npy", "<f4", "(2, 3)", RawBytes(std::vector<float>(6, 0.5f)));
  fs::remove(dir + "/y_test.npy");
  absl::StatusOr<FederatedData> missing = LoadNpyFolder(dir, {});
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("y_test.npy: no such file"));

  // An .npz that is not a ZIP archive, and one with a member fedsim does
  // not read.
  WriteBytes(dir + "/junk.npz", "PK\x03\x04 not really");
  absl::StatusOr<FederatedData> junk = LoadNpz(dir + "/junk.npz", {});
  EXPECT_THAT(std::string(junk.status().message()),
              HasSubstr("junk.npz: not a readable .npz (ZIP) archive"));
}

TEST(NumpyFilesTest, ExtraNpzMembersAndAmbiguousLayoutsAreRefused) {
  const std::string dir = Dir("npz_members");
  const std::string script = dir + "/w.py";
  WriteBytes(script, R"(
import numpy as np, sys
d = sys.argv[1]
x = np.zeros((4, 3), np.float32); y = np.zeros(4, np.int64)
np.savez(d + '/extra.npz', x_train=x, y_train=y, x_test=x, y_test=y, x_val=x)
np.savez(d + '/ambiguous.npz', x_train=np.zeros((2, 5, 5, 5), np.uint8), y_train=y[:2],
         x_test=np.zeros((2, 5, 5, 5), np.uint8), y_test=y[:2])
)");
  ASSERT_EQ(std::system(absl::StrCat("/usr/bin/python3 ", script, " ", dir).c_str()), 0);
  EXPECT_THAT(std::string(LoadNpz(dir + "/extra.npz", {}).status().message()),
              HasSubstr("extra.npz: member 'x_val.npy' is not one fedsim reads"));
  EXPECT_THAT(std::string(LoadNpz(dir + "/ambiguous.npz", {}).status().message()),
              HasSubstr("x_train.npy: shape (2, 5, 5, 5): neither dimension 1 nor 3 is 1, 3 or "
                        "4 channels; set data.image_layout"));
  ArraySourceOptions nhwc;
  nhwc.layout = ImageLayout::kNhwc;
  absl::StatusOr<FederatedData> d = LoadNpz(dir + "/ambiguous.npz", nhwc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->image, (ImageShape{5, 5, 5}));
}

TEST(CifarTest, RecordsReadBackAsChannelFirstImages) {
  const std::string dir = Dir("cifar10");
  WriteBytes(dir + "/data_batch_1.bin", CifarRecord(0, 0, 3, false, 1) +
                                            CifarRecord(0, 0, 9, false, 2));
  WriteBytes(dir + "/data_batch_2.bin", CifarRecord(0, 0, 0, false, 3));
  WriteBytes(dir + "/test_batch.bin", CifarRecord(0, 0, 7, false, 4));
  absl::StatusOr<FederatedData> d = LoadCifar(dir, CifarLabels::kCifar10);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->train.size(), 3);
  EXPECT_EQ(d->train.labels, Eigen::Vector3d(3, 9, 0));
  EXPECT_EQ(d->test.labels[0], 7.0);
  EXPECT_EQ(d->train.num_classes, 10);
  EXPECT_EQ(d->image, (ImageShape{3, 32, 32}));
  // Row 1 (seed 2): pixel k of the record is (7k + 2) mod 256, stored at k
  // (the planes are already channel first).
  for (int k : {0, 1023, 1024, 3071}) {
    EXPECT_EQ(d->train.row(1)[k],
              static_cast<float>(static_cast<double>((k * 7 + 2) % 256) * (1.0 / 255.0)));
  }

  const std::string hundred = Dir("cifar100");
  WriteBytes(hundred + "/train.bin",
             CifarRecord(19, 99, 0, true, 5) + CifarRecord(4, 40, 0, true, 6));
  WriteBytes(hundred + "/test.bin", CifarRecord(1, 2, 0, true, 7));
  absl::StatusOr<FederatedData> fine = LoadCifar(hundred, CifarLabels::kCifar100Fine);
  absl::StatusOr<FederatedData> coarse = LoadCifar(hundred, CifarLabels::kCifar100Coarse);
  ASSERT_TRUE(fine.ok() && coarse.ok()) << fine.status() << coarse.status();
  EXPECT_EQ(fine->train.labels, Eigen::Vector2d(99, 40));
  EXPECT_EQ(coarse->train.labels, Eigen::Vector2d(19, 4));
  EXPECT_EQ(fine->train.num_classes, 100);
  EXPECT_EQ(coarse->train.num_classes, 20);
  EXPECT_EQ(fine->train.row(1)[5], static_cast<float>((5 * 7 + 6) % 256 * (1.0 / 255.0)));
}

TEST(CifarTest, TruncatedFilesAndBadLabelsAreRefused) {
  const std::string dir = Dir("cifar_bad");
  WriteBytes(dir + "/data_batch_1.bin", CifarRecord(0, 0, 3, false, 1).substr(0, 3000));
  WriteBytes(dir + "/test_batch.bin", CifarRecord(0, 0, 7, false, 4));
  absl::StatusOr<FederatedData> d = LoadCifar(dir, CifarLabels::kCifar10);
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("data_batch_1.bin: 3000 bytes, not a whole number of 3073-byte records"));
  WriteBytes(dir + "/data_batch_1.bin",
             CifarRecord(0, 0, 3, false, 1) + CifarRecord(0, 0, 12, false, 1));
  d = LoadCifar(dir, CifarLabels::kCifar10);
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("data_batch_1.bin: offset 3073: label 12; cifar10 labels are 0 to 9"));
  WriteBytes(dir + "/data_batch_1.bin", CifarRecord(0, 0, 3, false, 1));
  fs::remove(dir + "/test_batch.bin");
  d = LoadCifar(dir, CifarLabels::kCifar10);
  EXPECT_TRUE(absl::IsNotFound(d.status())) << d.status();
}

void WriteLeaf(const std::string& path, const nlohmann::json& j) { WriteBytes(path, j.dump()); }

TEST(LeafTest, FemnistShapedFilesReadBackWithTheirUsers) {
  const std::string dir = Dir("leaf_femnist");
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/test");
  // Two training files; the test split by samples (same users) plus one
  // user only in the test set.
  WriteLeaf(dir + "/train/b.json", LeafFile({"f2"}, {LeafPixels(2, 5)}, {{61, 0}}));
  WriteLeaf(dir + "/train/a.json",
            LeafFile({"f0", "f1"}, {LeafPixels(3, 1), LeafPixels(1, 2)}, {{4, 5, 6}, {7}}));
  WriteLeaf(dir + "/test/a.json",
            LeafFile({"f1", "zz"}, {LeafPixels(1, 3), LeafPixels(2, 4)}, {{8}, {9, 10}}));
  absl::StatusOr<FederatedData> d = LoadLeaf(dir);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->train.size(), 6);
  EXPECT_EQ(d->train.dim(), 784);
  EXPECT_EQ(d->image, (ImageShape{1, 28, 28}));
  EXPECT_EQ(d->client_names, std::vector<std::string>({"f0", "f1", "f2"}));
  EXPECT_EQ(d->train_row_clients, std::vector<std::int64_t>({0, 0, 0, 1, 2, 2}));
  EXPECT_EQ(d->test_row_clients, std::vector<std::int64_t>({1, -1, -1}));
  EXPECT_EQ(d->train.labels[4], 61.0);
  EXPECT_EQ(d->train.num_classes, 62);
  // f2's second sample (seed 5, i = 1): ((k + 6) % 17) / 16.
  EXPECT_EQ(d->train.row(5)[100], static_cast<float>(((100 + 6) % 17) / 16.0));
}

TEST(LeafTest, ShakespeareShapedFilesMapCharactersToLeafsVocabulary) {
  const std::string dir = Dir("leaf_shakespeare");
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/test");
  const std::string line80 = std::string("To be, or not to be: that is the question!\n") +
                             std::string(37, 'z');
  ASSERT_EQ(line80.size(), 80u);
  WriteLeaf(dir + "/train/t.json",
            LeafFile({"HAMLET"}, {nlohmann::json::array({line80, line80})}, {{"a", "}"}}));
  WriteLeaf(dir + "/test/t.json", LeafFile({"HAMLET"}, {nlohmann::json::array({line80})},
                                           {{" "}}));
  absl::StatusOr<FederatedData> d = LoadLeaf(dir);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train.dim(), 80);
  EXPECT_TRUE(d->image.empty());
  EXPECT_EQ(d->train.num_classes, 80);
  const std::string letters = kLeafLetters;
  for (int k = 0; k < 80; ++k) {
    ASSERT_EQ(d->train.row(1)[k], static_cast<float>(letters.find(line80[k]))) << k;
  }
  EXPECT_EQ(d->train.labels[0], static_cast<double>(letters.find('a')));
  EXPECT_EQ(d->train.labels[1], 79.0);  // '}' is the last letter
  EXPECT_EQ(d->test.labels[0], 1.0);    // ' '
}

TEST(LeafTest, MalformedFilesAreRefusedNamingFileAndKey) {
  const std::string dir = Dir("leaf_bad");
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/test");
  WriteLeaf(dir + "/test/t.json", LeafFile({"u"}, {LeafPixels(1, 0)}, {{1}}));
  const auto expect = [&](const std::string& text, const std::string& what) {
    WriteBytes(dir + "/train/t.json", text);
    absl::StatusOr<FederatedData> d = LoadLeaf(dir);
    ASSERT_FALSE(d.ok()) << what;
    EXPECT_TRUE(absl::IsInvalidArgument(d.status()));
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("train/t.json"));
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(what));
    EXPECT_EQ(std::string(d.status().message()).find('\n'), std::string::npos);
  };
  nlohmann::json j = LeafFile({"u"}, {LeafPixels(2, 0)}, {{1, 2}});
  j["num_samples"][0] = 3;
  expect(j.dump(), "num_samples[0] = 3 but user 'u' has 2 samples");
  j = LeafFile({"u"}, {LeafPixels(2, 0)}, {{1}});
  expect(j.dump(), "user 'u': 2 samples in x but 1 labels in y");
  j = LeafFile({"u"}, {LeafPixels(2, 0)}, {{1, -4}});
  expect(j.dump(), "user 'u' y[1] = -4");
  j = LeafFile({"u"}, {LeafPixels(2, 0)}, {{1, 2}});
  j["user_data"]["u"]["x"][1].erase(0);
  expect(j.dump(), "user 'u' x[1] has 783 values, the first sample had 784");
  j = LeafFile({"u", "v"}, {LeafPixels(1, 0), LeafPixels(1, 0)}, {{1}, {2}});
  j["users"][1] = "w";
  expect(j.dump(), "users[1] = 'w' has no entry in user_data");
  j = LeafFile({"u"}, {nlohmann::json::array({"ab\xc3\xa9"})}, {{"a"}});
  expect(j.dump(), "is not in LEAF's Shakespeare vocabulary");
  expect("{\"users\": [\"u\"], \"user_data\": {", "offset");
}

// The config path: natural partitions with filters, normalisation.
v1::ExperimentConfig Config(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText(yaml);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : v1::ExperimentConfig();
}

TEST(NaturalPartitionTest, ClientsAreTheFilesIdsFilteredAndSampled) {
  const std::string dir = Dir("leaf_natural");
  fs::create_directories(dir + "/train");
  fs::create_directories(dir + "/test");
  // Users of 1, 4, 2, 6 and 3 samples; the test split by samples.
  const std::vector<int> sizes = {1, 4, 2, 6, 3};
  std::vector<std::string> users;
  std::vector<nlohmann::json> xs, ys, test_xs, test_ys;
  for (std::size_t u = 0; u < sizes.size(); ++u) {
    users.push_back(absl::StrCat("u", u));
    xs.push_back(LeafPixels(sizes[u], static_cast<int>(u)));
    ys.push_back(std::vector<int>(static_cast<std::size_t>(sizes[u]), static_cast<int>(u)));
    test_xs.push_back(LeafPixels(1, 9));
    test_ys.push_back({static_cast<int>(u)});
  }
  WriteLeaf(dir + "/train/d.json", LeafFile(users, xs, ys));
  WriteLeaf(dir + "/test/d.json", LeafFile(users, test_xs, test_ys));
  const std::string base = absl::StrCat("data: {source: leaf, path: '", dir, "'}\n");

  absl::StatusOr<FederatedData> all = PrepareExperimentData(Config(base));
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->client_rows.size(), 5u);
  for (std::size_t k = 0; k < 5; ++k) {
    ASSERT_EQ(all->client_rows[k].size(), static_cast<std::size_t>(sizes[k]));
    for (std::int64_t r : all->client_rows[k]) {
      EXPECT_EQ(all->train.labels[r], static_cast<double>(k));  // its own rows
    }
  }
  EXPECT_EQ(all->test.size(), 5);

  // min_samples 2, max_samples 4 keep u1 (4), u2 (2), u4 (3); the test rows
  // of u0 and u3 go with them.
  absl::StatusOr<FederatedData> kept = PrepareExperimentData(
      Config(base + "clients: {partition: natural, min_samples: 2, max_samples: 4}\n"));
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_EQ(kept->client_rows.size(), 3u);
  // The left-out clients' rows leave the training set; the kept ones are
  // renumbered and still each client's own.
  ASSERT_EQ(kept->train.size(), 4 + 2 + 3);
  for (std::size_t k = 0; k < 3; ++k) {
    for (std::int64_t r : kept->client_rows[k]) {
      EXPECT_EQ(kept->train.labels[r], static_cast<double>(k == 0 ? 1 : k == 1 ? 2 : 4));
    }
  }
  EXPECT_EQ(kept->client_rows[0].size(), 4u);
  EXPECT_EQ(kept->client_rows[1].size(), 2u);
  EXPECT_EQ(kept->client_rows[2].size(), 3u);
  EXPECT_EQ(kept->client_names, std::vector<std::string>({"u1", "u2", "u4"}));
  ASSERT_EQ(kept->test.size(), 3);
  EXPECT_EQ(kept->test.labels, Eigen::Vector3d(1, 2, 4));

  // count: 2 of the 5, drawn from the seed, kept in file order; another
  // seed draws another pair (of the 10 pairs, some seed among 1..20 must).
  const auto pick = [&](int seed) {
    absl::StatusOr<FederatedData> d = PrepareExperimentData(
        Config(absl::StrCat(base, "seed: ", seed, "\nclients: {count: 2}\n")));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? d->client_names : std::vector<std::string>();
  };
  const std::vector<std::string> first = pick(1);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_LT(first[0], first[1]);
  EXPECT_EQ(pick(1), first);
  bool other = false;
  for (int seed = 2; seed <= 20 && !other; ++seed) other = pick(seed) != first;
  EXPECT_TRUE(other);

  const auto error = [&](const std::string& yaml) {
    absl::StatusOr<FederatedData> d = PrepareExperimentData(Config(base + yaml));
    return d.ok() ? std::string("ok") : std::string(d.status().message());
  };
  EXPECT_THAT(error("clients: {count: 6}\n"),
              HasSubstr("clients.count = 6 but the data names 5 clients"));
  EXPECT_THAT(error("clients: {min_samples: 7}\n"),
              HasSubstr("clients.min_samples = 7, max_samples = 0 leave no client: the data's 5 "
                        "clients have 1 to 6 training rows"));
}

// Rows read in place from x_train.npy stay in the file when their client
// is left out; train_loss then samples only the kept clients' rows.
TEST(NaturalPartitionTest, MappedRowsOfLeftOutClientsAreNotEvaluated) {
  const std::string dir = Dir("npy_natural");
  const std::vector<float> x(10 * 2, 0.25f);
  test::WriteNpy(dir + "/x_train.npy", "<f4", {10, 2}, x);
  test::WriteNpy(dir + "/y_train.npy", "<i8", {10}, std::vector<std::int64_t>(10, 1));
  test::WriteNpy(dir + "/x_test.npy", "<f4", {2, 2}, std::vector<float>(4, 0.5f));
  test::WriteNpy(dir + "/y_test.npy", "<i8", {2}, std::vector<std::int64_t>{0, 1});
  // Client 7 has rows 0, 3, 4, 8; client 2 rows 1, 2; client 5 the rest.
  test::WriteNpy(dir + "/client_train.npy", "<i8", {10},
                 std::vector<std::int64_t>{7, 2, 2, 7, 7, 5, 5, 5, 7, 5});
  absl::StatusOr<FederatedData> d = PrepareExperimentData(Config(absl::StrCat(
      "data: {source: npy, path: '", dir, "'}\nclients: {partition: natural, min_samples: 3}\n")));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_NE(d->train.shared, nullptr);
  EXPECT_EQ(d->train.size(), 10);
  ASSERT_EQ(d->client_rows.size(), 2u);  // ids 5 and 7, in id order
  EXPECT_EQ(d->client_rows[0], std::vector<std::int64_t>({5, 6, 7, 9}));
  EXPECT_EQ(d->client_rows[1], std::vector<std::int64_t>({0, 3, 4, 8}));
  EXPECT_EQ(d->eval_rows, std::vector<std::int64_t>({0, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(NaturalPartitionTest, ConfigKeysOfOtherSourcesAreRefused) {
  const auto error = [](const std::string& yaml) {
    absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText(yaml);
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  EXPECT_THAT(error("data: {source: cifar10, path: x, cifar100_labels: coarse}\n"),
              HasSubstr("data.cifar100_labels with data.source = cifar10"));
  EXPECT_THAT(error("data: {source: cifar10, path: x, image_layout: nhwc}\n"),
              HasSubstr("data.image_layout with data.source = cifar10"));
  EXPECT_THAT(error("data: {source: npz, path: x.npz}\nclients: {min_samples: 3}\n"),
              HasSubstr("clients.min_samples / max_samples with data.source = npz and "
                        "clients.partition = iid"));
  EXPECT_THAT(error("data: {source: npy}\n"),
              HasSubstr("data.path is empty; data.source = npy needs the folder"));
  EXPECT_THAT(error("data: {source: fashion_mnist}\nclients: {partition: natural}\n"),
              HasSubstr("clients.partition = natural; only synthetic sources, npz/npy"));
  EXPECT_THAT(error("data: {source: leaf, path: x}\nclients: {min_samples: 5, max_samples: 2}\n"),
              HasSubstr("clients.max_samples = 2 < clients.min_samples = 5"));
  // LEAF's clients are natural by default, and their number is the files'.
  absl::StatusOr<v1::ExperimentConfig> leaf = LoadConfigText("data: {source: leaf, path: x}\n");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(leaf->clients().partition(), v1::ClientsConfig::PARTITION_NATURAL);
  EXPECT_FALSE(leaf->clients().has_count());
}

TEST(NormalizeTest, ChannelsAreNormalisedAsTorchvisionDoes) {
  const std::string dir = Dir("normalize");
  WriteBytes(dir + "/data_batch_1.bin", CifarRecord(0, 0, 1, false, 1));
  WriteBytes(dir + "/test_batch.bin", CifarRecord(0, 0, 2, false, 2));
  const std::string yaml = absl::StrCat(
      "data: {source: cifar10, path: '", dir,
      "', normalize_mean: [0.5, 0.25, 0.125], normalize_std: [0.5, 2, 4]}\nclients: {count: 1}\n");
  absl::StatusOr<FederatedData> d = PrepareExperimentData(Config(yaml));
  ASSERT_TRUE(d.ok()) << d.status();
  const float means[] = {0.5f, 0.25f, 0.125f}, sds[] = {0.5f, 2.0f, 4.0f};
  for (int k : {0, 1500, 3071}) {
    const int c = k / 1024;
    const auto raw = static_cast<float>(static_cast<double>((k * 7 + 1) % 256) * (1.0 / 255.0));
    EXPECT_EQ(d->train.row(0)[k], (raw - means[c]) / sds[c]) << k;
  }
  const std::string bad = absl::StrCat("data: {source: cifar10, path: '", dir,
                                       "', normalize_mean: [0.5, 0.2], normalize_std: [1]}\n");
  absl::StatusOr<FederatedData> e = PrepareExperimentData(Config(bad));
  EXPECT_THAT(std::string(e.status().message()),
              HasSubstr("data.normalize_mean has 2 values; the rows have 3 channels"));
}

TEST(AugmentTest, CropAndFlipAreTorchvisionsTransformOfAKnownImage) {
  // A 2 x 3 x 4 image, value 100 c + 10 y + x.
  AugmentSpec spec;
  spec.image = {2, 3, 4};
  spec.crop_padding = 1;
  spec.pad_value = {-1.0f, -2.0f};
  std::vector<float> in(24);
  for (int c = 0; c < 2; ++c) {
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) in[c * 12 + y * 4 + x] = static_cast<float>(100 * c + 10 * y + x);
    }
  }
  std::vector<float> out(24);
  // Offset (1, 1) is the image itself; no flip.
  AugmentImage(spec, in.data(), 1, 1, false, out.data());
  EXPECT_EQ(out, in);
  // Offset (0, 2): rows shift down by one (row 0 is padding), columns left
  // by one (column 3 is padding).
  AugmentImage(spec, in.data(), 0, 2, false, out.data());
  const std::vector<float> shifted = {-1, -1, -1, -1, 1,   2,   3,   -1, 11,  12,  13,  -1,
                                      -2, -2, -2, -2, 101, 102, 103, -2, 111, 112, 113, -2};
  EXPECT_EQ(out, shifted);
  // The same crop, mirrored: each row reversed.
  AugmentImage(spec, in.data(), 0, 2, true, out.data());
  const std::vector<float> mirrored = {-1, -1, -1, -1, -1,  3,   2,   1,   -1,  13,  12,  11,
                                       -2, -2, -2, -2, -2,  103, 102, 101, -2,  113, 112, 111};
  EXPECT_EQ(out, mirrored);
}

TEST(AugmentTest, AugmenterDrawsOffsetsThenFlipFromItsStream) {
  AugmentSpec spec;
  spec.image = {1, 4, 4};
  spec.crop_padding = 2;
  spec.horizontal_flip = true;
  spec.pad_value = {0.0f};
  Dataset data;
  data.features.resize(3, 16);
  for (int k = 0; k < 48; ++k) data.features.data()[k] = static_cast<float>(k + 1);
  data.labels = Eigen::Vector3d(0, 1, 2);
  Augmenter aug(spec, RngStream(7, RngPurpose::kAugment, 3, 5));
  const std::vector<std::int64_t> rows = {2, 0};
  const Dataset& out = aug.Apply(data, rows);
  RngStream rng(7, RngPurpose::kAugment, 3, 5);
  std::vector<float> want(16);
  for (int i = 0; i < 2; ++i) {
    const auto dy = static_cast<std::int64_t>(rng.UniformInt(5));
    const auto dx = static_cast<std::int64_t>(rng.UniformInt(5));
    const bool flip = rng.UniformInt(2) == 1;
    AugmentImage(spec, data.row(rows[static_cast<std::size_t>(i)]), dy, dx, flip, want.data());
    for (int k = 0; k < 16; ++k) ASSERT_EQ(out.row(i)[k], want[static_cast<std::size_t>(k)]);
    EXPECT_EQ(out.labels[i], data.labels[rows[static_cast<std::size_t>(i)]]);
  }
  // Over many draws every offset and both flips occur, at their rates.
  Augmenter many(spec, RngStream(1, RngPurpose::kAugment, 0, 0));
  std::vector<std::int64_t> zeros(4000, 1);
  const Dataset& m = many.Apply(data, zeros);
  int unchanged = 0;
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    bool same = true;
    for (int k = 0; k < 16; ++k) same = same && m.row(i)[k] == data.row(1)[k];
    unchanged += same;
  }
  // P(offset (2, 2) and no flip) = 1/25 * 1/2 = 0.02: 80 of 4000, sd 8.9.
  EXPECT_NEAR(unchanged, 80, 40);
}

TEST(AugmentTest, AugmentNeedsImagesAndAPaddingSmallerThanThem) {
  const std::string dir = Dir("augment_cfg");
  WriteBytes(dir + "/data_batch_1.bin", CifarRecord(0, 0, 1, false, 1) +
                                            CifarRecord(0, 0, 2, false, 2));
  WriteBytes(dir + "/test_batch.bin", CifarRecord(0, 0, 2, false, 2));
  const auto build = [&](const std::string& extra) {
    absl::StatusOr<Experiment> e = BuildExperiment(Config(absl::StrCat(
        "data: {source: cifar10, path: '", dir, "', normalize_mean: [0.5], normalize_std: [0.25]}\n",
        "clients: {count: 2}\n", extra)));
    return e;
  };
  absl::StatusOr<Experiment> e = build("local: {augment: {crop_padding: 4, horizontal_flip: true}}\n");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->augment.has_value());
  EXPECT_EQ(e->augment->image, (ImageShape{3, 32, 32}));
  EXPECT_EQ(e->augment->pad_value, std::vector<float>(3, -2.0f));  // (0 - 0.5) / 0.25
  EXPECT_THAT(std::string(build("local: {augment: {crop_padding: 32}}\n").status().message()),
              HasSubstr("local.augment.crop_padding = 32; must be smaller than the 32 x 32"));
  absl::StatusOr<Experiment> flat = BuildExperiment(Config(
      "data: {source: csv, has_header: true, train_file: tests/fixtures/tiny.csv, test_file: "
      "tests/fixtures/tiny.csv}\nclients: {count: 2}\nlocal: {augment: {horizontal_flip: true}}\n"));
  EXPECT_THAT(std::string(flat.status().message()),
              HasSubstr("local.augment crops and flips images, but data.source = csv"));
}

TEST(RowCacheTest, KeepsTheImageLayout) {
  FederatedData data;
  data.train.features = RowMajorMatrixF::Constant(2, 12, 0.5f);
  data.train.labels = Eigen::Vector2d(0, 1);
  data.train.num_classes = data.test.num_classes = 2;
  data.test = data.train;
  data.client_rows = {{0}, {1}};
  data.image = {3, 2, 2};
  const std::string dir = Dir("row_cache_image");
  const std::string key(64, 'a');
  ASSERT_TRUE(WriteRowCache(data, dir + "/c.rows", key, false).ok());
  absl::StatusOr<FederatedData> mapped = MapRowCache(dir + "/c.rows", key);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->image, (ImageShape{3, 2, 2}));
}

TEST(MappedResidentBytesTest, CountsThePagesThisProcessRead) {
  const std::string dir = Dir("resident");
  const std::int64_t pages = 256;
  const std::vector<float> values(static_cast<std::size_t>(pages * 1024), 1.0f);
  WriteBytes(dir + "/x.npy",
             NpyBytes(absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", pages,
                                   ", 1024), }"),
                      RawBytes(values)));
  // Out of the page cache first: a just-written file's pages are cached in
  // large folios, and a fault maps the whole folio it hits.
  {
    const int fd = ::open((dir + "/x.npy").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  absl::StatusOr<NpyArray> a = ReadNpy(dir + "/x.npy", /*map=*/true);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->mapped);
  // No readahead: a fault reads the page it needs.
  auto* base = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(a->data) &
                                       ~std::uintptr_t{4095});
  ASSERT_EQ(::madvise(base, static_cast<std::size_t>(pages * 4096), MADV_RANDOM), 0);
  absl::StatusOr<std::int64_t> before = MappedResidentBytes(a->data);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_LE(*before, 64 * 4096);  // the header's page and its readahead
  volatile float sum = 0.0f;
  const auto* f = reinterpret_cast<const float*>(a->data);
  for (std::int64_t p = 96; p < pages; p += 32) sum = sum + f[p * 1024];  // 5 pages
  absl::StatusOr<std::int64_t> after = MappedResidentBytes(a->data);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GE(*after - *before, 5 * 4096);
  EXPECT_LE(*after - *before, 5 * 16 * 4096);
  EXPECT_LT(*after, pages * 4096 / 2);
  EXPECT_TRUE(absl::IsNotFound(MappedResidentBytes(nullptr).status()));
}

}  // namespace
}  // namespace fedsim
