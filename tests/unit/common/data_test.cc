// Tests of common/data: the IDX, CSV and LIBSVM loaders, the partitioners and
// the synthetic generators.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/data/dataset.h"
#include "common/data/loaders.h"
#include "common/data/partition.h"
#include "common/data/synthetic.h"
#include "common/random/stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/statistics.h"
#include "tests/testing/vectors.h"

namespace fedsim {
namespace data_test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Helpers.

// tests/fixtures, found from this file's own path so that the test does not
// depend on the working directory it is started from.
fs::path FixturePath(const std::string& name) {
  const fs::path here = fs::path(__FILE__).parent_path();
  const fs::path by_source = here / ".." / ".." / "fixtures" / name;
  if (fs::exists(by_source)) return by_source;
  return fs::path("tests") / "fixtures" / name;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("fedsim_data_test_", info->test_suite_name(), "_",
                        info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) const {
    const fs::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path.string();
  }

  std::string WriteGzip(const std::string& name,
                        const std::string& bytes) const {
    const fs::path path = dir_ / name;
    gzFile file = gzopen(path.string().c_str(), "wb");
    EXPECT_NE(file, nullptr);
    EXPECT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    EXPECT_EQ(gzclose(file), Z_OK);
    return path.string();
  }

 private:
  fs::path dir_;
};

void AppendBigEndian32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

std::string IdxImages(std::uint32_t n, std::uint32_t rows, std::uint32_t cols,
                      const std::vector<unsigned char>& pixels,
                      std::uint32_t magic = 0x00000803) {
  std::string out;
  AppendBigEndian32(out, magic);
  AppendBigEndian32(out, n);
  AppendBigEndian32(out, rows);
  AppendBigEndian32(out, cols);
  out.append(pixels.begin(), pixels.end());
  return out;
}

std::string IdxLabels(std::uint32_t n, const std::vector<unsigned char>& labels,
                      std::uint32_t magic = 0x00000801) {
  std::string out;
  AppendBigEndian32(out, magic);
  AppendBigEndian32(out, n);
  out.append(labels.begin(), labels.end());
  return out;
}

// Three 2x2 images with pixels 0, 10, ..., 110 and labels 4, 0, 1.
const std::vector<unsigned char> kPixels = {0,  10, 20, 30, 40,  50,
                                            60, 70, 80, 90, 100, 110};
const std::vector<unsigned char> kLabels = {4, 0, 1};

void ExpectSameDataset(const Dataset& a, const Dataset& b) {
  EXPECT_EQ(a.features, b.features);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.num_classes, b.num_classes);
}

void ExpectInvalid(const absl::StatusOr<Dataset>& result,
                   const std::vector<std::string>& parts) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
      << result.status();
  for (const std::string& part : parts) {
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(part));
  }
  // One line, starting in lower case or with the file name.
  EXPECT_EQ(result.status().message().find('\n'), std::string::npos);
}

// ---------------------------------------------------------------------------
// IDX.

TEST(LoaderIdxTest, ReadsExactValues) {
  TempDir tmp;
  const std::string images = tmp.Write("img", IdxImages(3, 2, 2, kPixels));
  const std::string labels = tmp.Write("lbl", IdxLabels(3, kLabels));

  absl::StatusOr<Dataset> raw = LoadIdx(images, labels, /*scale=*/1.0);
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_EQ(raw->size(), 3);
  ASSERT_EQ(raw->dim(), 4);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(raw->features(i / 4, i % 4), 10.0f * i) << i;
  }
  EXPECT_EQ(raw->labels, test::Vec({4, 0, 1}));
  EXPECT_EQ(raw->num_classes, 5);

  absl::StatusOr<Dataset> scaled = LoadIdx(images, labels);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  EXPECT_EQ(scaled->features(2, 3), static_cast<float>(110 / 255.0));
}

TEST(LoaderIdxTest, GzipEqualsPlain) {
  TempDir tmp;
  const std::string image_bytes = IdxImages(3, 2, 2, kPixels);
  const std::string label_bytes = IdxLabels(3, kLabels);
  absl::StatusOr<Dataset> plain =
      LoadIdx(tmp.Write("img", image_bytes), tmp.Write("lbl", label_bytes));
  absl::StatusOr<Dataset> gzip = LoadIdx(tmp.WriteGzip("img.gz", image_bytes),
                                         tmp.WriteGzip("lbl.gz", label_bytes));
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  ExpectSameDataset(*plain, *gzip);
}

TEST(LoaderIdxTest, RejectsBadMagic) {
  TempDir tmp;
  const std::string images = tmp.Write("img", IdxImages(3, 2, 2, kPixels));
  const std::string labels = tmp.Write("lbl", IdxLabels(3, kLabels));
  // Paths swapped: the label file is read as images.
  ExpectInvalid(LoadIdx(labels, images),
                {labels, "bad IDX magic 0x00000801", "expected 0x00000803"});
  const std::string bad = tmp.Write("bad", IdxImages(3, 2, 2, kPixels, 0x0803));
  ExpectInvalid(LoadIdx(images, bad),
                {bad, "bad IDX magic 0x00000803", "expected 0x00000801"});
}

TEST(LoaderIdxTest, RejectsTruncatedFiles) {
  TempDir tmp;
  const std::string labels = tmp.Write("lbl", IdxLabels(3, kLabels));
  std::string image_bytes = IdxImages(3, 2, 2, kPixels);
  image_bytes.resize(image_bytes.size() - 1);
  const std::string short_payload = tmp.Write("img", image_bytes);
  ExpectInvalid(LoadIdx(short_payload, labels),
                {short_payload, "truncated", "12 pixel bytes", "only 11"});

  const std::string short_header =
      tmp.Write("hdr", IdxImages(3, 2, 2, kPixels).substr(0, 10));
  ExpectInvalid(LoadIdx(short_header, labels),
                {short_header, "truncated IDX header"});

  const std::string empty = tmp.Write("empty", "");
  ExpectInvalid(LoadIdx(empty, labels), {empty, "truncated IDX header"});

  // A gzip stream cut in the middle.
  const std::string full_gz =
      ReadFile(tmp.WriteGzip("full.gz", IdxImages(3, 2, 2, kPixels)));
  const std::string cut_gz =
      tmp.Write("cut.gz", full_gz.substr(0, full_gz.size() - 12));
  ExpectInvalid(LoadIdx(cut_gz, labels), {cut_gz, "truncated"});
}

TEST(LoaderIdxTest, RejectsCountMismatchAndTrailingData) {
  TempDir tmp;
  const std::string images = tmp.Write("img", IdxImages(3, 2, 2, kPixels));
  const std::string labels =
      tmp.Write("lbl", IdxLabels(4, {4, 0, 1, 2}));
  ExpectInvalid(LoadIdx(images, labels),
                {images, "3 images", labels, "4 labels", "counts must match"});

  std::vector<unsigned char> more = kPixels;
  more.push_back(7);
  const std::string trailing = tmp.Write("img2", IdxImages(3, 2, 2, more));
  const std::string good_labels = tmp.Write("lbl2", IdxLabels(3, kLabels));
  ExpectInvalid(LoadIdx(trailing, good_labels),
                {trailing, "unexpected data after the 12 pixel bytes"});

  const std::string zero_dim = tmp.Write("img3", IdxImages(3, 0, 2, {}));
  ExpectInvalid(LoadIdx(zero_dim, good_labels),
                {zero_dim, "dimension 2 is 0"});
}

TEST(LoaderIdxTest, HugeDeclaredSizesFailWithoutAllocating) {
  TempDir tmp;
  // 10^9 images of 1000 x 1000 pixels: 10^15 values.
  const std::string images =
      tmp.Write("img", IdxImages(1000000000u, 1000, 1000, kPixels));
  const std::string labels =
      tmp.Write("lbl", IdxLabels(1000000000u, kLabels));
  ExpectInvalid(LoadIdx(images, labels), {images, "limit"});

  // Under the limit (10^6 images of 28 x 28) but absent from the file: the
  // reader must notice after the bytes that are there, not allocate 784 MB
  // first (run under ASan/ulimit to see the difference).
  const std::string images2 =
      tmp.Write("img2", IdxImages(1000000, 28, 28, kPixels));
  const std::string labels2 =
      tmp.Write("lbl2", IdxLabels(1000000, kLabels));
  ExpectInvalid(LoadIdx(images2, labels2), {labels2, "truncated"});
}

TEST(LoaderIdxTest, MissingFileIsNotFound) {
  TempDir tmp;
  const std::string labels = tmp.Write("lbl", IdxLabels(3, kLabels));
  const absl::StatusOr<Dataset> result = LoadIdx("/nonexistent/img", labels);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("/nonexistent/img"));
}

// ---------------------------------------------------------------------------
// CSV.

CsvOptions WithHeader() {
  CsvOptions options;
  options.has_header = true;
  return options;
}

TEST(LoaderCsvTest, ReadsFixtureExactly) {
  absl::StatusOr<Dataset> data =
      LoadCsv(FixturePath("tiny.csv").string(), WithHeader());
  ASSERT_TRUE(data.ok()) << data.status();
  RowMajorMatrixF expected(3, 3);
  expected << 0.5f, 1.0f, -2.0f, 1.5f, 2.25f, 300.0f, -0.125f, 4.0f, 0.0f;
  EXPECT_EQ(data->features, expected);
  EXPECT_EQ(data->labels, test::Vec({0, 2, 1}));
  EXPECT_EQ(data->num_classes, 3);
}

TEST(LoaderCsvTest, GzipEqualsPlain) {
  TempDir tmp;
  const std::string text = ReadFile(FixturePath("tiny.csv"));
  ASSERT_FALSE(text.empty());
  absl::StatusOr<Dataset> plain =
      LoadCsv(FixturePath("tiny.csv").string(), WithHeader());
  absl::StatusOr<Dataset> gzip =
      LoadCsv(tmp.WriteGzip("tiny.csv.gz", text), WithHeader());
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  ExpectSameDataset(*plain, *gzip);
}

TEST(LoaderCsvTest, LabelColumnDelimiterRegressionAndCrlf) {
  TempDir tmp;
  const std::string path =
      tmp.Write("semi.csv", "0.25;1;2\r\n-1.5;3;4\r\n\r\n");
  CsvOptions options;
  options.delimiter = ';';
  options.label_column = 0;
  options.classification = false;
  absl::StatusOr<Dataset> data = LoadCsv(path, options);
  ASSERT_TRUE(data.ok()) << data.status();
  RowMajorMatrixF expected(2, 2);
  expected << 1, 2, 3, 4;
  EXPECT_EQ(data->features, expected);
  EXPECT_EQ(data->labels, test::Vec({0.25, -1.5}));
  EXPECT_EQ(data->num_classes, 0);

  options.label_column = 3;
  ExpectInvalid(LoadCsv(path, options), {"label_column = 3", "3 columns"});
}

TEST(LoaderCsvTest, RejectsRaggedRow) {
  TempDir tmp;
  const std::string path = tmp.Write("ragged.csv", "1,2,0\n3,4,1\n5,6\n");
  ExpectInvalid(LoadCsv(path),
                {path + ":3:", "2 columns", "expected 3", "line 1"});
}

TEST(LoaderCsvTest, RejectsNonNumericCells) {
  TempDir tmp;
  const std::string path = tmp.Write("text.csv", "1,2,0\n3,abc,1\n");
  ExpectInvalid(LoadCsv(path),
                {path + ":2:", "column 2", "'abc' is not a finite number"});
  const std::string empty_cell = tmp.Write("empty.csv", "1,,0\n");
  ExpectInvalid(LoadCsv(empty_cell), {empty_cell + ":1:", "column 2",
                                      "empty cell"});
  const std::string nan = tmp.Write("nan.csv", "1,nan,0\n");
  ExpectInvalid(LoadCsv(nan), {nan + ":1:", "'nan'"});
}

TEST(LoaderCsvTest, RejectsBadClassLabels) {
  TempDir tmp;
  const std::string fractional = tmp.Write("frac.csv", "1,2,0\n3,4,1.5\n");
  ExpectInvalid(LoadCsv(fractional),
                {fractional + ":2:", "column 3", "label 1.5", "class index"});
  const std::string negative = tmp.Write("neg.csv", "1,2,-1\n");
  ExpectInvalid(LoadCsv(negative), {negative + ":1:", "label -1"});
  const std::string header_only = tmp.Write("hdr.csv", "a,b,c\n");
  ExpectInvalid(LoadCsv(header_only, WithHeader()), {"no data rows"});
}

TEST(LoaderCsvTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadCsv("/nonexistent/x.csv").status().code(),
            absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------
// LIBSVM.

TEST(LoaderLibsvmTest, ReadsFixtureExactly) {
  absl::StatusOr<Dataset> data =
      LoadLibsvm(FixturePath("tiny.libsvm").string());
  ASSERT_TRUE(data.ok()) << data.status();
  RowMajorMatrixF expected(4, 4);
  expected << 0.5f, 0, -1.25f, 0,  //
      0, 2, 0, 0,                   //
      0, 0, 0, 0,                   //
      1, 1, 0, 0.75f;
  EXPECT_EQ(data->features, expected);
  EXPECT_EQ(data->labels, test::Vec({1, 0, 1, 0}));
  EXPECT_EQ(data->num_classes, 2);
}

TEST(LoaderLibsvmTest, GzipEqualsPlainAndFixedWidth) {
  TempDir tmp;
  const std::string gz =
      tmp.WriteGzip("tiny.gz", ReadFile(FixturePath("tiny.libsvm")));
  absl::StatusOr<Dataset> plain =
      LoadLibsvm(FixturePath("tiny.libsvm").string());
  absl::StatusOr<Dataset> gzip = LoadLibsvm(gz);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  ExpectSameDataset(*plain, *gzip);

  absl::StatusOr<Dataset> wide = LoadLibsvm(gz, /*num_features=*/6);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->dim(), 6);
  EXPECT_EQ(wide->features.leftCols(4), plain->features);
  EXPECT_TRUE(wide->features.rightCols(2).isZero());

  ExpectInvalid(LoadLibsvm(gz, /*num_features=*/3),
                {gz + ":5:", "feature index 4", "num_features = 3"});
}

TEST(LoaderLibsvmTest, MultiClassLabelsAreClassIndices) {
  TempDir tmp;
  const std::string path = tmp.Write("multi", "0 1:1\n2 2:1\n1 1:3\n");
  absl::StatusOr<Dataset> data = LoadLibsvm(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->labels, test::Vec({0, 2, 1}));
  EXPECT_EQ(data->num_classes, 3);

  const std::string negative = tmp.Write("neg", "0 1:1\n-2 1:1\n");
  ExpectInvalid(LoadLibsvm(negative), {negative + ":2:", "label -2"});
  const std::string mixed = tmp.Write("mixed", "1 1:1\n-1 1:1\n0 1:1\n");
  ExpectInvalid(LoadLibsvm(mixed), {mixed + ":3:", "label 0"});
}

TEST(LoaderLibsvmTest, RejectsMalformedLines) {
  TempDir tmp;
  const std::string order = tmp.Write("order", "+1 1:1 3:1\n-1 2:1 2:5\n");
  ExpectInvalid(LoadLibsvm(order), {order + ":2:", "feature index 2",
                                    "follows index 2", "strictly increasing"});
  const std::string down = tmp.Write("down", "+1 3:1 1:1\n");
  ExpectInvalid(LoadLibsvm(down), {down + ":1:", "strictly increasing"});
  const std::string zero = tmp.Write("zero", "+1 0:1\n");
  ExpectInvalid(LoadLibsvm(zero), {zero + ":1:", "'0'", ">= 1"});
  const std::string pair = tmp.Write("pair", "+1 1:1 junk\n");
  ExpectInvalid(LoadLibsvm(pair),
                {pair + ":1:", "'junk' is not an index:value pair"});
  const std::string value = tmp.Write("value", "+1 1:x\n");
  ExpectInvalid(LoadLibsvm(value), {value + ":1:", "feature 1", "'x'"});
  const std::string label = tmp.Write("label", "1.5 1:1\n");
  ExpectInvalid(LoadLibsvm(label), {label + ":1:", "'1.5' is not an integer"});
  const std::string huge = tmp.Write("huge", "+1 99999999999:1\n-1 1:1\n");
  ExpectInvalid(LoadLibsvm(huge), {huge, "limit"});
}

// ---------------------------------------------------------------------------
// Partitions.

// n rows; row i has label i % num_classes.
Dataset LabeledRows(std::int64_t n, int num_classes) {
  Dataset data;
  data.features = RowMajorMatrixF::Zero(n, 1);
  data.labels.resize(n);
  for (std::int64_t i = 0; i < n; ++i) data.labels[i] = i % num_classes;
  data.num_classes = num_classes;
  return data;
}

using Parts = std::vector<std::vector<std::int64_t>>;

Parts Partition(const Dataset& data, const PartitionSpec& spec,
                std::uint64_t seed) {
  RngStream rng(seed, RngPurpose::kPartition, -1, -1);
  absl::StatusOr<Parts> parts = PartitionRows(data, spec, rng);
  EXPECT_TRUE(parts.ok()) << parts.status();
  return parts.ok() ? *parts : Parts();
}

// Every row of [0, n) in exactly one client, every list sorted.
void ExpectExactCover(const Parts& parts, std::int64_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& part : parts) {
    EXPECT_TRUE(std::is_sorted(part.begin(), part.end()));
    for (std::int64_t r : part) {
      ASSERT_TRUE(r >= 0 && r < n) << r;
      ++seen[r];
    }
  }
  for (std::int64_t r = 0; r < n; ++r) EXPECT_EQ(seen[r], 1) << "row " << r;
}

PartitionSpec Spec(PartitionKind kind, int num_clients) {
  PartitionSpec spec;
  spec.kind = kind;
  spec.num_clients = num_clients;
  return spec;
}

TEST(PartitionTest, IidCoversEveryRowWithBalancedSizes) {
  const Dataset data = LabeledRows(1003, 10);
  const Parts parts = Partition(data, Spec(PartitionKind::kIid, 10), 7);
  ASSERT_EQ(parts.size(), 10u);
  ExpectExactCover(parts, 1003);
  std::size_t lo = parts[0].size(), hi = parts[0].size();
  for (const auto& part : parts) {
    lo = std::min(lo, part.size());
    hi = std::max(hi, part.size());
  }
  EXPECT_LE(hi - lo, 1u);
}

// Fraction of client k's rows whose label is c.
std::vector<std::vector<double>> LabelShares(const Dataset& data,
                                             const Parts& parts) {
  std::vector<std::vector<double>> shares(
      parts.size(), std::vector<double>(data.num_classes, 0.0));
  for (std::size_t k = 0; k < parts.size(); ++k) {
    for (std::int64_t r : parts[k]) {
      shares[k][static_cast<int>(data.labels[r])] += 1.0 / parts[k].size();
    }
  }
  return shares;
}

TEST(PartitionTest, DirichletLargeAlphaIsNearlyBalanced) {
  const Dataset data = LabeledRows(10000, 10);
  PartitionSpec spec = Spec(PartitionKind::kDirichlet, 5);
  spec.dirichlet_alpha = 1e4;
  const Parts parts = Partition(data, spec, 11);
  ExpectExactCover(parts, 10000);
  for (const auto& client : LabelShares(data, parts)) {
    for (double share : client) EXPECT_NEAR(share, 0.1, 0.02);
  }
}

TEST(PartitionTest, DirichletSmallAlphaIsStronglySkewed) {
  const Dataset data = LabeledRows(10000, 10);
  PartitionSpec spec = Spec(PartitionKind::kDirichlet, 5);
  spec.dirichlet_alpha = 0.05;
  const Parts parts = Partition(data, spec, 11);
  ExpectExactCover(parts, 10000);
  double mean_top_share = 0.0;
  for (const auto& client : LabelShares(data, parts)) {
    EXPECT_FALSE(client.empty());
    mean_top_share += *std::max_element(client.begin(), client.end()) / 5;
  }
  // Balanced data would give 0.1; with alpha = 0.05 most clients are
  // dominated by one or two classes.
  EXPECT_GT(mean_top_share, 0.4);
}

// Issue 20: every client non-empty by construction (no redraws), at 10^6
// clients; the old redraw loop refused 10^4 clients of Fashion-MNIST.
TEST(PartitionTest, DirichletGivesEveryOfAMillionClientsARow) {
  const std::int64_t n = 1'500'000;
  const Dataset data = LabeledRows(n, 10);
  PartitionSpec spec = Spec(PartitionKind::kDirichlet, 1'000'000);
  spec.dirichlet_alpha = 0.1;
  const Parts parts = Partition(data, spec, 5);
  ASSERT_EQ(parts.size(), 1'000'000u);
  std::int64_t total = 0;
  std::vector<char> seen(n, 0);
  for (const auto& part : parts) {
    ASSERT_FALSE(part.empty());
    ASSERT_TRUE(std::is_sorted(part.begin(), part.end()));
    for (std::int64_t r : part) {
      ASSERT_EQ(seen[r], 0) << "row " << r << " in two clients";
      seen[r] = 1;
    }
    total += static_cast<std::int64_t>(part.size());
  }
  EXPECT_EQ(total, n);
  // Two rows with alpha 0.01: one each, whatever the draw.
  PartitionSpec tiny = Spec(PartitionKind::kDirichlet, 20);
  tiny.dirichlet_alpha = 0.01;
  const Parts exact = Partition(LabeledRows(20, 2), tiny, 1);
  for (const auto& part : exact) EXPECT_EQ(part.size(), 1u);
}

// The law: client k's share of class c's rows (beyond the K reserved ones)
// is p_c,k of p_c ~ Dir(alpha 1_K), whose marginal is Beta(alpha, (K-1)
// alpha), up to the floor of the cut and the reserved rows (1 / m_c =
// 0.0005 here, small against the threshold). Two cases with a closed-form
// CDF: alpha = 1, K = 10 gives Beta(1, 9), F(x) = 1 - (1 - x)^9; alpha =
// 1/2, K = 2 the arcsine law, F(x) = (2 / pi) asin(sqrt x). One share per
// (class, seed), of client c mod K, so the draws are independent: 10
// classes x 250 seeds = 2500 draws. KS at a 0.1 % false-alarm rate: reject
// sqrt(n) D above 1.95, D above 0.039 (the seeds are fixed: the test is
// deterministic; 0.1 % is the chance that a correct sampler fails it for a
// random choice of seeds).
TEST(PartitionTest, DirichletSharesFollowTheDirichletLaw) {
  const int classes = 10;
  const std::int64_t per_class = 2'000;
  const Dataset data = LabeledRows(classes * per_class, classes);
  struct Case {
    int clients;
    double alpha;
    double (*cdf)(double);
  };
  const Case cases[] = {
      {10, 1.0, [](double x) { return 1.0 - std::pow(1.0 - x, 9); }},
      {2, 0.5, [](double x) { return 2.0 / std::numbers::pi * std::asin(std::sqrt(x)); }},
  };
  for (const Case& c : cases) {
    PartitionSpec spec = Spec(PartitionKind::kDirichlet, c.clients);
    spec.dirichlet_alpha = c.alpha;
    std::vector<double> shares;
    for (std::uint64_t seed = 1; seed <= 250; ++seed) {
      const Parts parts = Partition(data, spec, seed);
      std::vector<std::vector<std::int64_t>> count(
          c.clients, std::vector<std::int64_t>(classes, 0));
      for (int k = 0; k < c.clients; ++k) {
        for (std::int64_t r : parts[k]) ++count[k][static_cast<int>(data.labels[r])];
      }
      for (int cls = 0; cls < classes; ++cls) {
        shares.push_back(static_cast<double>(count[cls % c.clients][cls]) / per_class);
      }
    }
    EXPECT_LT(test::KolmogorovSmirnov(shares, c.cdf), test::kKs001)
        << "K = " << c.clients << ", alpha = " << c.alpha;
  }
}

TEST(PartitionTest, ShardsGiveEqualLabelPureShares) {
  // 10 classes x 60 rows, 20 shards of 30: each shard holds a single label.
  const Dataset data = LabeledRows(600, 10);
  PartitionSpec spec = Spec(PartitionKind::kShards, 10);
  spec.shards_per_client = 2;
  const Parts parts = Partition(data, spec, 3);
  ExpectExactCover(parts, 600);
  for (const auto& part : parts) {
    EXPECT_EQ(part.size(), 60u);
    std::set<double> labels;
    for (std::int64_t r : part) labels.insert(data.labels[r]);
    EXPECT_LE(labels.size(), 2u);
  }
}

TEST(PartitionTest, ShardsLeaveTheRemainderUnassigned) {
  const Dataset data = LabeledRows(605, 10);
  PartitionSpec spec = Spec(PartitionKind::kShards, 10);
  spec.shards_per_client = 2;
  const Parts parts = Partition(data, spec, 3);
  std::set<std::int64_t> all;
  for (const auto& part : parts) {
    EXPECT_EQ(part.size(), 60u);
    EXPECT_TRUE(std::is_sorted(part.begin(), part.end()));
    all.insert(part.begin(), part.end());
  }
  EXPECT_EQ(all.size(), 600u);
}

TEST(PartitionTest, DeterministicPerSeed) {
  const Dataset data = LabeledRows(500, 5);
  for (PartitionKind kind : {PartitionKind::kIid, PartitionKind::kDirichlet,
                             PartitionKind::kShards}) {
    const PartitionSpec spec = Spec(kind, 10);
    const Parts a = Partition(data, spec, 42);
    EXPECT_EQ(a, Partition(data, spec, 42)) << static_cast<int>(kind);
    EXPECT_NE(a, Partition(data, spec, 43)) << static_cast<int>(kind);
  }
}

TEST(PartitionTest, RejectsBadSpecs) {
  const Dataset data = LabeledRows(300, 3);
  RngStream rng(1, RngPurpose::kPartition, -1, -1);
  auto message = [&](const PartitionSpec& spec) {
    const absl::StatusOr<Parts> parts = PartitionRows(data, spec, rng);
    EXPECT_EQ(parts.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(parts.status().message());
  };
  EXPECT_THAT(message(Spec(PartitionKind::kIid, 500)),
              HasSubstr("num_clients = 500 exceeds the 300 training rows"));
  EXPECT_THAT(message(Spec(PartitionKind::kIid, 0)),
              HasSubstr("num_clients = 0; must be >= 1"));
  PartitionSpec dirichlet = Spec(PartitionKind::kDirichlet, 3);
  dirichlet.dirichlet_alpha = 0;
  EXPECT_THAT(message(dirichlet), HasSubstr("dirichlet_alpha = 0"));
  PartitionSpec shards = Spec(PartitionKind::kShards, 200);
  shards.shards_per_client = 2;
  EXPECT_THAT(message(shards), HasSubstr("400 shards exceed the 300"));
  shards.shards_per_client = 0;
  EXPECT_THAT(message(shards), HasSubstr("shards_per_client = 0"));

  Dataset regression = LabeledRows(300, 3);
  regression.num_classes = 0;
  EXPECT_FALSE(
      PartitionRows(regression, Spec(PartitionKind::kDirichlet, 3), rng).ok());
}

// ---------------------------------------------------------------------------
// Synthetic data.

TEST(SyntheticLeastSquaresTest, OptimumHasZeroPooledGradient) {
  LeastSquaresSpec spec;
  spec.num_clients = 7;
  spec.examples_per_client = 40;
  spec.dim = 6;
  spec.noise_std = 0.3;
  spec.heterogeneity = 1.0;
  spec.test_examples = 50;
  absl::StatusOr<FederatedData> data = MakeLeastSquares(spec, 5);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->train.size(), 280);
  ASSERT_EQ(data->train.dim(), 6);
  EXPECT_EQ(data->test.size(), 50);
  EXPECT_EQ(data->train.num_classes, 0);
  ASSERT_EQ(data->client_rows.size(), 7u);
  ExpectExactCover(data->client_rows, 280);
  ASSERT_TRUE(data->optimum.has_value());

  // Gradient of (1/2n) sum (x . theta - y)^2, from the rows as a client
  // sees them.
  Batch batch;
  Eigen::VectorXd gradient = Eigen::VectorXd::Zero(6);
  for (const auto& rows : data->client_rows) {
    GatherBatch(data->train, rows, batch);
    gradient += batch.x.transpose() * (batch.x * *data->optimum - batch.y);
  }
  gradient /= 280.0;
  EXPECT_LT(gradient.lpNorm<Eigen::Infinity>(), 1e-10) << gradient;

  absl::StatusOr<FederatedData> again = MakeLeastSquares(spec, 5);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->train.features, data->train.features);
  EXPECT_EQ(again->train.labels, data->train.labels);
  EXPECT_EQ(*again->optimum, *data->optimum);
  absl::StatusOr<FederatedData> other = MakeLeastSquares(spec, 6);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->train.labels, data->train.labels);
}

TEST(SyntheticLeastSquaresTest, NoiselessHomogeneousDataIsFitExactly) {
  LeastSquaresSpec spec;
  spec.noise_std = 0.0;
  spec.heterogeneity = 0.0;
  absl::StatusOr<FederatedData> data = MakeLeastSquares(spec, 9);
  ASSERT_TRUE(data.ok()) << data.status();
  const Eigen::VectorXd residual =
      data->train.features.cast<double>() * *data->optimum - data->train.labels;
  EXPECT_LT(residual.lpNorm<Eigen::Infinity>(), 1e-9);
  // The test set comes from the same shared model.
  const Eigen::VectorXd test_residual =
      data->test.features.cast<double>() * *data->optimum - data->test.labels;
  EXPECT_LT(test_residual.lpNorm<Eigen::Infinity>(), 1e-6);
}

TEST(SyntheticLeastSquaresTest, RejectsBadSpecs) {
  LeastSquaresSpec spec;
  spec.dim = 0;
  EXPECT_THAT(std::string(MakeLeastSquares(spec, 1).status().message()),
              HasSubstr("dim = 0; must be >= 1"));
  spec = LeastSquaresSpec();
  spec.num_clients = 1;
  spec.examples_per_client = 3;
  spec.dim = 5;
  EXPECT_THAT(std::string(MakeLeastSquares(spec, 1).status().message()),
              HasSubstr("not be unique"));
}

// The number of test rows each device contributes, found by growing the
// number of devices one at a time (a device's data does not depend on how
// many devices there are).
std::vector<std::int64_t> TestRowsPerDevice(FedProxSyntheticSpec spec,
                                            std::uint64_t seed) {
  std::vector<std::int64_t> counts;
  std::int64_t previous = 0;
  const int num_devices = spec.num_devices;
  for (int k = 1; k <= num_devices; ++k) {
    spec.num_devices = k;
    absl::StatusOr<FederatedData> data = MakeFedProxSynthetic(spec, seed);
    EXPECT_TRUE(data.ok()) << data.status();
    counts.push_back(data->test.size() - previous);
    previous = data->test.size();
  }
  return counts;
}

TEST(SyntheticFedProxTest, SizesSplitAndLabels) {
  FedProxSyntheticSpec spec;
  spec.alpha = 0.5;
  spec.beta = 0.5;
  spec.num_devices = 8;
  absl::StatusOr<FederatedData> data = MakeFedProxSynthetic(spec, 3);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.dim(), 60);
  EXPECT_EQ(data->test.dim(), 60);
  EXPECT_EQ(data->train.num_classes, 10);
  EXPECT_EQ(data->test.num_classes, 10);
  ASSERT_EQ(data->client_rows.size(), 8u);
  ExpectExactCover(data->client_rows, data->train.size());

  const std::vector<std::int64_t> test_rows = TestRowsPerDevice(spec, 3);
  for (int k = 0; k < 8; ++k) {
    const auto n_train = static_cast<std::int64_t>(data->client_rows[k].size());
    const std::int64_t n_k = n_train + test_rows[k];
    EXPECT_GE(n_k, 50) << "device " << k;
    EXPECT_EQ(n_train, (9 * n_k) / 10) << "device " << k;
  }

  for (const Dataset* set : {&data->train, &data->test}) {
    EXPECT_GE(set->labels.minCoeff(), 0);
    EXPECT_LE(set->labels.maxCoeff(), 9);
    EXPECT_TRUE((set->labels.array() == set->labels.array().floor()).all());
    EXPECT_TRUE(set->features.allFinite());
  }
  // More than one class is used overall.
  const std::set<double> classes(data->train.labels.begin(),
                                 data->train.labels.end());
  EXPECT_GT(classes.size(), 2u);
}

TEST(SyntheticFedProxTest, DeterministicAndIndependentOfDeviceCount) {
  FedProxSyntheticSpec spec;
  spec.num_devices = 5;
  absl::StatusOr<FederatedData> a = MakeFedProxSynthetic(spec, 3);
  absl::StatusOr<FederatedData> b = MakeFedProxSynthetic(spec, 3);
  absl::StatusOr<FederatedData> c = MakeFedProxSynthetic(spec, 4);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->train.features, b->train.features);
  EXPECT_EQ(a->train.labels, b->train.labels);
  EXPECT_EQ(a->test.features, b->test.features);
  EXPECT_EQ(a->client_rows, b->client_rows);
  EXPECT_FALSE(a->train.size() == c->train.size() &&
               a->train.features == c->train.features);

  // Device 0 is the same data whether there are 1 or 5 devices.
  spec.num_devices = 1;
  absl::StatusOr<FederatedData> one = MakeFedProxSynthetic(spec, 3);
  ASSERT_TRUE(one.ok());
  const auto n0 = static_cast<std::int64_t>(one->train.size());
  ASSERT_EQ(static_cast<std::int64_t>(a->client_rows[0].size()), n0);
  EXPECT_EQ(a->train.features.topRows(n0), one->train.features);
}

TEST(SyntheticFedProxTest, IidVariantSharesDeviceSizes) {
  FedProxSyntheticSpec spec;
  spec.num_devices = 6;
  absl::StatusOr<FederatedData> non_iid = MakeFedProxSynthetic(spec, 8);
  spec.iid = true;
  absl::StatusOr<FederatedData> iid = MakeFedProxSynthetic(spec, 8);
  ASSERT_TRUE(non_iid.ok() && iid.ok());
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(iid->client_rows[k].size(), non_iid->client_rows[k].size());
  }
  EXPECT_GE(iid->train.labels.minCoeff(), 0);
  EXPECT_LE(iid->train.labels.maxCoeff(), 9);
  // v_k = 0: the feature means are near zero on every device (the first
  // coordinate has unit variance).
  for (const auto& rows : iid->client_rows) {
    double mean = 0;
    for (std::int64_t r : rows) mean += iid->train.features(r, 0);
    mean /= rows.size();
    EXPECT_LT(std::abs(mean),
              5.0 / std::sqrt(static_cast<double>(rows.size())));
  }
}

TEST(SyntheticFedProxTest, RejectsBadSpecs) {
  FedProxSyntheticSpec spec;
  spec.num_classes = 1;
  EXPECT_THAT(std::string(MakeFedProxSynthetic(spec, 1).status().message()),
              HasSubstr("num_classes = 1; must be >= 2"));
  spec = FedProxSyntheticSpec();
  spec.alpha = -1;
  EXPECT_THAT(std::string(MakeFedProxSynthetic(spec, 1).status().message()),
              HasSubstr("alpha = -1"));
  spec = FedProxSyntheticSpec();
  spec.num_devices = 0;
  EXPECT_EQ(MakeFedProxSynthetic(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Client-contiguous rows: every client reads the same rows, in the same
// order, as before; its rows now form one block, in client order; a row
// of two clients moves with the first; rows of no client go last, in
// their old order; nothing is lost or duplicated.
TEST(ClientContiguousTest, RenumbersWithoutChangingWhatClientsRead) {
  FederatedData data;
  constexpr std::int64_t n = 12, d = 5;
  data.train.features.resize(n, d);
  data.train.labels.resize(n);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t j = 0; j < d; ++j) data.train.features(r, j) = static_cast<float>(10 * r + j);
    data.train.labels[r] = static_cast<double>(r % 3);
  }
  data.train.num_classes = 3;
  // Rows 2 and 7 belong to nobody; row 5 to clients 0 and 2.
  data.client_rows = {{9, 5, 0}, {11, 4, 1, 3}, {5, 8, 6, 10}};
  const FederatedData before = data;
  MakeClientRowsContiguous(data);

  ASSERT_EQ(data.train.size(), n);
  ASSERT_EQ(data.client_rows.size(), before.client_rows.size());
  for (std::size_t k = 0; k < data.client_rows.size(); ++k) {
    ASSERT_EQ(data.client_rows[k].size(), before.client_rows[k].size());
    for (std::size_t j = 0; j < data.client_rows[k].size(); ++j) {
      const std::int64_t now = data.client_rows[k][j], was = before.client_rows[k][j];
      EXPECT_EQ(data.train.features.row(now), before.train.features.row(was)) << k << " " << j;
      EXPECT_EQ(data.train.labels[now], before.train.labels[was]) << k << " " << j;
    }
  }
  EXPECT_EQ(data.client_rows[0], (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_EQ(data.client_rows[1], (std::vector<std::int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(data.client_rows[2], (std::vector<std::int64_t>{1, 7, 8, 9}));  // shares row 1
  // Old rows 2 and 7, unlisted, last and in order.
  EXPECT_EQ(data.train.features.row(10), before.train.features.row(2));
  EXPECT_EQ(data.train.features.row(11), before.train.features.row(7));
  std::multiset<float> first_before, first_after;
  for (std::int64_t r = 0; r < n; ++r) {
    first_before.insert(before.train.features(r, 0));
    first_after.insert(data.train.features(r, 0));
  }
  EXPECT_EQ(first_after, first_before);
  EXPECT_EQ(data.train.num_classes, 3);
}

}  // namespace
}  // namespace data_test
}  // namespace fedsim
