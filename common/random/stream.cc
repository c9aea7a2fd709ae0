#include "common/random/stream.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "common/base/check.h"

namespace fedsim {
namespace {

inline std::uint64_t Rotl(std::uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// 64 x 64 -> 128-bit product (GCC's __int128 is a documented extension;
// __extension__ keeps -Wpedantic quiet about it).
__extension__ typedef unsigned __int128 U128;

}  // namespace

std::uint64_t Mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

RngStream::RngStream(std::uint64_t seed, RngPurpose purpose,
                     std::int64_t client, std::int64_t round) {
  // Each key component goes through the mixer before the next is folded in,
  // so (a, b) and (b, a) give unrelated streams.
  std::uint64_t h = Mix64(seed);
  h = Mix64(h ^ (static_cast<std::uint64_t>(purpose) * 0xd1342543de82ef95ULL));
  h = Mix64(h ^ static_cast<std::uint64_t>(client));
  h = Mix64(h ^ Rotl(static_cast<std::uint64_t>(round), 32));
  // Seed the xoshiro state from a SplitMix64 sequence started at h.
  for (auto& word : s_) {
    h += 0x9e3779b97f4a7c15ULL;
    word = Mix64(h);
  }
}

std::uint64_t RngStream::NextU64() {
  // xoshiro256** (Blackman and Vigna).
  const std::uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double RngStream::Uniform01() {
  return static_cast<double>(NextU64() >> 11) * 0x1.0p-53;
}

std::uint64_t RngStream::UniformInt(std::uint64_t n) {
  FEDSIM_CHECK(n > 0);
  // Lemire's nearly divisionless method: multiply-shift with rejection of the
  // few values that would bias the result.
  U128 m = static_cast<U128>(NextU64()) * n;
  std::uint64_t low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = -n % n;
    while (low < threshold) {
      m = static_cast<U128>(NextU64()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

double RngStream::Gaussian() {
  if (has_spare_gaussian_) {
    has_spare_gaussian_ = false;
    return spare_gaussian_;
  }
  double u, v, s;
  do {
    u = 2.0 * Uniform01() - 1.0;
    v = 2.0 * Uniform01() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double factor = std::sqrt(-2.0 * std::log(s) / s);
  spare_gaussian_ = v * factor;
  has_spare_gaussian_ = true;
  return u * factor;
}

double RngStream::Gamma(double shape) {
  FEDSIM_CHECK(shape > 0.0) << "shape " << shape;
  if (shape < 1.0) {
    // Boost: Gamma(a) = Gamma(a + 1) * U^(1/a).
    const double g = Gamma(shape + 1.0);
    double u;
    do {
      u = Uniform01();
    } while (u == 0.0);
    return g * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = Gaussian();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = Uniform01();
    if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;
    if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) {
      return d * v;
    }
  }
}

std::vector<double> RngStream::Dirichlet(int k, double alpha) {
  FEDSIM_CHECK(k >= 1 && alpha > 0.0);
  std::vector<double> p(k);
  double sum = 0.0;
  // With a small alpha all k draws can underflow to 0; redraw then (the
  // probability is negligible unless alpha is tiny).
  do {
    sum = 0.0;
    for (int i = 0; i < k; ++i) {
      p[i] = Gamma(alpha);
      sum += p[i];
    }
  } while (sum <= 0.0);
  for (double& x : p) x /= sum;
  return p;
}

std::vector<std::int64_t> RngStream::SampleWithoutReplacement(std::int64_t n,
                                                              std::int64_t m) {
  FEDSIM_CHECK(m >= 0 && m <= n) << "m=" << m << " n=" << n;
  absl::flat_hash_set<std::int64_t> chosen;
  chosen.reserve(m);
  std::vector<std::int64_t> out;
  out.reserve(m);
  for (std::int64_t j = n - m; j < n; ++j) {
    const auto t = static_cast<std::int64_t>(
        UniformInt(static_cast<std::uint64_t>(j + 1)));
    const std::int64_t pick = chosen.contains(t) ? j : t;
    chosen.insert(pick);
    out.push_back(pick);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace fedsim
