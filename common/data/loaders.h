// File: common/data/loaders.h
//
// Readers for the on-disk formats fedsim accepts. Every reader validates what
// it reads and fails with a one-line kInvalidArgument (malformed content) or
// kNotFound (missing file) naming the file and, where it applies, the line.
#ifndef FEDSIM_COMMON_DATA_LOADERS_H_
#define FEDSIM_COMMON_DATA_LOADERS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"

namespace fedsim {

// Reads an IDX image file (magic 0x00000803, uint8, n x rows x cols) and its
// IDX label file (magic 0x00000801, uint8, n), each plain or gzip-compressed
// (zlib reads both). Pixels are multiplied by `scale` (1/255 maps them to
// [0, 1]); num_classes is 1 + the largest label. `image`, if given, gets
// the images' layout (1 x rows x cols).
absl::StatusOr<Dataset> LoadIdx(const std::string& images_path,
                                const std::string& labels_path,
                                double scale = 1.0 / 255.0, ImageShape* image = nullptr);

struct CsvOptions {
  // Column holding the label; negative counts from the end (-1 = last).
  int label_column = -1;
  // Skip the first line.
  bool has_header = false;
  char delimiter = ',';
  // Labels are class indices (integers >= 0); otherwise real targets.
  bool classification = true;
};

// Reads a dense numeric CSV file (plain or gzip-compressed).
absl::StatusOr<Dataset> LoadCsv(const std::string& path,
                                const CsvOptions& options = {});

// Reads a LIBSVM file ("label idx:value ..." with 1-based increasing
// indices). num_features = 0 infers it from the largest index. Binary labels
// {-1, +1} (or {0, 1}) map to classes {0, 1}; other integer labels are used
// as class indices and must be >= 0.
absl::StatusOr<Dataset> LoadLibsvm(const std::string& path,
                                   std::int64_t num_features = 0);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_LOADERS_H_
