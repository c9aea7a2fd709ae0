// File: common/data/file_sources.h
//
// Federated data sets in the forms researchers have them on disk (docs/
// data.md): NumPy arrays (.npz, a folder of .npy files), the CIFAR-10 and
// CIFAR-100 binary files, and LEAF's JSON files with their natural users.
// Each reader returns the training and test sets, the rows' image layout
// where it is known, and the client of every row where the files carry
// clients (FederatedData::train_row_clients). Every reader refuses a
// truncated file, a wrong magic number or dtype, mismatched feature and
// label counts, labels out of range or a client column of the wrong length
// with one kInvalidArgument line naming the file, the offset or key, and
// the rule; a missing file is kNotFound.
#ifndef FEDSIM_COMMON_DATA_FILE_SOURCES_H_
#define FEDSIM_COMMON_DATA_FILE_SOURCES_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/data/numpy_format.h"

namespace fedsim {

// How a 4-D image array (N, a, b, c) is laid out.
enum class ImageLayout {
  // NCHW when a is 1, 3 or 4 (PyTorch); NHWC when c is and a is not
  // (Keras, torchvision's CIFAR10.data); otherwise an error asking for one.
  kAuto,
  kNchw,
  kNhwc,
};

struct ArraySourceOptions {
  // Labels are class indices (integers >= 0); otherwise real targets.
  bool classification = true;
  ImageLayout layout = ImageLayout::kAuto;
};

// The array names fedsim reads, as Keras' mnist.npz names them, and the
// optional client id of every training row.
inline constexpr const char* kArrayNames[] = {"x_train", "y_train", "x_test", "y_test",
                                              "client_train"};

// Rows and labels from a features array (N, ...) and a labels array (N,)
// or (N, 1). Features: uint8 arrays are images and scale by 1/255 (as
// torchvision's ToTensor), other dtypes are taken as stored (float64
// rounded to float32); (N, H, W) is a one-channel image, (N, a, b, c) an
// image in `layout` (NHWC is transposed to C x H x W), more dimensions are
// flattened. A float32 array that needs no change and lies in a mapping
// (ReadNpy with map) is used in place: Dataset::shared points into the
// file, and only the rows a process reads are ever paged in (not scanned
// for NaN: a NaN there ends local training with "diverged"). `image` gets
// the layout (zeros when the rows are not images).
absl::StatusOr<Dataset> DatasetFromArrays(const NpyArray& x, const NpyArray& y,
                                          const ArraySourceOptions& options, ImageShape* image);

// Client ids from an integer array of one id per training row (>= 0).
absl::StatusOr<std::vector<std::int64_t>> ClientIdsFromArray(const NpyArray& ids,
                                                             std::int64_t rows);

// data.source = npz: one archive holding x_train, y_train, x_test, y_test
// and optionally client_train (other members are refused).
absl::StatusOr<FederatedData> LoadNpz(const std::string& path, const ArraySourceOptions& options);

// data.source = npy: a folder of x_train.npy, y_train.npy, x_test.npy,
// y_test.npy and optionally client_train.npy; memory-mapped, so float32
// features are read in place.
absl::StatusOr<FederatedData> LoadNpyFolder(const std::string& dir,
                                            const ArraySourceOptions& options);

enum class CifarLabels { kCifar10, kCifar100Fine, kCifar100Coarse };

// data.source = cifar10: `dir` holds data_batch_1.bin ... data_batch_5.bin
// (every data_batch_*.bin there, in name order) and test_batch.bin, each a
// sequence of 3073-byte records (1 label byte 0-9, 3072 pixel bytes: the
// red, green and blue 32 x 32 planes). cifar100: train.bin and test.bin,
// 3074-byte records (coarse label 0-19, fine label 0-99, 3072 pixel
// bytes). Pixels scale by 1/255; rows are 3 x 32 x 32 images.
absl::StatusOr<FederatedData> LoadCifar(const std::string& dir, CifarLabels labels);

// data.source = leaf: `dir` holds train/ and test/, each with LEAF's JSON
// files ({"users": [...], "num_samples": [...], "user_data": {user: {"x":
// [...], "y": [...]}}}), read in file-name order. A sample x is a list of
// numbers (FEMNIST: 784 pixels, a 1 x 28 x 28 image when there are 784;
// any length otherwise, equal for all) or a string (Shakespeare: 80
// characters, each mapped to its index in LEAF's 80-character vocabulary,
// as are the y characters); y is an integer class or one character.
// Every training user is a client (train_row_clients, named in
// client_names); a test user with the name of a training user is that
// client (LEAF's split by samples), other test users are clients of no
// training rows (its split by users).
absl::StatusOr<FederatedData> LoadLeaf(const std::string& dir);

// LEAF's Shakespeare vocabulary (leaf/models/utils/language_utils.py).
inline constexpr char kLeafLetters[] =
    "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}";

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_FILE_SOURCES_H_
