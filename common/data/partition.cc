#include "common/data/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

using ClientRows = std::vector<std::vector<std::int64_t>>;

std::vector<std::int64_t> AllRows(std::int64_t n) {
  std::vector<std::int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), std::int64_t{0});
  return rows;
}

ClientRows PartitionIid(std::int64_t n, int num_clients, RngStream& rng) {
  std::vector<std::int64_t> rows = AllRows(n);
  rng.Shuffle(std::span<std::int64_t>(rows));
  ClientRows parts(num_clients);
  const std::int64_t base = n / num_clients;
  const std::int64_t extra = n % num_clients;
  std::int64_t begin = 0;
  for (int k = 0; k < num_clients; ++k) {
    const std::int64_t size = base + (k < extra ? 1 : 0);
    parts[k].assign(rows.begin() + begin, rows.begin() + begin + size);
    begin += size;
  }
  return parts;
}

absl::StatusOr<ClientRows> PartitionDirichlet(const Dataset& train,
                                              const PartitionSpec& spec,
                                              RngStream& rng) {
  if (!(spec.dirichlet_alpha > 0) || !std::isfinite(spec.dirichlet_alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition: dirichlet_alpha = ", spec.dirichlet_alpha,
                     "; must be finite and > 0"));
  }
  if (train.num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: dirichlet label skew needs class labels, but the "
        "training set has num_classes = ",
        train.num_classes));
  }
  for (std::int64_t i = 0; i < train.size(); ++i) {
    const double y = train.labels[i];
    if (!(y >= 0 && y < train.num_classes) || y != std::floor(y)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition: training row ", i, " has label ", y,
          ", not a class index in [0, ", train.num_classes, ")"));
    }
  }

  // One row for every client first: the first K rows of a uniform
  // permutation, row perm[k] to client k. Every client is non-empty by
  // construction, whatever alpha and K (no redraws), which is what lets the
  // partition scale to 10^6 clients.
  const int k_clients = spec.num_clients;
  std::vector<std::int64_t> perm = AllRows(train.size());
  rng.Shuffle(std::span<std::int64_t>(perm));
  ClientRows parts(k_clients);
  for (int k = 0; k < k_clients; ++k) parts[k].push_back(perm[k]);
  // The other n - K rows by class, in the permutation's order (so each
  // class's rows are uniformly shuffled), then Hsu et al.'s split.
  std::vector<std::vector<std::int64_t>> by_class(train.num_classes);
  for (std::size_t i = static_cast<std::size_t>(k_clients); i < perm.size(); ++i) {
    by_class[static_cast<std::size_t>(train.labels[perm[i]])].push_back(perm[i]);
  }
  for (const std::vector<std::int64_t>& rows : by_class) {
    if (rows.empty()) continue;
    const std::vector<double> p = rng.Dirichlet(k_clients, spec.dirichlet_alpha);
    const auto n_c = static_cast<std::int64_t>(rows.size());
    // Cut at floor(cumulative share * n_c), as Hsu et al.'s reference code
    // does; the last client takes the rest, so rounding loses no row.
    double cumulative = 0.0;
    std::int64_t begin = 0;
    for (int k = 0; k < k_clients; ++k) {
      std::int64_t end = n_c;
      if (k + 1 < k_clients) {
        cumulative += p[k];
        end = std::clamp(static_cast<std::int64_t>(cumulative * n_c), begin, n_c);
      }
      parts[k].insert(parts[k].end(), rows.begin() + begin, rows.begin() + end);
      begin = end;
    }
  }
  return parts;
}

absl::StatusOr<ClientRows> PartitionShards(const Dataset& train,
                                           const PartitionSpec& spec,
                                           RngStream& rng) {
  if (spec.shards_per_client < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition: shards_per_client = ", spec.shards_per_client,
                     "; must be >= 1"));
  }
  const std::int64_t n = train.size();
  const std::int64_t num_shards =
      std::int64_t{spec.num_clients} * spec.shards_per_client;
  if (num_shards > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: num_clients * shards_per_client = ", spec.num_clients,
        " * ", spec.shards_per_client, " = ", num_shards,
        " shards exceed the ", n, " training rows"));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(train.labels[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition: training row ", i, " has label ", train.labels[i],
          "; shards need finite labels to sort by"));
    }
  }
  const std::int64_t shard_size = n / num_shards;
  // Equal shards leave n mod num_shards rows over. Dropping a uniformly random
  // subset of them (rather than the tail of the sorted order) keeps the last
  // label from losing rows systematically.
  std::vector<std::int64_t> rows =
      n == num_shards * shard_size
          ? AllRows(n)
          : rng.SampleWithoutReplacement(n, num_shards * shard_size);
  std::stable_sort(rows.begin(), rows.end(),
                   [&train](std::int64_t a, std::int64_t b) {
                     return train.labels[a] < train.labels[b];
                   });
  std::vector<std::int64_t> shard_order = AllRows(num_shards);
  rng.Shuffle(std::span<std::int64_t>(shard_order));

  ClientRows parts(spec.num_clients);
  for (int k = 0; k < spec.num_clients; ++k) {
    parts[k].reserve(spec.shards_per_client * shard_size);
    for (int s = 0; s < spec.shards_per_client; ++s) {
      const std::int64_t shard =
          shard_order[std::int64_t{k} * spec.shards_per_client + s];
      const auto begin = rows.begin() + shard * shard_size;
      parts[k].insert(parts[k].end(), begin, begin + shard_size);
    }
  }
  return parts;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<std::int64_t>>> PartitionRows(
    const Dataset& train, const PartitionSpec& spec, RngStream& rng) {
  if (spec.num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: num_clients = ", spec.num_clients, "; must be >= 1"));
  }
  if (spec.num_clients > train.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition: num_clients = ", spec.num_clients,
                     " exceeds the ", train.size(), " training rows"));
  }
  if (train.labels.size() != train.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: training set has ", train.size(), " rows but ",
        train.labels.size(), " labels"));
  }
  ClientRows parts;
  switch (spec.kind) {
    case PartitionKind::kIid:
      parts = PartitionIid(train.size(), spec.num_clients, rng);
      break;
    case PartitionKind::kDirichlet: {
      FEDSIM_ASSIGN_OR_RETURN(parts, PartitionDirichlet(train, spec, rng));
      break;
    }
    case PartitionKind::kShards: {
      FEDSIM_ASSIGN_OR_RETURN(parts, PartitionShards(train, spec, rng));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "partition: unknown kind ", static_cast<int>(spec.kind)));
  }
  for (auto& part : parts) std::sort(part.begin(), part.end());
  return parts;
}

}  // namespace fedsim
