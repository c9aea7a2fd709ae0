// File: common/data/row_cache.h
//
// A prepared federated data set in one file that every process of a run
// maps read-only, so that P worker processes on a host hold one copy of
// the training rows between them (the page cache's) instead of P.
//
// The file holds what BuildExperiment derives from the data files and the
// config: the float32 training and test rows (after the client-contiguous
// reordering), the labels, every client's row list and train_loss's sample
// rows. Its name and header carry a key (SHA-256 of those inputs, computed
// by the caller: common/config/experiment.h), so a file written for other
// data or another partition is never used.
//
// Layout, little-endian: a 4096-byte header ("FEDSIMRC", version, the key
// as 64 hex digits, then the sizes and the rows' image layout as int64),
// then, each starting on a
// 4096-byte boundary: training rows (float32, n x d), test rows (float32),
// training labels (float64), test labels (float64), client row offsets
// (int64, clients + 1), client rows (int64), sample rows (int64), the
// optimum (float64; absent when the data set has none).
#ifndef FEDSIM_COMMON_DATA_ROW_CACHE_H_
#define FEDSIM_COMMON_DATA_ROW_CACHE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/data/dataset.h"

namespace fedsim {

// Writes `data` to `path` under `key` (64 hex digits): to a temporary file
// in the same folder, renamed into place, so a reader sees a whole file or
// none; temporary files a crashed writer left for `path` are removed
// first. `durable`: fsync the file before the rename and the folder after
// it (a cache that outlives a crash). REQUIRES: no other process writes
// `path` meanwhile (hold its RowCacheLock).
absl::Status WriteRowCache(const FederatedData& data, const std::string& path,
                           const std::string& key, bool durable);

// Maps the file at `path`: the training and test rows stay in the mapping
// (Dataset::shared), the rest is copied. kNotFound when there is no file;
// kDataLoss, with a one-line reason naming the file, when it is not a
// whole cache file for `key` (another version or key, a wrong size, row
// numbers or labels out of range).
absl::StatusOr<FederatedData> MapRowCache(const std::string& path, const std::string& key);

// An exclusive advisory lock (flock) on `path`.lock, held while the object
// lives: processes that build the same cache take turns, so one builds and
// the others map its file.
class RowCacheLock {
 public:
  static absl::StatusOr<RowCacheLock> Acquire(const std::string& path);
  RowCacheLock(RowCacheLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  RowCacheLock& operator=(RowCacheLock&&) = delete;
  RowCacheLock(const RowCacheLock&) = delete;
  ~RowCacheLock();

 private:
  explicit RowCacheLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_ROW_CACHE_H_
