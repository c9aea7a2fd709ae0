// File: common/data/partition.h
//
// Splitting a training set among clients (ALGORITHMS.md conventions; DATA.md
// "Non-IID partitions"). All randomness comes from the RngStream handed in.
#ifndef FEDSIM_COMMON_DATA_PARTITION_H_
#define FEDSIM_COMMON_DATA_PARTITION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/random/stream.h"

namespace fedsim {

enum class PartitionKind {
  // Shuffle, then cut into num_clients parts whose sizes differ by at most 1.
  kIid,
  // Label skew (Hsu et al. 2019), every client non-empty by construction:
  // shuffle all n rows and give client k the k-th row of the permutation;
  // split the other n - K rows as Hsu et al.: for every class c, draw
  // p_c ~ Dir(alpha 1_K) over the K clients and cut class c's remaining
  // rows (in the permutation's order) at floor(sum_{j<=k} p_c,j * m_c), the
  // last client taking the rest. No redraws, O(n + C K) time: it serves 10^6
  // clients. The first K rows shift the label shares by at most K / n.
  kDirichlet,
  // McMahan et al.'s pathological split: sort rows by label, cut into
  // num_clients * shards_per_client equal shards, deal shards_per_client
  // random shards to every client. Every client gets exactly
  // shards_per_client * floor(n / (num_clients * shards_per_client)) rows; the
  // n mod (num_clients * shards_per_client) rows left over (a uniformly
  // random subset) belong to no client.
  kShards,
};

struct PartitionSpec {
  PartitionKind kind = PartitionKind::kIid;
  int num_clients = 1;
  double dirichlet_alpha = 0.5;
  int shards_per_client = 2;
};

// Returns the rows of every client, each list sorted increasingly. Fails
// with kInvalidArgument if num_clients < 1 or exceeds the number of rows
// (naming both numbers), or if the spec's parameters are out of range.
absl::StatusOr<std::vector<std::vector<std::int64_t>>> PartitionRows(
    const Dataset& train, const PartitionSpec& spec, RngStream& rng);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_PARTITION_H_
