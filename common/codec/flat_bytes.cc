#include "common/codec/flat_bytes.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "openssl/evp.h"

namespace fedsim {

static_assert(std::endian::native == std::endian::little,
              "fedsim's wire format is little-endian; big-endian hosts would "
              "need a byte swap here");

std::string EncodeFlat(const FlatVector& v) {
  std::string out(static_cast<std::size_t>(v.size()) * sizeof(double), '\0');
  if (v.size() > 0) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

absl::StatusOr<FlatVector> DecodeFlat(absl::string_view bytes,
                                      std::int64_t expected_size,
                                      absl::string_view what) {
  const auto expected_bytes =
      static_cast<std::size_t>(expected_size) * sizeof(double);
  if (expected_size < 0 || bytes.size() != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", bytes.size(), " bytes (", bytes.size() / sizeof(double),
        " values), expected ", expected_bytes, " bytes (", expected_size,
        " values)"));
  }
  FlatVector v(expected_size);
  if (expected_size > 0) std::memcpy(v.data(), bytes.data(), bytes.size());
  for (Eigen::Index i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " value ", i, " is ", v[i], "; every value must be finite"));
    }
  }
  return v;
}

std::string Sha256Digest(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(),
             nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string ModelHash(const FlatVector& v) {
  return absl::BytesToHexString(Sha256Digest(EncodeFlat(v))).substr(0, 16);
}

}  // namespace fedsim
