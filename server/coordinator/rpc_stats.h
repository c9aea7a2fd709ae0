// File: server/coordinator/rpc_stats.h
//
// Per-RPC statistics of the coordinator (docs/reliability.md, "Load held";
// the `rpc_stats` record of docs/run-directory.md): for every method of
// fedsim.v1.Coordinator, calls by final status code, request and response
// bytes, and a latency histogram with fixed log-spaced buckets from which
// p50/p95/p99 are read. Pure C++: the gRPC adapter (server/grpc) measures
// and calls Record with the canonical code number (absl and gRPC share
// them).
//
// Usage:
//   RpcStats stats;
//   const auto t0 = RpcStats::Clock::now();
//   ... handle the call ...
//   stats.Record(RpcMethod::kPushResult, /*code=*/0, request_bytes,
//                response_bytes, RpcStats::Clock::now() - t0);
//   log->Event(stats.ToJson());      // {"event":"rpc_stats", ...}
//   std::fputs(stats.Table().c_str(), stderr);
//
// Thread safety: Record is lock-free (relaxed atomic counters) and may run
// on any number of threads; ToJson/Table read a snapshot that is consistent
// per counter, not across counters (a call recorded meanwhile may show in
// one and not yet in another).
#ifndef FEDSIM_SERVER_COORDINATOR_RPC_STATS_H_
#define FEDSIM_SERVER_COORDINATOR_RPC_STATS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"

namespace fedsim {

// Latency histogram over fixed, log-spaced buckets: ten per decade, with the
// bounds of the Renard R10 series (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8)
// times a power of ten, from 1 µs to 100 s. Bucket 0 holds [0, 1 µs), bucket
// i (1..80) holds [UpperBoundNs(i-1), UpperBoundNs(i)), bucket 81 holds
// [100 s, inf). A bucket is at most 28 % wide (1.6 / 1.25), so a
// percentile read from it is within 28 % of the exact sample.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 82;

  // The exclusive upper bound of `bucket` in nanoseconds; INT64_MAX for the
  // last bucket.
  static std::int64_t UpperBoundNs(int bucket);
  // The bucket of a latency (negative latencies count as 0).
  static int BucketOf(std::int64_t ns);

  void Record(std::int64_t ns);

  struct Snapshot {
    std::array<std::int64_t, kBuckets> counts{};
    std::int64_t count = 0;
    std::int64_t sum_ns = 0;
    std::int64_t max_ns = 0;
    // q in (0, 1]: the upper bound of the bucket holding the ceil(q*count)-th
    // smallest sample, capped at max_ns (so never above the largest sample,
    // and exactly max_ns for the overflow bucket); 0 when empty.
    std::int64_t PercentileNs(double q) const;
  };
  Snapshot Read() const;

 private:
  std::array<std::atomic<std::int64_t>, kBuckets> counts_{};
  std::atomic<std::int64_t> sum_ns_{0};
  std::atomic<std::int64_t> max_ns_{0};
};

// The methods of fedsim.v1.Coordinator, in the order they are reported.
enum class RpcMethod : int {
  kJoin = 0,
  kPullTask,
  kPushResult,
  kHeartbeat,
  kLeave,
  kFetchChunk,
  kUploadChunk,
};
inline constexpr int kRpcMethodCount = 7;
// "Join", "PullTask", ... (the proto method names).
const char* RpcMethodName(RpcMethod method);

class RpcStats {
 public:
  using Clock = std::chrono::steady_clock;
  // Canonical status codes 0 (OK) .. 16 (UNAUTHENTICATED); anything else is
  // counted as 2 (UNKNOWN).
  static constexpr int kCodes = 17;

  RpcStats() : start_(Clock::now()) {}
  RpcStats(const RpcStats&) = delete;
  RpcStats& operator=(const RpcStats&) = delete;

  // One finished call: its final status code, the serialized sizes of the
  // request and of the response (0 when the call failed: no response is
  // sent) and the time from the handler's start to Finish.
  void Record(RpcMethod method, int code, std::int64_t request_bytes,
              std::int64_t response_bytes, Clock::duration latency);

  struct MethodSnapshot {
    std::array<std::int64_t, kCodes> codes{};
    std::int64_t calls = 0;
    std::int64_t request_bytes = 0;
    std::int64_t response_bytes = 0;
    LatencyHistogram::Snapshot latency;
  };
  MethodSnapshot Read(RpcMethod method) const;
  // Seconds since construction (the rates' denominator).
  double ElapsedSeconds() const;

  // The `rpc_stats` record (docs/run-directory.md): {"event":"rpc_stats",
  // "elapsed_s", "methods": {NAME: {"calls", "codes": {CODE_NAME: n} (codes
  // with n > 0), "request_bytes", "response_bytes", "requests_per_s",
  // "bytes_per_s", "latency_ms": {"p50","p95","p99","max","mean"},
  // "latency_buckets": [[upper_bound_us, n], ...] (non-empty buckets; the
  // overflow bucket's bound is null)}}}, every method present.
  nlohmann::json ToJson() const;
  // A short fixed-width table: one line per method that had calls.
  std::string Table() const;

 private:
  struct PerMethod {
    std::array<std::atomic<std::int64_t>, kCodes> codes{};
    std::atomic<std::int64_t> request_bytes{0};
    std::atomic<std::int64_t> response_bytes{0};
    LatencyHistogram latency;
  };
  const Clock::time_point start_;
  std::array<PerMethod, kRpcMethodCount> methods_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RPC_STATS_H_
