// The byte encoding of strategy state in checkpoints (common/base/byte_io.h):
// exact bytes (the format must not change between builds or hosts), round
// trips, and short buffers.
#include "common/base/byte_io.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fedsim {
namespace byte_io_test {
namespace {

std::string Bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

TEST(ByteIoTest, VectorsAreLittleEndianWithACountFirst) {
  ByteWriter w;
  w.I64s({1, -2});
  w.F64s({1.0});
  const std::string expected =
      Bytes({2, 0, 0, 0, 0, 0, 0, 0,                            // count 2
             1, 0, 0, 0, 0, 0, 0, 0,                            // 1
             0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,    // -2
             1, 0, 0, 0, 0, 0, 0, 0,                            // count 1
             0, 0, 0, 0, 0, 0, 0xf0, 0x3f});                    // 1.0
  EXPECT_EQ(w.bytes(), expected);
}

TEST(ByteIoTest, RoundTripsEveryValue) {
  const std::vector<std::int64_t> ints = {0, 1, -1, std::numeric_limits<std::int64_t>::min(),
                                          std::numeric_limits<std::int64_t>::max(), 1234567};
  const std::vector<double> doubles = {0.0, -0.0, 1.5, -3.25e300,
                                       std::numeric_limits<double>::denorm_min()};
  ByteWriter w;
  w.I64(-7);
  w.I64s(ints);
  w.F64s(doubles);
  w.I64s({});
  ByteReader r(w.bytes());
  EXPECT_EQ(r.I64(), -7);
  EXPECT_EQ(r.I64s(), ints);
  const std::vector<double> back = r.F64s();
  ASSERT_EQ(back.size(), doubles.size());
  for (std::size_t i = 0; i < doubles.size(); ++i) {
    EXPECT_EQ(std::memcmp(&back[i], &doubles[i], 8), 0) << i;
  }
  EXPECT_TRUE(r.I64s().empty());
  EXPECT_TRUE(r.done());
}

TEST(ByteIoTest, ShortOrOverlongCountsFailWithoutReadingPastTheEnd) {
  ByteWriter w;
  w.I64s({5, 6, 7});
  const std::string full = w.bytes();
  ByteReader truncated(std::string_view(full).substr(0, full.size() - 1));
  EXPECT_TRUE(truncated.I64s().empty());
  EXPECT_FALSE(truncated.ok());
  ByteWriter huge;
  huge.U64(std::uint64_t{1} << 60);  // a count no buffer can hold
  ByteReader r(huge.bytes());
  EXPECT_TRUE(r.F64s().empty());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.I64(), 0);  // every later read is zero
}

}  // namespace
}  // namespace byte_io_test
}  // namespace fedsim
