#include "common/data/dataset.h"

#include <algorithm>
#include <vector>

#include "common/base/check.h"

namespace fedsim {

namespace {

// Asks for every cache line of row `r` ahead of its use. A mini-batch's
// rows lie anywhere in the data set (hundreds of MB): the hardware
// prefetcher cannot guess where the next row starts, so without this every
// row begins with a full memory latency and its lines trickle in.
inline void PrefetchRow(const Dataset& data, std::int64_t r) {
  const auto* p = reinterpret_cast<const char*>(data.row(r));
  const std::int64_t bytes = data.dim() * static_cast<std::int64_t>(sizeof(float));
  for (std::int64_t k = 0; k < bytes; k += 64) __builtin_prefetch(p + k);
}

// Rows prefetched ahead of the one being copied.
constexpr Eigen::Index kPrefetchAhead = 2;

template <typename T>
void Gather(const Dataset& data, std::span<const std::int64_t> rows, BatchT<T>& batch) {
  const auto b = static_cast<Eigen::Index>(rows.size());
  batch.x.resize(b, data.dim());
  batch.y.resize(b);
  for (Eigen::Index i = 0; i < std::min(b, kPrefetchAhead); ++i) {
    FEDSIM_CHECK(rows[i] >= 0 && rows[i] < data.size()) << "row " << rows[i];
    PrefetchRow(data, rows[i]);
  }
  for (Eigen::Index i = 0; i < b; ++i) {
    if (i + kPrefetchAhead < b) {
      const std::int64_t ahead = rows[i + kPrefetchAhead];
      FEDSIM_CHECK(ahead >= 0 && ahead < data.size()) << "row " << ahead;
      PrefetchRow(data, ahead);
    }
    const std::int64_t r = rows[i];
    batch.x.row(i) = data.rows().row(r).template cast<T>();
    batch.y[i] = data.labels[r];
  }
}

}  // namespace

void GatherBatch(const Dataset& data, std::span<const std::int64_t> rows,
                 Batch& batch) {
  Gather(data, rows, batch);
}

void GatherBatch(const Dataset& data, std::span<const std::int64_t> rows,
                 BatchF& batch) {
  Gather(data, rows, batch);
}

void GatherRange(const Dataset& data, std::int64_t begin, std::int64_t end,
                 Batch& batch) {
  FEDSIM_CHECK(0 <= begin && begin <= end && end <= data.size());
  batch.x = data.rows().middleRows(begin, end - begin).cast<double>();
  batch.y = data.labels.segment(begin, end - begin);
}

void MakeClientRowsContiguous(FederatedData& data) {
  Dataset& train = data.train;
  FEDSIM_CHECK(train.shared == nullptr) << "shared rows are read-only";
  const std::int64_t n = train.size();
  constexpr std::int64_t kUnplaced = -1;
  std::vector<std::int64_t> new_of_old(static_cast<std::size_t>(n), kUnplaced);
  std::vector<std::int64_t> old_of_new;
  old_of_new.reserve(static_cast<std::size_t>(n));
  for (const auto& rows : data.client_rows) {
    for (const std::int64_t r : rows) {
      FEDSIM_CHECK(r >= 0 && r < n) << "row " << r;
      if (new_of_old[r] == kUnplaced) {
        new_of_old[r] = static_cast<std::int64_t>(old_of_new.size());
        old_of_new.push_back(r);
      }
    }
  }
  for (std::int64_t r = 0; r < n; ++r) {
    if (new_of_old[r] == kUnplaced) {
      new_of_old[r] = static_cast<std::int64_t>(old_of_new.size());
      old_of_new.push_back(r);
    }
  }
  // In place, cycle by cycle (row i receives old row old_of_new[i]), with
  // one row of scratch: no second copy of the data, whose peak would double
  // the memory of a large data set.
  Eigen::RowVectorXf scratch(train.dim());
  std::vector<bool> done(static_cast<std::size_t>(n), false);
  for (std::int64_t start = 0; start < n; ++start) {
    if (done[start] || old_of_new[start] == start) continue;
    scratch = train.features.row(start);
    const double scratch_label = train.labels[start];
    std::int64_t i = start;
    while (true) {
      done[i] = true;
      const std::int64_t from = old_of_new[i];
      if (from == start) {
        train.features.row(i) = scratch;
        train.labels[i] = scratch_label;
        break;
      }
      train.features.row(i) = train.features.row(from);
      train.labels[i] = train.labels[from];
      i = from;
    }
  }
  for (auto& rows : data.client_rows) {
    for (std::int64_t& r : rows) r = new_of_old[r];
  }
  for (std::int64_t& r : data.eval_rows) r = new_of_old[r];
}

Dataset SelectRows(const Dataset& data, std::span<const std::int64_t> rows) {
  Dataset out;
  out.num_classes = data.num_classes;
  out.features.resize(static_cast<Eigen::Index>(rows.size()), data.dim());
  out.labels.resize(static_cast<Eigen::Index>(rows.size()));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::int64_t r = rows[i];
    FEDSIM_CHECK(r >= 0 && r < data.size()) << "row " << r;
    out.features.row(static_cast<Eigen::Index>(i)) = data.rows().row(r);
    out.labels[static_cast<Eigen::Index>(i)] = data.labels[r];
  }
  return out;
}

}  // namespace fedsim
