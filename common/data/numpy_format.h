// File: common/data/numpy_format.h
//
// NumPy's array files: .npy (one array) and .npz (a ZIP archive of .npy
// members, stored or deflated, as numpy.savez and numpy.savez_compressed
// write them). The format is NumPy's NEP 1 ("A simple file format for NumPy
// arrays"): the magic "\x93NUMPY", a version (1.0, 2.0 or 3.0), a header
// length, a Python dict literal {'descr': ..., 'fortran_order': ...,
// 'shape': (...)} and the data.
//
// fedsim reads little-endian (or byte-wide) booleans, integers of 1 to 8
// bytes and float32/float64 in C order; anything else (big-endian,
// Fortran order, object arrays, strings) is refused with one line naming
// the file and the rule. A .npy file can be memory-mapped: its data then
// stays in the page cache and a process pays only for the pages it reads.
#ifndef FEDSIM_COMMON_DATA_NUMPY_FORMAT_H_
#define FEDSIM_COMMON_DATA_NUMPY_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedsim {

enum class NpyDtype { kBool, kInt8, kUint8, kInt16, kUint16, kInt32, kUint32, kInt64, kUint64,
                      kFloat32, kFloat64 };

// "uint8", "float32", ...
const char* NpyDtypeName(NpyDtype dtype);
std::int64_t NpyDtypeBytes(NpyDtype dtype);

// An array read from a .npy file or an .npz member. `data` points at
// `size() * NpyDtypeBytes(dtype)` bytes owned by `keep` (a mapping of the
// file, or a buffer).
struct NpyArray {
  std::string name;  // the file, or "archive.npz:member"
  NpyDtype dtype = NpyDtype::kFloat64;
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;
  std::shared_ptr<const void> keep;
  bool mapped = false;  // `data` lies in a read-only mapping of the file

  std::int64_t size() const;  // product of the shape (1 for a scalar)
  // Element i converted to double (exact for every dtype but 64-bit
  // integers beyond 2^53).
  double At(std::int64_t i) const;
};

// Parses a whole .npy image held in `bytes` (kept alive by `keep`).
// `name` names it in errors: "<name>: <what is wrong>".
absl::StatusOr<NpyArray> ParseNpy(const std::byte* bytes, std::int64_t size,
                                  std::shared_ptr<const void> keep, const std::string& name);

// Reads a .npy file. `map`: memory-map it (read-only, shared) instead of
// reading it into memory.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path, bool map);

// Reads every member "<key>.npy" of an .npz archive, keyed by <key>.
// Members whose name does not end in ".npy" are refused.
absl::StatusOr<std::map<std::string, NpyArray>> ReadNpz(const std::string& path);

// The resident set (Rss, bytes) of the mapping of this process that holds
// `address`, from /proc/self/smaps: the pages of a mapped file this process
// has read. kNotFound if no mapping holds it.
absl::StatusOr<std::int64_t> MappedResidentBytes(const void* address);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_NUMPY_FORMAT_H_
