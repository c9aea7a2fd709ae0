// File: common/random/stream.h
//
// Reproducible random streams. Every random draw in fedsim comes from an
// RngStream keyed by (seed, purpose, client, round) (DESIGN principle 3), so
// a draw does not depend on which thread or process makes it, nor on how many
// other draws were made before in other streams.
//
// The engine is xoshiro256** seeded through SplitMix64 from the key. The
// samplers (uniform reals and integers, Gaussian, Gamma, Dirichlet, the bulk
// ziggurat normals) are fedsim's own: std::normal_distribution and friends are implementation
// defined, and absl::BitGen mixes in non-deterministic entropy.
//
// Thread safety: an RngStream is a value; use one per thread.
#ifndef FEDSIM_COMMON_RANDOM_STREAM_H_
#define FEDSIM_COMMON_RANDOM_STREAM_H_

#include <cstdint>
#include <span>
#include <vector>

namespace fedsim {

// What a stream is used for. The numeric values are part of the key: never
// renumber them, or every recorded run changes.
enum class RngPurpose : std::uint32_t {
  kClientSampling = 1,  // which clients a round selects
  kShuffle = 2,         // a client's mini-batch order in a round
  kModelInit = 3,       // initial global parameters
  kPartition = 4,       // splitting a data set among clients
  kDataGeneration = 5,  // synthetic data sets
  kDpNoise = 6,         // Gaussian noise of DP-SGD
  kParticipation = 7,   // participation models
  kDpSampling = 8,      // Poisson sampling of DP-SGD
  kLsaOracle = 9,       // samples Z of an LSA / TD(0) oracle
  kCommunication = 10,  // Scaffnew-style random communication rounds
  kEvalSample = 11,     // the training rows train_loss is computed on
  kAugment = 12,        // a client's crops and flips of image rows (local.augment)
  kComputeTime = 20,    // a client's compute time per task (virtual clock)
  kNetworkDelay = 21,   // a task's network delay (virtual clock)
  kStragglers = 30,     // which participants straggle, and how much work they do
  kByzantineClients = 40,  // which clients are Byzantine (adversary.fraction)
  kByzantineAttack = 41,   // a Byzantine client's random (gaussian) update
  kTest = 100,          // tests only
};

class RngStream {
 public:
  // A stream keyed by (seed, purpose, client, round). Use client = -1 or
  // round = -1 for streams that do not belong to a client or a round.
  RngStream(std::uint64_t seed, RngPurpose purpose, std::int64_t client,
            std::int64_t round);

  // 64 uniformly distributed bits.
  std::uint64_t NextU64();
  // Uniform in [0, 1), 53 bits of precision.
  double Uniform01();
  // Uniform integer in [0, n). REQUIRES: n > 0. Unbiased (Lemire's method).
  std::uint64_t UniformInt(std::uint64_t n);
  // Standard normal N(0, 1) (Marsaglia's polar method). Model
  // initialisation, synthetic data and the other one-at-a-time users draw
  // here; its sequence is part of every recorded run, never change it.
  double Gaussian();
  // Fills `out` with independent standard normals from the ziggurat method
  // (Marsaglia and Tsang 2000, 256 strips, in the 64-bit layout of McFarland
  // 2016 / NumPy): exact rejection sampling, the tail |x| > r = 3.654...
  // by Marsaglia's exact exponential-rejection algorithm, not an
  // approximation. A value takes one 64-bit word (99.3 % of the time) or
  // a rejection loop of a few more; about 4x faster than Gaussian() per
  // value (docs/performance.md, benchmark 3).
  // Deterministic: the values depend only on the stream's state, and
  // FillGaussian of n values gives the same values, and leaves the stream in
  // the same state, as FillGaussian of the first k then of the other n - k
  // (no value is buffered between calls). It does not touch the spare value
  // of Gaussian(), so it gives a different sequence from n Gaussian() calls.
  // Tables: GaussianZigguratTables() below.
  void FillGaussian(std::span<double> out);
  // x[i] += scale * z_i for the same z_i that FillGaussian(x.size() values)
  // would give, in index order: bit for bit `x[i] + scale * z_i`.
  void AddScaledGaussian(double scale, std::span<double> x);
  // Gamma(shape, 1). REQUIRES: shape > 0 (Marsaglia and Tsang, 2000).
  double Gamma(double shape);
  // A draw from Dirichlet(alpha * 1_k). REQUIRES: k >= 1, alpha > 0.
  std::vector<double> Dirichlet(int k, double alpha);
  // Shuffles `values` in place (Fisher-Yates).
  template <typename T>
  void Shuffle(std::span<T> values) {
    for (std::size_t i = values.size(); i > 1; --i) {
      std::size_t j = static_cast<std::size_t>(UniformInt(i));
      std::swap(values[i - 1], values[j]);
    }
  }
  // m distinct integers drawn uniformly from [0, n), in increasing order
  // (Floyd's algorithm, O(m log m)). REQUIRES: 0 <= m <= n.
  std::vector<std::int64_t> SampleWithoutReplacement(std::int64_t n,
                                                     std::int64_t m);

 private:
  std::uint64_t s_[4];
  bool has_spare_gaussian_ = false;
  double spare_gaussian_ = 0.0;
};

// SplitMix64 finaliser: a bijective 64-bit mixer, exposed for key hashing.
std::uint64_t Mix64(std::uint64_t x);

// The ziggurat of FillGaussian: 256 strips of equal area v under
// f(x) = exp(-x^2 / 2) (unnormalised). Strip 0 is the base [0, r] x [0, f(r)]
// plus the tail beyond r; strip i >= 1 is [0, x_i] x [f(x_i), f(x_{i-1})],
// with x_255 = r > x_254 > ... > x_1 > x_0 = 0 (strip 1's top is f[0],
// just above f(0) = 1; see below).
//
// Recipe (computed once, on first use, in double precision with the C
// library's exp, log, sqrt and erfc, the same functions the samplers
// themselves call): v(r) = r f(r) + sqrt(pi/2) erfc(r / sqrt 2); going down
// from x_255 = r, x_{i-1} = sqrt(-2 log(v / x_i + f(x_i))). r is found by
// bisection on [3, 4] down to two adjacent doubles, of the closure "top
// strip area x_1 (1 - f(x_1)) minus v" (increasing in r): r is the lower
// one, the largest double whose top strip falls short of v
// (r = 3.6541528853610088, NumPy's constant). The top strip is then given
// the height that makes its area exactly v, f[0] = v / x_1 + f(x_1) =
// 1 + 3.3e-15, which still covers the peak f(0) = 1: all 256 strips have
// area v to rounding, so choosing one uniformly and rejecting is exact.
// Then, with 2^52 the resolution of a strip's uniform:
//   w[i] = x_i 2^-52 (i >= 1),  w[0] = (v / f(r)) 2^-52
//   f[i] = f(x_i) (i >= 1),     f[0] = v / x_1 + f(x_1)
//   k[i] = floor(2^52 x_{i-1} / x_i) (i >= 2), k[1] = 0,
//   k[0] = floor(2^52 r f(r) / v)
// A test pins a fingerprint of the tables, so a C library that rounds one
// of them differently shows up as a failing test, not as silently different
// draws.
struct GaussianZigguratTables {
  static constexpr int kStrips = 256;
  double r = 0.0;  // x_255, where the tail starts
  double v = 0.0;  // area of every strip
  std::uint64_t k[kStrips];
  double w[kStrips];
  double f[kStrips];
};
const GaussianZigguratTables& GetGaussianZigguratTables();

}  // namespace fedsim

#endif  // FEDSIM_COMMON_RANDOM_STREAM_H_
