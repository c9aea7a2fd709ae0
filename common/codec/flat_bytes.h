// File: common/codec/flat_bytes.h
//
// The wire and file encoding of flat vectors: raw little-endian IEEE-754
// float64, 8 bytes per value, no header. Decoding validates the length and
// every value (finite) before anything is allocated or used.
#ifndef FEDSIM_COMMON_CODEC_FLAT_BYTES_H_
#define FEDSIM_COMMON_CODEC_FLAT_BYTES_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "common/base/types.h"

namespace fedsim {

// Encodes `v` as 8 * v.size() bytes.
std::string EncodeFlat(const FlatVector& v);

// Decodes exactly `expected_size` values. Fails with kInvalidArgument, naming
// `what`, if the byte length is not 8 * expected_size or a value is NaN or
// infinite (reporting the first such index).
absl::StatusOr<FlatVector> DecodeFlat(absl::string_view bytes,
                                      std::int64_t expected_size,
                                      absl::string_view what);

// A stable hash of the model: the first 16 hex digits of the SHA-256 of
// EncodeFlat(v). Equal hashes mean bit-identical parameters.
std::string ModelHash(const FlatVector& v);

// The 32-byte SHA-256 digest of `bytes`.
std::string Sha256Digest(absl::string_view bytes);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CODEC_FLAT_BYTES_H_
