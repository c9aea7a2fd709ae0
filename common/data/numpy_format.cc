#include "common/data/numpy_format.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cctype>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status_macros.h"
#include "common/data/dataset.h"

namespace fedsim {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr std::int64_t kNpyMagicBytes = 6;
// The largest header fedsim reads (NumPy writes a few hundred bytes; a
// huge one is a corrupt or hostile file).
constexpr std::int64_t kMaxHeaderBytes = 1 << 20;
// The largest .npy file or .npz member fedsim reads (32 GiB).
constexpr std::int64_t kMaxArrayBytes = std::int64_t{1} << 35;

absl::Status BadNpy(const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

// A cursor over the header's Python dict literal.
class Literal {
 public:
  explicit Literal(absl::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ >= text_.size();
  }
  std::optional<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return std::nullopt;
    const char quote = text_[pos_++];
    const std::size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return std::nullopt;
    std::string out(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  std::optional<bool> Bool() {
    SkipSpace();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const std::size_t n = std::strlen(word);
      if (text_.substr(pos_, n) == word) {
        pos_ += n;
        return value;
      }
    }
    return std::nullopt;
  }
  std::optional<std::int64_t> Int() {
    SkipSpace();
    std::size_t end = pos_;
    while (end < text_.size() && std::isdigit(static_cast<unsigned char>(text_[end]))) ++end;
    std::int64_t v = 0;
    if (end == pos_ || !absl::SimpleAtoi(text_.substr(pos_, end - pos_), &v)) return std::nullopt;
    pos_ = end;
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2's long
    return v;
  }
  // A tuple of non-negative integers: (), (n,), (n, m), ...
  std::optional<std::vector<std::int64_t>> Shape() {
    if (!Eat('(')) return std::nullopt;
    std::vector<std::int64_t> out;
    while (!Eat(')')) {
      std::optional<std::int64_t> v = Int();
      if (!v) return std::nullopt;
      out.push_back(*v);
      if (!Eat(',')) {
        if (!Eat(')')) return std::nullopt;
        break;
      }
    }
    return out;
  }

 private:
  absl::string_view text_;
  std::size_t pos_ = 0;
};

absl::StatusOr<NpyDtype> ParseDescr(const std::string& name, const std::string& descr) {
  const auto bad = [&](absl::string_view why) {
    return BadNpy(name, absl::StrCat("descr = '", descr, "': ", why));
  };
  if (descr.size() < 3) return bad("not a simple dtype (like '<f4')");
  const char order = descr[0];
  const char kind = descr[1];
  std::int64_t bytes = 0;
  if (!absl::SimpleAtoi(absl::string_view(descr).substr(2), &bytes)) {
    return bad("not a simple dtype (like '<f4')");
  }
  if (order == '>' && bytes > 1) {
    return bad("big-endian; fedsim reads little-endian arrays (numpy: a.astype(a.dtype.newbyteorder('<')))");
  }
  if (order != '<' && order != '|' && order != '=' && order != '>') {
    return bad("unknown byte order");
  }
  switch (kind) {
    case 'b':
      if (bytes == 1) return NpyDtype::kBool;
      break;
    case 'i':
      if (bytes == 1) return NpyDtype::kInt8;
      if (bytes == 2) return NpyDtype::kInt16;
      if (bytes == 4) return NpyDtype::kInt32;
      if (bytes == 8) return NpyDtype::kInt64;
      break;
    case 'u':
      if (bytes == 1) return NpyDtype::kUint8;
      if (bytes == 2) return NpyDtype::kUint16;
      if (bytes == 4) return NpyDtype::kUint32;
      if (bytes == 8) return NpyDtype::kUint64;
      break;
    case 'f':
      if (bytes == 4) return NpyDtype::kFloat32;
      if (bytes == 8) return NpyDtype::kFloat64;
      break;
    default:
      break;
  }
  return bad("fedsim reads bool, int8-int64, uint8-uint64, float32 and float64");
}

struct MappedFile {
  void* base = nullptr;
  std::size_t bytes = 0;
  ~MappedFile() {
    if (base != nullptr) ::munmap(base, bytes);
  }
};

}  // namespace

const char* NpyDtypeName(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kBool: return "bool";
    case NpyDtype::kInt8: return "int8";
    case NpyDtype::kUint8: return "uint8";
    case NpyDtype::kInt16: return "int16";
    case NpyDtype::kUint16: return "uint16";
    case NpyDtype::kInt32: return "int32";
    case NpyDtype::kUint32: return "uint32";
    case NpyDtype::kInt64: return "int64";
    case NpyDtype::kUint64: return "uint64";
    case NpyDtype::kFloat32: return "float32";
    case NpyDtype::kFloat64: return "float64";
  }
  return "?";
}

std::int64_t NpyDtypeBytes(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kBool:
    case NpyDtype::kInt8:
    case NpyDtype::kUint8: return 1;
    case NpyDtype::kInt16:
    case NpyDtype::kUint16: return 2;
    case NpyDtype::kInt32:
    case NpyDtype::kUint32:
    case NpyDtype::kFloat32: return 4;
    case NpyDtype::kInt64:
    case NpyDtype::kUint64:
    case NpyDtype::kFloat64: return 8;
  }
  return 1;
}

std::int64_t NpyArray::size() const {
  std::int64_t n = 1;
  for (std::int64_t s : shape) n *= s;
  return n;
}

double NpyArray::At(std::int64_t i) const {
  const std::byte* p = data + i * NpyDtypeBytes(dtype);
  const auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<double>(v);
  };
  switch (dtype) {
    case NpyDtype::kBool: return load(std::uint8_t{}) != 0.0 ? 1.0 : 0.0;
    case NpyDtype::kInt8: return load(std::int8_t{});
    case NpyDtype::kUint8: return load(std::uint8_t{});
    case NpyDtype::kInt16: return load(std::int16_t{});
    case NpyDtype::kUint16: return load(std::uint16_t{});
    case NpyDtype::kInt32: return load(std::int32_t{});
    case NpyDtype::kUint32: return load(std::uint32_t{});
    case NpyDtype::kInt64: return load(std::int64_t{});
    case NpyDtype::kUint64: return load(std::uint64_t{});
    case NpyDtype::kFloat32: return load(float{});
    case NpyDtype::kFloat64: return load(double{});
  }
  return 0.0;
}

absl::StatusOr<NpyArray> ParseNpy(const std::byte* bytes, std::int64_t size,
                                  std::shared_ptr<const void> keep, const std::string& name) {
  if (size < kNpyMagicBytes + 4 || std::memcmp(bytes, kNpyMagic, kNpyMagicBytes) != 0) {
    return BadNpy(name, "offset 0: not a .npy file (no \\x93NUMPY magic)");
  }
  const auto major = static_cast<int>(bytes[6]);
  std::int64_t header_len = 0;
  std::int64_t header_at = 0;
  if (major == 1) {
    header_len = static_cast<std::int64_t>(bytes[8]) | (static_cast<std::int64_t>(bytes[9]) << 8);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return BadNpy(name, "truncated in the header length (offset 8)");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<std::int64_t>(bytes[8 + i]) << (8 * i);
    header_at = 12;
  } else {
    return BadNpy(name, absl::StrCat("offset 6: format version ", major, ".",
                                  static_cast<int>(bytes[7]), "; fedsim reads 1.0, 2.0 and 3.0"));
  }
  if (header_len > kMaxHeaderBytes) {
    return BadNpy(name, absl::StrCat("offset 8: header of ", header_len, " bytes; at most ",
                                  kMaxHeaderBytes));
  }
  if (header_at + header_len > size) {
    return BadNpy(name, absl::StrCat("truncated: the header needs ", header_at + header_len,
                                  " bytes, the file has ", size));
  }
  const absl::string_view header(reinterpret_cast<const char*>(bytes + header_at),
                                 static_cast<std::size_t>(header_len));
  const auto bad_header = [&](absl::string_view why) {
    const absl::string_view shown = absl::StripAsciiWhitespace(header).substr(0, 200);
    return BadNpy(name, absl::StrCat("offset ", header_at, ": header ", absl::CHexEscape(shown),
                                     shown.size() < header.size() ? "..." : "", ": ", why));
  };
  Literal lit(header);
  if (!lit.Eat('{')) return bad_header("not a dict");
  std::optional<std::string> descr;
  std::optional<bool> fortran;
  std::optional<std::vector<std::int64_t>> shape;
  while (!lit.Eat('}')) {
    std::optional<std::string> key = lit.String();
    if (!key || !lit.Eat(':')) return bad_header("expected 'key': value");
    if (*key == "descr") {
      descr = lit.String();
      if (!descr) return bad_header("descr is not a string (structured dtypes are not read)");
    } else if (*key == "fortran_order") {
      fortran = lit.Bool();
      if (!fortran) return bad_header("fortran_order is not True or False");
    } else if (*key == "shape") {
      shape = lit.Shape();
      if (!shape) return bad_header("shape is not a tuple of integers");
    } else {
      return bad_header(absl::StrCat("unknown key '", *key, "'"));
    }
    if (!lit.Eat(',')) {
      if (!lit.Eat('}')) return bad_header("expected , or }");
      break;
    }
  }
  if (!descr || !fortran || !shape) {
    return bad_header("needs descr, fortran_order and shape");
  }
  NpyArray out;
  out.name = name;
  FEDSIM_ASSIGN_OR_RETURN(out.dtype, ParseDescr(name, *descr));
  if (*fortran && shape->size() > 1) {
    return BadNpy(name, "fortran_order = True; fedsim reads C-order arrays (numpy: "
                     "np.ascontiguousarray(a))");
  }
  out.shape = *shape;
  std::int64_t count = 1;
  for (std::int64_t s : out.shape) {
    // Every dimension bounded on its own too: with a 0 among them the
    // product stays small while the others may not be.
    if (s > kMaxArrayBytes || (s > 0 && count > kMaxArrayBytes / s)) {
      return BadNpy(name, absl::StrCat("shape (", absl::StrJoin(out.shape, ", "),
                                    ") is larger than ", kMaxArrayBytes, " bytes"));
    }
    count *= s;
  }
  const std::int64_t data_bytes = count * NpyDtypeBytes(out.dtype);
  if (data_bytes > kMaxArrayBytes) {
    return BadNpy(name, absl::StrCat("shape (", absl::StrJoin(out.shape, ", "), ") of ",
                                  NpyDtypeName(out.dtype), " is larger than ", kMaxArrayBytes,
                                  " bytes"));
  }
  const std::int64_t data_at = header_at + header_len;
  if (size - data_at != data_bytes) {
    return BadNpy(name, absl::StrCat(size - data_at < data_bytes ? "truncated: " : "",
                                  "shape (", absl::StrJoin(out.shape, ", "), ") of ",
                                  NpyDtypeName(out.dtype), " needs ", data_bytes,
                                  " data bytes from offset ", data_at, ", the file has ",
                                  size - data_at));
  }
  out.data = bytes + data_at;
  out.keep = std::move(keep);
  return out;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path, bool map) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string why = std::strerror(err);
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": ", why));
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return BadNpy(path, "not a regular file");
  }
  const auto size = static_cast<std::int64_t>(st.st_size);
  if (size > kMaxArrayBytes + kMaxHeaderBytes + 16) {
    ::close(fd);
    return BadNpy(path, absl::StrCat(size, " bytes; fedsim reads .npy files up to ", kMaxArrayBytes,
                                  " bytes of data"));
  }
  if (size == 0) {
    ::close(fd);
    return BadNpy(path, "empty file");
  }
  std::shared_ptr<const void> keep;
  const std::byte* bytes = nullptr;
  if (map) {
    auto mapped = std::make_shared<MappedFile>();
    mapped->base = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
    if (mapped->base == MAP_FAILED) {
      mapped->base = nullptr;
      const std::string why = std::strerror(errno);
      ::close(fd);
      return BadNpy(path, absl::StrCat("mmap: ", why));
    }
    mapped->bytes = static_cast<std::size_t>(size);
    bytes = static_cast<const std::byte*>(mapped->base);
    keep = mapped;
  } else {
    auto buffer = std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(size));
    std::int64_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(fd, buffer->data() + done, static_cast<std::size_t>(size - done),
                                static_cast<off_t>(done));
      if (n <= 0) {
        const std::string why = n == 0 ? "unexpected end of file" : std::strerror(errno);
        ::close(fd);
        return BadNpy(path, absl::StrCat("read at offset ", done, ": ", why));
      }
      done += n;
    }
    bytes = buffer->data();
    keep = buffer;
  }
  ::close(fd);
  absl::StatusOr<NpyArray> out = ParseNpy(bytes, size, std::move(keep), path);
  if (out.ok()) out->mapped = map;
  return out;
}

absl::StatusOr<std::map<std::string, NpyArray>> ReadNpz(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (archive == nullptr) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, error);
    const std::string why = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    return BadNpy(path, absl::StrCat("not a readable .npz (ZIP) archive: ", why));
  }
  std::unique_ptr<zip_t, void (*)(zip_t*)> closer(archive, [](zip_t* z) { zip_discard(z); });
  std::map<std::string, NpyArray> out;
  const zip_int64_t entries = zip_get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(archive, static_cast<zip_uint64_t>(i), 0, &zs) != 0) {
      return BadNpy(path, absl::StrCat("member ", i, ": ", zip_strerror(archive)));
    }
    const std::string member = zs.name != nullptr ? zs.name : "";
    const std::string name = absl::StrCat(path, ":", member);
    if (member.size() < 5 || member.substr(member.size() - 4) != ".npy") {
      return BadNpy(name, "not a .npy member (an .npz holds name.npy arrays)");
    }
    if ((zs.valid & ZIP_STAT_SIZE) == 0 ||
        zs.size > static_cast<zip_uint64_t>(kMaxArrayBytes + kMaxHeaderBytes)) {
      return BadNpy(name, absl::StrCat("member of ", zs.size, " bytes; at most ", kMaxArrayBytes));
    }
    // The size comes from the archive's directory: before a buffer of it
    // is allocated, it must be what the stored bytes can hold (deflate
    // expands at most 1032 times).
    const zip_uint64_t stored = (zs.valid & ZIP_STAT_COMP_SIZE) != 0 ? zs.comp_size : 0;
    const bool plain = (zs.valid & ZIP_STAT_COMP_METHOD) != 0 && zs.comp_method == ZIP_CM_STORE;
    if (stored > static_cast<zip_uint64_t>(st.st_size) ||
        (plain ? zs.size != stored : zs.size > 1032 * stored + 1024)) {
      return BadNpy(name, absl::StrCat("the archive says ", zs.size, " bytes from ", stored,
                                       " stored (the file has ", st.st_size,
                                       "): a corrupt .npz"));
    }
    auto buffer = std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(zs.size));
    zip_file_t* f = zip_fopen_index(archive, static_cast<zip_uint64_t>(i), 0);
    if (f == nullptr) return BadNpy(name, zip_strerror(archive));
    std::uint64_t done = 0;
    while (done < zs.size) {
      const zip_int64_t n = zip_fread(f, buffer->data() + done, zs.size - done);
      if (n <= 0) {
        const std::string why = n == 0 ? "unexpected end of data" : zip_file_strerror(f);
        zip_fclose(f);
        return BadNpy(name, absl::StrCat("read at offset ", done, ": ", why));
      }
      done += static_cast<std::uint64_t>(n);
    }
    // zip_fclose checks the CRC of what was read.
    if (const int rc = zip_fclose(f); rc != 0) {
      zip_error_t ze;
      zip_error_init_with_code(&ze, rc);
      const std::string why = zip_error_strerror(&ze);
      zip_error_fini(&ze);
      return BadNpy(name, why);
    }
    const std::byte* data = buffer->data();
    FEDSIM_ASSIGN_OR_RETURN(
        NpyArray array,
        ParseNpy(data, static_cast<std::int64_t>(zs.size), std::move(buffer), name));
    out.emplace(member.substr(0, member.size() - 4), std::move(array));
  }
  return out;
}

absl::StatusOr<std::int64_t> MappedResidentBytes(const void* address) {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return absl::NotFoundError("/proc/self/smaps: cannot open");
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  char line[512];
  bool inside = false;
  std::optional<std::int64_t> rss;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned long long begin = 0, end = 0;  // NOLINT(runtime/int): sscanf's %llx
    // A mapping's header "begin-end perms ..."; its fields follow ("Rss: n kB").
    if (std::sscanf(line, "%llx-%llx ", &begin, &end) == 2) {
      inside = at >= begin && at < end;
      continue;
    }
    long long kb = 0;  // NOLINT(runtime/int)
    if (inside && std::sscanf(line, "Rss: %lld kB", &kb) == 1) {
      rss = static_cast<std::int64_t>(kb) * 1024;
      break;
    }
  }
  std::fclose(f);
  if (!rss.has_value()) return absl::NotFoundError("no mapping holds the address");
  return *rss;
}

}  // namespace fedsim
