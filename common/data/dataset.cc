#include "common/data/dataset.h"

#include "common/base/check.h"

namespace fedsim {

namespace {

template <typename T>
void Gather(const Dataset& data, std::span<const std::int64_t> rows, BatchT<T>& batch) {
  const auto b = static_cast<Eigen::Index>(rows.size());
  batch.x.resize(b, data.dim());
  batch.y.resize(b);
  for (Eigen::Index i = 0; i < b; ++i) {
    const std::int64_t r = rows[i];
    FEDSIM_CHECK(r >= 0 && r < data.size()) << "row " << r;
    batch.x.row(i) = data.features.row(r).template cast<T>();
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
  batch.x = data.features.middleRows(begin, end - begin).cast<double>();
  batch.y = data.labels.segment(begin, end - begin);
}

}  // namespace fedsim
