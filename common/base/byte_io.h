// File: common/base/byte_io.h
//
// A minimal little-endian byte encoding for state that pure layers save
// into checkpoints (strategy state): fixed-width integers and doubles, and
// length-prefixed vectors. The checkpoint file around it (proto, SHA-256)
// lives in server/coordinator/checkpoint.h; these bytes are opaque there.
//
// ByteReader never reads past the end: a short or malformed buffer makes
// ok() false and every later read return zero.
#ifndef FEDSIM_COMMON_BASE_BYTE_IO_H_
#define FEDSIM_COMMON_BASE_BYTE_IO_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fedsim {

class ByteWriter {
 public:
  void U64(std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(b, 8);
  }
  void I64(std::int64_t v) { U64(static_cast<std::uint64_t>(v)); }
  void F64(double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    U64(bits);
  }
  // Vectors: on little-endian hosts the bytes are the vector's own, copied
  // at once (a FedAU state of 10^5 clients is 2.4 MB every checkpoint).
  void I64s(const std::vector<std::int64_t>& v) {
    U64(v.size());
    if constexpr (std::endian::native == std::endian::little) {
      out_.append(reinterpret_cast<const char*>(v.data()), v.size() * 8);
    } else {
      for (std::int64_t x : v) I64(x);
    }
  }
  void F64s(const std::vector<double>& v) {
    U64(v.size());
    if constexpr (std::endian::native == std::endian::little) {
      out_.append(reinterpret_cast<const char*>(v.data()), v.size() * 8);
    } else {
      for (double x : v) F64(x);
    }
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  std::uint64_t U64() {
    if (!ok_ || in_.size() - pos_ < 8) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i]))
           << (8 * i);
    }
    pos_ += 8;
    return v;
  }
  std::int64_t I64() { return static_cast<std::int64_t>(U64()); }
  double F64() {
    const std::uint64_t bits = U64();
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  std::vector<std::int64_t> I64s() {
    const std::uint64_t n = U64();
    if (!ok_ || n > (in_.size() - pos_) / 8) {
      ok_ = false;
      return {};
    }
    std::vector<std::int64_t> v(n);
    if constexpr (std::endian::native == std::endian::little) {
      if (n > 0) std::memcpy(v.data(), in_.data() + pos_, n * 8);
      pos_ += n * 8;
    } else {
      for (auto& x : v) x = I64();
    }
    return v;
  }
  std::vector<double> F64s() {
    const std::uint64_t n = U64();
    if (!ok_ || n > (in_.size() - pos_) / 8) {
      ok_ = false;
      return {};
    }
    std::vector<double> v(n);
    if constexpr (std::endian::native == std::endian::little) {
      if (n > 0) std::memcpy(v.data(), in_.data() + pos_, n * 8);
      pos_ += n * 8;
    } else {
      for (auto& x : v) x = F64();
    }
    return v;
  }
  // True if every read so far succeeded.
  bool ok() const { return ok_; }
  // True if ok() and every byte was consumed.
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_BYTE_IO_H_
