#include "common/random/stream.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>

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

// One xoshiro256** step on a state held in locals (FillGaussian's loop keeps
// the state in registers); the same recurrence as RngStream::NextU64.
inline std::uint64_t Xoshiro(std::uint64_t& s0, std::uint64_t& s1,
                             std::uint64_t& s2, std::uint64_t& s3) {
  const std::uint64_t result = Rotl(s1 * 5, 7) * 9;
  const std::uint64_t t = s1 << 17;
  s2 ^= s0;
  s3 ^= s1;
  s1 ^= s2;
  s0 ^= s3;
  s2 ^= t;
  s3 = Rotl(s3, 45);
  return result;
}

// x >= 0 with its sign bit set to `sign` (0 or 1 << 63): x or -x.
inline double WithSign(double x, std::uint64_t sign) {
  return std::bit_cast<double>(std::bit_cast<std::uint64_t>(x) | sign);
}

// Unnormalised standard normal density.
inline double NormalDensity(double x) { return std::exp(-0.5 * x * x); }

// Goes down the ziggurat from x_255 = r and returns the top strip's area
// minus v (negative when the strips reach f = 1 before strip 1, i.e. r is
// too small); fills `x` when non-null.
double ZigguratClosure(double r, double v, double* x) {
  constexpr int n = GaussianZigguratTables::kStrips;
  double xi = r;
  if (x != nullptr) x[n - 1] = r;
  for (int i = n - 1; i >= 2; --i) {
    const double y = v / xi + NormalDensity(xi);
    if (!(y < 1.0)) return -1.0;
    xi = std::sqrt(-2.0 * std::log(y));
    if (x != nullptr) x[i - 1] = xi;
  }
  return xi * (1.0 - NormalDensity(xi)) - v;
}

double StripArea(double r) {
  return r * NormalDensity(r) +
         std::sqrt(std::numbers::pi / 2.0) * std::erfc(r / std::sqrt(2.0));
}

GaussianZigguratTables* BuildGaussianZigguratTables() {
  auto* t = new GaussianZigguratTables;
  constexpr int n = GaussianZigguratTables::kStrips;
  // Bisection for r: the closure grows with r (a larger r means thinner
  // strips, so more area is left for the top one). Stops when the midpoint
  // is one of the ends: the bracket is two adjacent doubles, lo with a
  // negative closure and hi with a non-negative one.
  double lo = 3.0, hi = 4.0;
  FEDSIM_CHECK(ZigguratClosure(lo, StripArea(lo), nullptr) < 0.0);
  FEDSIM_CHECK(ZigguratClosure(hi, StripArea(hi), nullptr) > 0.0);
  while (true) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid == lo || mid == hi) break;
    if (ZigguratClosure(mid, StripArea(mid), nullptr) < 0.0) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  // lo: the largest r whose strips leave the top one short of area v with
  // f(x_0) = 1. Its top strip is then given the height that makes its area
  // v, f[0] = v / x_1 + f(x_1), just above 1: every strip has area v (to
  // rounding) and the top one still covers the peak f(0) = 1, so the
  // rejection stays exact. (hi's top strip would cut the peak off.)
  const double r = lo;
  const double v = StripArea(r);
  double x[n];
  FEDSIM_CHECK(ZigguratClosure(r, v, x) < 0.0);
  x[0] = 0.0;
  t->r = r;
  t->v = v;
  constexpr double kScale = 0x1.0p52;
  for (int i = 1; i < n; ++i) {
    t->w[i] = x[i] / kScale;
    t->f[i] = NormalDensity(x[i]);
  }
  t->w[0] = v / NormalDensity(r) / kScale;
  t->f[0] = v / x[1] + t->f[1];
  FEDSIM_CHECK(t->f[0] >= 1.0 && t->f[0] < 1.0 + 1e-12) << t->f[0];
  for (int i = 2; i < n; ++i) {
    t->k[i] = static_cast<std::uint64_t>(kScale * (x[i - 1] / x[i]));
  }
  t->k[1] = 0;
  t->k[0] = static_cast<std::uint64_t>(kScale * (r * NormalDensity(r) / v));
  return t;
}

// One step of the ziggurat for the first word `bits` of a draw: the
// strip (bits 0-7), the sign (bit 8, as the result's sign bit: negation
// without a branch on a coin flip) and the position u in the strip (bits
// 12-63, 52 bits); bits 9-11 are unused. Sets `x` to |candidate| and
// returns whether u falls inside the strip's rectangle under f (99.3 %).
struct ZigguratWord {
  int idx;
  std::uint64_t sign;
  double x;
  bool inside;
};
inline ZigguratWord SplitWord(const GaussianZigguratTables& t,
                              std::uint64_t bits) {
  ZigguratWord w;
  w.idx = static_cast<int>(bits & 0xff);
  w.sign = (bits & 0x100) << 55;
  const std::uint64_t u = bits >> 12;
  // u < 2^52: the signed conversion is exact and one instruction.
  w.x = static_cast<double>(static_cast<std::int64_t>(u)) * t.w[w.idx];
  w.inside = u < t.k[w.idx];
  return w;
}

// The rest of a draw whose first word missed its strip's rectangle: the
// tail or the wedge, then (if rejected) new words from `s` until a value
// is accepted. Out of line and cold, so that the loop of the 99.3 % keeps
// the generator's state in registers.
[[gnu::noinline, gnu::cold]] double ZigguratSlowPath(
    const GaussianZigguratTables& t, std::uint64_t* s, ZigguratWord w) {
  const auto uniform = [s] {
    return static_cast<double>(Xoshiro(s[0], s[1], s[2], s[3]) >> 11) *
           0x1.0p-53;
  };
  while (true) {
    if (w.inside) return WithSign(w.x, w.sign);
    if (w.idx == 0) {
      // The tail beyond r (Marsaglia 1964): a = -log(U1) / r,
      // b = -log(U2) until 2b > a^2, then r + a. 1 - U is in (0, 1].
      const double inv_r = 1.0 / t.r;
      double a, b;
      do {
        a = -std::log1p(-uniform()) * inv_r;
        b = -std::log1p(-uniform());
      } while (!(b + b > a * a));
      return WithSign(t.r + a, w.sign);
    }
    // The wedge of strip idx: accept when a uniform height in
    // [f(x_idx), f(x_idx-1)) lies under the density.
    const int i = w.idx;
    if (t.f[i] + uniform() * (t.f[i - 1] - t.f[i]) < NormalDensity(w.x)) {
      return WithSign(w.x, w.sign);
    }
    w = SplitWord(t, Xoshiro(s[0], s[1], s[2], s[3]));
  }
}

// The ziggurat loop of FillGaussian and AddScaledGaussian: calls sink(i, z)
// for i = 0..n-1 with the i-th standard normal z. Every word comes from the
// stream in order, whichever path uses it.
template <typename Sink>
inline void Ziggurat(std::uint64_t* s, std::size_t n, Sink sink) {
  const GaussianZigguratTables& t = GetGaussianZigguratTables();
  std::uint64_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
  for (std::size_t i = 0; i < n; ++i) {
    const ZigguratWord w = SplitWord(t, Xoshiro(s0, s1, s2, s3));
    double z;
    if (w.inside) [[likely]] {
      z = WithSign(w.x, w.sign);
    } else {
      s[0] = s0;
      s[1] = s1;
      s[2] = s2;
      s[3] = s3;
      z = ZigguratSlowPath(t, s, w);
      s0 = s[0];
      s1 = s[1];
      s2 = s[2];
      s3 = s[3];
    }
    sink(i, z);
  }
  s[0] = s0;
  s[1] = s1;
  s[2] = s2;
  s[3] = s3;
}

}  // namespace

const GaussianZigguratTables& GetGaussianZigguratTables() {
  static const GaussianZigguratTables* tables = BuildGaussianZigguratTables();
  return *tables;
}

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

void RngStream::FillGaussian(std::span<double> out) {
  double* p = out.data();
  Ziggurat(s_, out.size(), [p](std::size_t i, double z) { p[i] = z; });
}

void RngStream::AddScaledGaussian(double scale, std::span<double> x) {
  double* p = x.data();
  Ziggurat(s_, x.size(),
           [p, scale](std::size_t i, double z) { p[i] += scale * z; });
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
