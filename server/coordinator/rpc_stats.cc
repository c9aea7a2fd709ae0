#include "server/coordinator/rpc_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/status/status.h"

namespace fedsim {
namespace {

// The 81 bucket bounds in nanoseconds: R10 mantissas times 10^0..10^7 µs,
// then 100 s.
constexpr std::array<std::int64_t, LatencyHistogram::kBuckets - 1> MakeBounds() {
  constexpr std::array<std::int64_t, 10> kMantissaNs = {1000, 1250, 1600, 2000, 2500,
                                                        3150, 4000, 5000, 6300, 8000};
  std::array<std::int64_t, LatencyHistogram::kBuckets - 1> bounds{};
  std::int64_t scale = 1;
  int i = 0;
  for (int decade = 0; decade < 8; ++decade, scale *= 10) {
    for (std::int64_t m : kMantissaNs) bounds[i++] = m * scale;
  }
  bounds[i] = 100'000'000'000;  // 100 s
  return bounds;
}
constexpr auto kBounds = MakeBounds();

double Ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

std::int64_t LatencyHistogram::UpperBoundNs(int bucket) {
  if (bucket < 0) return 0;
  if (bucket >= kBuckets - 1) return std::numeric_limits<std::int64_t>::max();
  return kBounds[bucket];
}

int LatencyHistogram::BucketOf(std::int64_t ns) {
  return static_cast<int>(std::upper_bound(kBounds.begin(), kBounds.end(), ns) -
                          kBounds.begin());
}

void LatencyHistogram::Record(std::int64_t ns) {
  ns = std::max<std::int64_t>(ns, 0);
  counts_[BucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  std::int64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen &&
         !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

LatencyHistogram::Snapshot LatencyHistogram::Read() const {
  Snapshot s;
  for (int b = 0; b < kBuckets; ++b) {
    s.counts[b] = counts_[b].load(std::memory_order_relaxed);
    s.count += s.counts[b];
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  s.max_ns = max_ns_.load(std::memory_order_relaxed);
  return s;
}

std::int64_t LatencyHistogram::Snapshot::PercentileNs(double q) const {
  if (count <= 0) return 0;
  const std::int64_t rank = std::clamp<std::int64_t>(
      static_cast<std::int64_t>(std::ceil(q * static_cast<double>(count))), 1, count);
  std::int64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts[b];
    if (seen >= rank) return std::min(UpperBoundNs(b), max_ns);
  }
  return max_ns;
}

const char* RpcMethodName(RpcMethod method) {
  switch (method) {
    case RpcMethod::kJoin: return "Join";
    case RpcMethod::kPullTask: return "PullTask";
    case RpcMethod::kPushResult: return "PushResult";
    case RpcMethod::kHeartbeat: return "Heartbeat";
    case RpcMethod::kLeave: return "Leave";
    case RpcMethod::kFetchChunk: return "FetchChunk";
    case RpcMethod::kUploadChunk: return "UploadChunk";
  }
  return "?";
}

void RpcStats::Record(RpcMethod method, int code, std::int64_t request_bytes,
                      std::int64_t response_bytes, Clock::duration latency) {
  PerMethod& m = methods_[static_cast<int>(method)];
  if (code < 0 || code >= kCodes) code = 2;  // UNKNOWN
  m.codes[code].fetch_add(1, std::memory_order_relaxed);
  m.request_bytes.fetch_add(request_bytes, std::memory_order_relaxed);
  m.response_bytes.fetch_add(response_bytes, std::memory_order_relaxed);
  m.latency.Record(std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count());
}

RpcStats::MethodSnapshot RpcStats::Read(RpcMethod method) const {
  const PerMethod& m = methods_[static_cast<int>(method)];
  MethodSnapshot s;
  for (int c = 0; c < kCodes; ++c) {
    s.codes[c] = m.codes[c].load(std::memory_order_relaxed);
    s.calls += s.codes[c];
  }
  s.request_bytes = m.request_bytes.load(std::memory_order_relaxed);
  s.response_bytes = m.response_bytes.load(std::memory_order_relaxed);
  s.latency = m.latency.Read();
  return s;
}

double RpcStats::ElapsedSeconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

nlohmann::json RpcStats::ToJson() const {
  const double elapsed = std::max(ElapsedSeconds(), 1e-9);
  nlohmann::json methods = nlohmann::json::object();
  for (int i = 0; i < kRpcMethodCount; ++i) {
    const auto method = static_cast<RpcMethod>(i);
    const MethodSnapshot s = Read(method);
    nlohmann::json codes = nlohmann::json::object();
    for (int c = 0; c < kCodes; ++c) {
      if (s.codes[c] > 0) {
        codes[absl::StatusCodeToString(static_cast<absl::StatusCode>(c))] = s.codes[c];
      }
    }
    nlohmann::json buckets = nlohmann::json::array();
    for (int b = 0; b < LatencyHistogram::kBuckets; ++b) {
      if (s.latency.counts[b] == 0) continue;
      nlohmann::json bound = nullptr;
      if (b < LatencyHistogram::kBuckets - 1) {
        bound = static_cast<double>(LatencyHistogram::UpperBoundNs(b)) / 1e3;
      }
      buckets.push_back({bound, s.latency.counts[b]});
    }
    const auto& h = s.latency;
    methods[RpcMethodName(method)] = {
        {"calls", s.calls},
        {"codes", codes},
        {"request_bytes", s.request_bytes},
        {"response_bytes", s.response_bytes},
        {"requests_per_s", static_cast<double>(s.calls) / elapsed},
        {"bytes_per_s",
         static_cast<double>(s.request_bytes + s.response_bytes) / elapsed},
        {"latency_ms",
         {{"p50", Ms(h.PercentileNs(0.50))},
          {"p95", Ms(h.PercentileNs(0.95))},
          {"p99", Ms(h.PercentileNs(0.99))},
          {"max", Ms(h.max_ns)},
          {"mean", h.count > 0 ? Ms(h.sum_ns) / static_cast<double>(h.count) : 0.0}}},
        {"latency_buckets", buckets}};
  }
  return {{"event", "rpc_stats"}, {"elapsed_s", ElapsedSeconds()}, {"methods", methods}};
}

std::string RpcStats::Table() const {
  const double elapsed = std::max(ElapsedSeconds(), 1e-9);
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "rpc stats over %.1f s\n", elapsed);
  out += line;
  std::snprintf(line, sizeof(line), "%-11s %8s %9s %10s %8s %8s %8s %8s  %s\n", "method",
                "calls", "req/s", "KiB/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                "codes");
  out += line;
  for (int i = 0; i < kRpcMethodCount; ++i) {
    const auto method = static_cast<RpcMethod>(i);
    const MethodSnapshot s = Read(method);
    if (s.calls == 0) continue;
    std::string codes;
    for (int c = 0; c < kCodes; ++c) {
      if (s.codes[c] == 0) continue;
      if (!codes.empty()) codes += ' ';
      codes += absl::StatusCodeToString(static_cast<absl::StatusCode>(c));
      codes += '=';
      codes += std::to_string(s.codes[c]);
    }
    const auto& h = s.latency;
    std::snprintf(line, sizeof(line), "%-11s %8lld %9.1f %10.1f %8.3f %8.3f %8.3f %8.3f  %s\n",
                  RpcMethodName(method), static_cast<long long>(s.calls),
                  static_cast<double>(s.calls) / elapsed,
                  static_cast<double>(s.request_bytes + s.response_bytes) / 1024.0 / elapsed,
                  Ms(h.PercentileNs(0.50)), Ms(h.PercentileNs(0.95)),
                  Ms(h.PercentileNs(0.99)), Ms(h.max_ns), codes.c_str());
    out += line;
  }
  return out;
}

}  // namespace fedsim
