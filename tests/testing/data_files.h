// File: tests/testing/data_files.h
//
// Data files in the formats of common/data/file_sources.h, written byte by
// byte for tests: .npy images (NpyBytes), CIFAR records (CifarRecord),
// LEAF JSON (LeafFile, LeafPixels). Header-only.
#ifndef FEDSIM_TESTS_TESTING_DATA_FILES_H_
#define FEDSIM_TESTS_TESTING_DATA_FILES_H_

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace fedsim::test {

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A .npy image with the header dict `dict` (padded to 64 bytes as NumPy
// pads it) and `data`; format `major` 1 or 2.
inline std::string NpyBytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const std::size_t n = header.size();
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) {
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  return out + header + data;
}

template <typename T>
std::string RawBytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A C-order .npy file of `values` with NumPy's dtype string `descr`.
template <typename T>
void WriteNpy(const std::string& path, const std::string& descr,
              const std::vector<std::int64_t>& shape, const std::vector<T>& values) {
  std::string dims;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  }
  WriteBytes(path, NpyBytes("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" +
                                dims + "), }",
                            RawBytes(values)));
}

// One CIFAR record: label byte(s), then the R, G, B planes, pixel k being
// (7k + seed) mod 256. CIFAR-100 (`hundred`) has the coarse, then the fine
// label; CIFAR-10 one label.
inline std::string CifarRecord(int coarse, int fine, int label, bool hundred, int seed) {
  std::string rec;
  if (hundred) {
    rec.push_back(static_cast<char>(coarse));
    rec.push_back(static_cast<char>(fine));
  } else {
    rec.push_back(static_cast<char>(label));
  }
  for (int k = 0; k < 3072; ++k) rec.push_back(static_cast<char>((k * 7 + seed) % 256));
  return rec;
}

// A LEAF JSON file: users, their samples and labels (with LEAF's
// num_samples and a hierarchies entry fedsim skips).
inline nlohmann::json LeafFile(const std::vector<std::string>& users,
                               const std::vector<nlohmann::json>& xs,
                               const std::vector<nlohmann::json>& ys) {
  nlohmann::json j;
  j["users"] = users;
  j["num_samples"] = nlohmann::json::array();
  j["hierarchies"] = nlohmann::json::array();
  for (std::size_t i = 0; i < users.size(); ++i) {
    j["num_samples"].push_back(ys[i].size());
    j["hierarchies"].push_back({"h", {1, 2}});
    j["user_data"][users[i]] = {{"x", xs[i]}, {"y", ys[i]}};
  }
  return j;
}

// n FEMNIST-shaped samples of 784 values, value k of sample i being
// ((k + seed + i) mod 17) / 16.
inline nlohmann::json LeafPixels(int n, int seed) {
  nlohmann::json out = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    std::vector<double> row(784);
    for (int k = 0; k < 784; ++k) row[static_cast<std::size_t>(k)] = ((k + seed + i) % 17) / 16.0;
    out.push_back(row);
  }
  return out;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_DATA_FILES_H_
