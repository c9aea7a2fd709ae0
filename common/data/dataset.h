// File: common/data/dataset.h
//
// In-memory data sets and the federated view of them.
//
// A Dataset holds n examples of d features (row-major float32, so that
// gathering a mini-batch copies contiguous rows) and n labels (a class index
// 0..C-1 stored as a double for classification, a real target for
// regression). Clients never copy data: a client's local data set is a list
// of row indices into the shared training set.
#ifndef FEDSIM_COMMON_DATA_DATASET_H_
#define FEDSIM_COMMON_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "Eigen/Core"

namespace fedsim {

using RowMajorMatrixF =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorMatrixD =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The largest number of feature values a data set may have (8 GiB as
// float32). Loaders read sizes from untrusted headers and indices, and the
// FedProx generator's sizes are heavy-tailed: both check against this
// before anything is allocated, so an absurd size is an error, not an
// allocation failure.
inline constexpr std::int64_t kMaxDatasetValues = std::int64_t{1} << 31;

// The largest class index a loader accepts: larger ones are a regression
// target or a corrupt file, and would size every softmax layer absurdly.
inline constexpr std::int64_t kMaxClassIndex = (std::int64_t{1} << 20) - 1;

// Read-only rows held outside a Dataset (a mapped row cache file,
// common/data/row_cache.h): `keep` owns the memory (unmaps it when the last
// holder goes).
struct SharedRows {
  const float* data = nullptr;  // rows x cols, row-major
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::shared_ptr<const void> keep;
};

struct Dataset {
  // The rows when the data set owns them (n x d); empty when `shared` holds
  // them. Writers (loaders, generators) fill `features`; readers go through
  // rows() / row(), which see either.
  RowMajorMatrixF features;
  Eigen::VectorXd labels;    // n
  // Number of classes for classification; 0 for regression targets.
  int num_classes = 0;
  // Set: the rows live there (read-only), and `features` is empty.
  std::shared_ptr<const SharedRows> shared;

  using ConstRows = Eigen::Map<const RowMajorMatrixF>;
  ConstRows rows() const {
    return shared ? ConstRows(shared->data, shared->rows, shared->cols)
                  : ConstRows(features.data(), features.rows(), features.cols());
  }
  const float* row(std::int64_t r) const {
    return (shared ? shared->data : features.data()) + r * dim();
  }
  std::int64_t size() const { return shared ? shared->rows : features.rows(); }
  std::int64_t dim() const { return shared ? shared->cols : features.cols(); }
};

// A mini-batch gathered from a Dataset in the compute precision T of the
// model (model.precision): Batch (float64) or BatchF (float32, a plain copy
// of the stored rows). Labels stay double in both.
template <typename T>
struct BatchT {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x;  // b x d
  Eigen::VectorXd y;                                                    // b
  std::int64_t size() const { return x.rows(); }
};
using Batch = BatchT<double>;
using BatchF = BatchT<float>;

// Copies rows `rows` of `data` into `batch` (resized as needed).
// REQUIRES: every index is in [0, data.size()).
void GatherBatch(const Dataset& data, std::span<const std::int64_t> rows,
                 Batch& batch);
void GatherBatch(const Dataset& data, std::span<const std::int64_t> rows,
                 BatchF& batch);

// Copies rows [begin, end) of `data` into `batch`.
void GatherRange(const Dataset& data, std::int64_t begin, std::int64_t end,
                 Batch& batch);

// The layout of a row that is an image: channels x height x width, the
// channel planes one after the other (PyTorch's C x H x W). All zero: the
// rows are not images (tables, token sequences).
struct ImageShape {
  std::int64_t channels = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  bool empty() const { return channels == 0; }
  std::int64_t size() const { return channels * height * width; }
  bool operator==(const ImageShape&) const = default;
};

// A data set split among clients: the training rows of client k are
// client_rows[k]. Synthetic generators with a known minimiser of the
// federated objective fill `optimum`.
struct FederatedData {
  Dataset train;
  Dataset test;
  std::vector<std::vector<std::int64_t>> client_rows;
  std::optional<Eigen::VectorXd> optimum;
  // The training rows train_loss is computed on (eval.train_rows), in the
  // data files' order; empty: every row.
  std::vector<std::int64_t> eval_rows;
  // The rows' image layout, when the source says (IDX, CIFAR, image arrays).
  ImageShape image;

  // What sources with their own clients (a client_train array, LEAF's
  // users) say, for clients.partition = natural: the client id of every
  // training row (>= 0; rows of one client need not be adjacent), and of
  // every test row when the test files name clients too (LEAF; -1: a row
  // of no training client). Empty for other sources. client_names[id]
  // names client `id` where the files do (LEAF's user names).
  std::vector<std::int64_t> train_row_clients;
  std::vector<std::int64_t> test_row_clients;
  std::vector<std::string> client_names;
};

// Copies the rows `rows` of `data`, in that order, into a new data set.
Dataset SelectRows(const Dataset& data, std::span<const std::int64_t> rows);

// Reorders data.train so that every client's rows are contiguous, in
// client order and, within a client, in its list's order; rows of no client
// follow, in their old order. client_rows is renumbered to match, so every
// client reads the same rows in the same order as before: a run's
// trajectory is unchanged bit for bit (model_hash), only the memory it
// walks is local (docs/performance.md). A row listed by several clients
// moves with the first and is shared by the others. eval_rows is
// renumbered too, and keeps its order.
void MakeClientRowsContiguous(FederatedData& data);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_DATASET_H_
