// File: common/random/stream.h
//
// Reproducible random streams. Every random draw in fedsim comes from an
// RngStream keyed by (seed, purpose, client, round) (DESIGN principle 3), so
// a draw does not depend on which thread or process makes it, nor on how many
// other draws were made before in other streams.
//
// The engine is xoshiro256** seeded through SplitMix64 from the key. The
// samplers (uniform reals and integers, Gaussian, Gamma, Dirichlet) are
// fedsim's own: std::normal_distribution and friends are implementation
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
  // Standard normal N(0, 1) (Marsaglia's polar method).
  double Gaussian();
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

}  // namespace fedsim

#endif  // FEDSIM_COMMON_RANDOM_STREAM_H_
