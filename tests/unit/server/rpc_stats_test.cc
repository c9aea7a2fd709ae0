// RpcStats and its latency histogram: exact bucket placement at every
// bound, percentiles on a known distribution, the rpc_stats record.
#include "server/coordinator/rpc_stats.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace fedsim::rpc_stats_test {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(LatencyHistogramTest, BoundsAreTheR10SeriesFrom1usTo100s) {
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(0), 1'000);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(1), 1'250);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(2), 1'600);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(5), 3'150);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(9), 8'000);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(10), 10'000);
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(38), 6'300'000);       // 6.3 ms
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(79), 80'000'000'000);  // 80 s
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(80), 100'000'000'000);  // 100 s
  EXPECT_EQ(LatencyHistogram::UpperBoundNs(81), std::numeric_limits<std::int64_t>::max());
  // Log-spaced: the bounds increase, each at most 1.28 times the one before.
  for (int b = 1; b <= 80; ++b) {
    const double lo = static_cast<double>(LatencyHistogram::UpperBoundNs(b - 1));
    const double hi = static_cast<double>(LatencyHistogram::UpperBoundNs(b));
    EXPECT_GT(hi, lo) << b;
    EXPECT_LE(hi / lo, 1.28 + 1e-12) << b;
  }
}

TEST(LatencyHistogramTest, PlacesEverySampleInItsHalfOpenBucket) {
  EXPECT_EQ(LatencyHistogram::BucketOf(-5), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(999), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(1'000), 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(1'249), 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(1'250), 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(9'999), 10);
  EXPECT_EQ(LatencyHistogram::BucketOf(10'000), 11);
  EXPECT_EQ(LatencyHistogram::BucketOf(99'999'999'999), 80);
  EXPECT_EQ(LatencyHistogram::BucketOf(100'000'000'000), 81);
  EXPECT_EQ(LatencyHistogram::BucketOf(std::numeric_limits<std::int64_t>::max()), 81);
  // At every bound: the bound opens bucket b+1, one below it closes b.
  for (int b = 0; b <= 80; ++b) {
    const std::int64_t bound = LatencyHistogram::UpperBoundNs(b);
    EXPECT_EQ(LatencyHistogram::BucketOf(bound - 1), b) << bound;
    EXPECT_EQ(LatencyHistogram::BucketOf(bound), b + 1) << bound;
  }
}

TEST(LatencyHistogramTest, PercentilesOfAKnownDistribution) {
  LatencyHistogram h;
  EXPECT_EQ(h.Read().PercentileNs(0.5), 0);  // empty
  // 1000 samples: 900 x 2 us, 90 x 3 ms, 9 x 40 ms, 1 x 2 s.
  for (int i = 0; i < 900; ++i) h.Record(2'000);
  for (int i = 0; i < 90; ++i) h.Record(3'000'000);
  for (int i = 0; i < 9; ++i) h.Record(40'000'000);
  h.Record(2'000'000'000);
  const LatencyHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, 1000);
  EXPECT_EQ(s.sum_ns, 900LL * 2'000 + 90LL * 3'000'000 + 9LL * 40'000'000 + 2'000'000'000);
  EXPECT_EQ(s.max_ns, 2'000'000'000);
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(2'000)], 900);
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(3'000'000)], 90);
  // The upper bound of the bucket of the ceil(q * 1000)-th sample.
  EXPECT_EQ(s.PercentileNs(0.001), 2'500);       // rank 1: [2, 2.5) us
  EXPECT_EQ(s.PercentileNs(0.50), 2'500);        // rank 500
  EXPECT_EQ(s.PercentileNs(0.90), 2'500);        // rank 900, the last 2 us
  EXPECT_EQ(s.PercentileNs(0.901), 3'150'000);   // rank 901: [2.5, 3.15) ms
  EXPECT_EQ(s.PercentileNs(0.95), 3'150'000);
  EXPECT_EQ(s.PercentileNs(0.99), 3'150'000);    // rank 990, the last 3 ms
  EXPECT_EQ(s.PercentileNs(0.995), 50'000'000);  // [40, 50) ms
  // The largest sample's bucket [2, 2.5) s is capped at the maximum.
  EXPECT_EQ(s.PercentileNs(1.0), 2'000'000'000);
}

TEST(LatencyHistogramTest, OverflowBucketReportsTheMaximum) {
  LatencyHistogram h;
  h.Record(200'000'000'000);  // 200 s
  h.Record(-3);               // a clock step: counted as 0
  const LatencyHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.counts[81], 1);
  EXPECT_EQ(s.counts[0], 1);
  EXPECT_EQ(s.PercentileNs(0.5), 1'000);
  EXPECT_EQ(s.PercentileNs(0.99), 200'000'000'000);
}

TEST(RpcStatsTest, CountsCodesBytesAndLatencyPerMethod) {
  RpcStats stats;
  stats.Record(RpcMethod::kPushResult, 0, 100, 4, milliseconds(2));
  stats.Record(RpcMethod::kPushResult, 0, 100, 4, milliseconds(3));
  stats.Record(RpcMethod::kPushResult, 9, 100, 0, milliseconds(1));  // FAILED_PRECONDITION
  stats.Record(RpcMethod::kJoin, 16, 50, 0, nanoseconds(500));       // UNAUTHENTICATED
  stats.Record(RpcMethod::kJoin, 99, 50, 0, nanoseconds(500));       // out of range: UNKNOWN
  const RpcStats::MethodSnapshot push = stats.Read(RpcMethod::kPushResult);
  EXPECT_EQ(push.calls, 3);
  EXPECT_EQ(push.codes[0], 2);
  EXPECT_EQ(push.codes[9], 1);
  EXPECT_EQ(push.request_bytes, 300);
  EXPECT_EQ(push.response_bytes, 8);
  EXPECT_EQ(push.latency.max_ns, 3'000'000);
  EXPECT_EQ(stats.Read(RpcMethod::kHeartbeat).calls, 0);

  const nlohmann::json j = stats.ToJson();
  EXPECT_EQ(j["event"], "rpc_stats");
  EXPECT_GT(j["elapsed_s"].get<double>(), 0.0);
  ASSERT_EQ(j["methods"].size(), 7u);
  for (const char* name : {"Join", "PullTask", "PushResult", "Heartbeat", "Leave",
                           "FetchChunk", "UploadChunk"}) {
    EXPECT_TRUE(j["methods"].contains(name)) << name;
  }
  const nlohmann::json& p = j["methods"]["PushResult"];
  EXPECT_EQ(p["calls"], 3);
  EXPECT_EQ(p["codes"], (nlohmann::json{{"OK", 2}, {"FAILED_PRECONDITION", 1}}));
  EXPECT_EQ(p["request_bytes"], 300);
  EXPECT_EQ(p["response_bytes"], 8);
  EXPECT_GT(p["requests_per_s"].get<double>(), 0.0);
  // Samples 1, 2, 3 ms: buckets [1, 1.25), [2, 2.5), [2.5, 3.15) ms.
  EXPECT_DOUBLE_EQ(p["latency_ms"]["p50"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(p["latency_ms"]["p99"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(p["latency_ms"]["max"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(p["latency_ms"]["mean"].get<double>(), 2.0);
  EXPECT_EQ(p["latency_buckets"],
            (nlohmann::json{{1250.0, 1}, {2500.0, 1}, {3150.0, 1}}));
  EXPECT_EQ(j["methods"]["Join"]["codes"],
            (nlohmann::json{{"UNKNOWN", 1}, {"UNAUTHENTICATED", 1}}));
  EXPECT_EQ(j["methods"]["Heartbeat"]["calls"], 0);
  EXPECT_EQ(j["methods"]["Heartbeat"]["latency_ms"]["p99"], 0.0);

  const std::string table = stats.Table();
  EXPECT_NE(table.find("PushResult"), std::string::npos) << table;
  EXPECT_NE(table.find("OK=2 FAILED_PRECONDITION=1"), std::string::npos) << table;
  EXPECT_EQ(table.find("Heartbeat"), std::string::npos) << table;  // no calls
}

TEST(RpcStatsTest, ConcurrentRecordsAreAllCounted) {
  RpcStats stats;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&stats, t] {
      for (int i = 0; i < 20000; ++i) {
        stats.Record(RpcMethod::kHeartbeat, i % 2 == 0 ? 0 : 14, 10, 2,
                     nanoseconds(1'000 * (t + 1)));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  const RpcStats::MethodSnapshot s = stats.Read(RpcMethod::kHeartbeat);
  EXPECT_EQ(s.calls, 80000);
  EXPECT_EQ(s.codes[0], 40000);
  EXPECT_EQ(s.codes[14], 40000);  // UNAVAILABLE
  EXPECT_EQ(s.request_bytes, 800000);
  EXPECT_EQ(s.response_bytes, 160000);
  EXPECT_EQ(s.latency.count, 80000);
  EXPECT_EQ(s.latency.max_ns, 4'000);
}

}  // namespace
}  // namespace fedsim::rpc_stats_test
