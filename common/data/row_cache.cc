#include "common/data/row_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fedsim {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'S', 'I', 'M', 'R', 'C'};
constexpr std::int64_t kVersion = 2;
constexpr std::int64_t kPage = 4096;
constexpr std::size_t kKeyChars = 64;

// The header's fields after the magic and the key, in file order.
struct Sizes {
  std::int64_t version = kVersion;
  std::int64_t train_rows = 0;
  std::int64_t dim = 0;
  std::int64_t test_rows = 0;
  std::int64_t num_classes = 0;
  std::int64_t clients = 0;
  std::int64_t client_rows = 0;  // entries of all row lists
  std::int64_t eval_rows = 0;
  std::int64_t optimum = -1;     // length; -1: none
  std::int64_t image_channels = 0;  // FederatedData::image (version 2)
  std::int64_t image_height = 0;
  std::int64_t image_width = 0;
};
constexpr std::size_t kSizesOffset = sizeof(kMagic) + kKeyChars;
static_assert(kSizesOffset + sizeof(Sizes) <= kPage);

std::int64_t PadToPage(std::int64_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

// Byte offsets of the sections, and the file's size.
struct Layout {
  std::int64_t train_x, test_x, train_y, test_y, offsets, rows, eval, optimum, end;
};

Layout LayoutOf(const Sizes& s) {
  Layout l{};
  std::int64_t at = kPage;
  const auto next = [&at](std::int64_t bytes) {
    const std::int64_t here = at;
    at += PadToPage(bytes);
    return here;
  };
  l.train_x = next(s.train_rows * s.dim * 4);
  l.test_x = next(s.test_rows * s.dim * 4);
  l.train_y = next(s.train_rows * 8);
  l.test_y = next(s.test_rows * 8);
  l.offsets = next((s.clients + 1) * 8);
  l.rows = next(s.client_rows * 8);
  l.eval = next(s.eval_rows * 8);
  l.optimum = next(std::max<std::int64_t>(s.optimum, 0) * 8);
  l.end = at;
  return l;
}

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Writes `bytes` at `offset` of `fd`, whole.
bool WriteAt(int fd, const void* data, std::int64_t bytes, std::int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, p, static_cast<std::size_t>(bytes), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    bytes -= n;
    offset += n;
  }
  return true;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::Status WriteRowCache(const FederatedData& data, const std::string& path,
                           const std::string& key, bool durable) {
  if (key.size() != kKeyChars) {
    return absl::InvalidArgumentError(absl::StrCat("row cache ", path, ": key has ",
                                                   key.size(), " characters, expected ",
                                                   kKeyChars));
  }
  if (data.test.size() > 0 && data.test.dim() != data.train.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "row cache ", path, ": test rows have ", data.test.dim(), " features, training rows ",
        data.train.dim()));
  }
  // What a writer that died left (a crash between create and rename):
  // writers take the lock, so no other writer is at work on these.
  {
    std::error_code ec;
    const std::filesystem::path target(path);
    const std::string prefix = target.filename().string() + ".tmp.";
    for (const auto& entry :
         std::filesystem::directory_iterator(target.parent_path().empty()
                                                 ? std::filesystem::path(".")
                                                 : target.parent_path(),
                                             ec)) {
      if (entry.path().filename().string().rfind(prefix, 0) == 0) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
  }
  Sizes s;
  s.train_rows = data.train.size();
  s.dim = data.train.dim();
  s.test_rows = data.test.size();
  s.num_classes = data.train.num_classes;
  s.clients = static_cast<std::int64_t>(data.client_rows.size());
  std::vector<std::int64_t> offsets{0};
  for (const auto& rows : data.client_rows) {
    offsets.push_back(offsets.back() + static_cast<std::int64_t>(rows.size()));
  }
  s.client_rows = offsets.back();
  s.eval_rows = static_cast<std::int64_t>(data.eval_rows.size());
  if (data.optimum.has_value()) s.optimum = data.optimum->size();
  s.image_channels = data.image.channels;
  s.image_height = data.image.height;
  s.image_width = data.image.width;
  const Layout l = LayoutOf(s);

  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  Fd fd(::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
  if (fd.get() < 0) return Errno("cannot create", tmp);
  std::array<char, kPage> header{};
  std::memcpy(header.data(), kMagic, sizeof(kMagic));
  std::memcpy(header.data() + sizeof(kMagic), key.data(), kKeyChars);
  std::memcpy(header.data() + kSizesOffset, &s, sizeof(s));
  bool ok = WriteAt(fd.get(), header.data(), kPage, 0) &&
            WriteAt(fd.get(), data.train.row(0), s.train_rows * s.dim * 4, l.train_x) &&
            WriteAt(fd.get(), data.test.row(0), s.test_rows * s.dim * 4, l.test_x) &&
            WriteAt(fd.get(), data.train.labels.data(), s.train_rows * 8, l.train_y) &&
            WriteAt(fd.get(), data.test.labels.data(), s.test_rows * 8, l.test_y) &&
            WriteAt(fd.get(), offsets.data(), (s.clients + 1) * 8, l.offsets);
  std::int64_t at = l.rows;
  for (const auto& rows : data.client_rows) {
    const auto bytes = static_cast<std::int64_t>(rows.size()) * 8;
    ok = ok && WriteAt(fd.get(), rows.data(), bytes, at);
    at += bytes;
  }
  ok = ok && WriteAt(fd.get(), data.eval_rows.data(), s.eval_rows * 8, l.eval);
  if (data.optimum.has_value()) {
    ok = ok && WriteAt(fd.get(), data.optimum->data(), s.optimum * 8, l.optimum);
  }
  // The padding after the last section: the file's size is part of what a
  // reader checks.
  ok = ok && ::ftruncate(fd.get(), l.end) == 0;
  if (!ok || (durable && ::fsync(fd.get()) != 0)) {
    const absl::Status status = Errno("cannot write", tmp);
    ::unlink(tmp.c_str());
    return status;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status status = Errno("cannot rename to", path);
    ::unlink(tmp.c_str());
    return status;
  }
  if (durable) {
    // The rename itself survives a crash once the folder is synced.
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    Fd dir(::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0 || ::fsync(dir.get()) != 0) return Errno("cannot sync the folder of", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<FederatedData> MapRowCache(const std::string& path, const std::string& key) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no row cache ", path));
    return Errno("cannot open", path);
  }
  const auto bad = [&path](const std::string& why) {
    return absl::DataLossError(absl::StrCat("row cache ", path, ": ", why));
  };
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("cannot stat", path);
  if (st.st_size < kPage) {
    return bad(absl::StrCat(st.st_size, " bytes; a cache file has at least ", kPage));
  }
  void* base = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED,
                      fd.get(), 0);
  if (base == MAP_FAILED) return Errno("cannot map", path);
  const std::size_t length = static_cast<std::size_t>(st.st_size);
  std::shared_ptr<const void> keep(base, [length](const void* p) {
    ::munmap(const_cast<void*>(p), length);
  });
  const char* bytes = static_cast<const char*>(base);
  if (std::memcmp(bytes, kMagic, sizeof(kMagic)) != 0) return bad("not a row cache file");
  if (key.size() != kKeyChars ||
      std::memcmp(bytes + sizeof(kMagic), key.data(), kKeyChars) != 0) {
    return bad("written for other data or another config (key differs)");
  }
  Sizes s;
  std::memcpy(&s, bytes + kSizesOffset, sizeof(s));
  if (s.version != kVersion) {
    return bad(absl::StrCat("version ", s.version, ", this build reads ", kVersion));
  }
  // Every size bounded on its own before any product (no overflow).
  const auto in = [](std::int64_t v, std::int64_t lo, std::int64_t hi) {
    return v >= lo && v <= hi;
  };
  if (!in(s.train_rows, 0, kMaxDatasetValues) || !in(s.dim, 0, kMaxDatasetValues) ||
      !in(s.test_rows, 0, kMaxDatasetValues) || !in(s.clients, 0, kMaxDatasetValues) ||
      !in(s.client_rows, 0, kMaxDatasetValues) || !in(s.eval_rows, 0, s.train_rows) ||
      !in(s.optimum, -1, kMaxDatasetValues) || !in(s.num_classes, 0, 1 << 24) ||
      s.train_rows * s.dim > kMaxDatasetValues || s.test_rows * s.dim > kMaxDatasetValues ||
      !in(s.image_channels, 0, 1 << 20) || !in(s.image_height, 0, 1 << 20) ||
      !in(s.image_width, 0, 1 << 20) ||
      (s.image_channels != 0 && s.image_channels * s.image_height * s.image_width != s.dim)) {
    return bad("sizes out of range");
  }
  const Layout l = LayoutOf(s);
  if (l.end != st.st_size) {
    return bad(absl::StrCat(st.st_size, " bytes, its header needs ", l.end));
  }
  const auto ints = [bytes](std::int64_t offset) {
    return reinterpret_cast<const std::int64_t*>(bytes + offset);
  };
  const auto doubles = [bytes](std::int64_t offset) {
    return reinterpret_cast<const double*>(bytes + offset);
  };

  FederatedData out;
  const auto rows_of = [&](std::int64_t offset, std::int64_t n) {
    auto shared = std::make_shared<SharedRows>();
    shared->data = reinterpret_cast<const float*>(bytes + offset);
    shared->rows = n;
    shared->cols = s.dim;
    shared->keep = keep;
    return std::shared_ptr<const SharedRows>(std::move(shared));
  };
  out.train.shared = rows_of(l.train_x, s.train_rows);
  out.test.shared = rows_of(l.test_x, s.test_rows);
  out.train.num_classes = out.test.num_classes = static_cast<int>(s.num_classes);
  out.image = {s.image_channels, s.image_height, s.image_width};
  out.train.labels = Eigen::Map<const Eigen::VectorXd>(doubles(l.train_y), s.train_rows);
  out.test.labels = Eigen::Map<const Eigen::VectorXd>(doubles(l.test_y), s.test_rows);
  for (const Eigen::VectorXd* labels : {&out.train.labels, &out.test.labels}) {
    for (const double y : *labels) {
      if (!std::isfinite(y) ||
          (s.num_classes > 0 && (y < 0 || y >= static_cast<double>(s.num_classes) ||
                                 y != std::floor(y)))) {
        return bad(absl::StrCat("label ", y, " is not a class of ", s.num_classes));
      }
    }
  }
  const std::int64_t* offsets = ints(l.offsets);
  const std::int64_t* rows = ints(l.rows);
  if (offsets[0] != 0 || offsets[s.clients] != s.client_rows) {
    return bad("client row offsets do not cover the row lists");
  }
  out.client_rows.resize(static_cast<std::size_t>(s.clients));
  for (std::int64_t k = 0; k < s.clients; ++k) {
    if (offsets[k + 1] < offsets[k]) return bad(absl::StrCat("client ", k, "'s offsets"));
    auto& list = out.client_rows[static_cast<std::size_t>(k)];
    list.assign(rows + offsets[k], rows + offsets[k + 1]);
    for (const std::int64_t r : list) {
      if (r < 0 || r >= s.train_rows) return bad(absl::StrCat("client ", k, "'s row ", r));
    }
  }
  out.eval_rows.assign(ints(l.eval), ints(l.eval) + s.eval_rows);
  for (const std::int64_t r : out.eval_rows) {
    if (r < 0 || r >= s.train_rows) return bad(absl::StrCat("sample row ", r));
  }
  if (s.optimum >= 0) {
    out.optimum = Eigen::Map<const Eigen::VectorXd>(doubles(l.optimum), s.optimum);
  }
  return out;
}

absl::StatusOr<RowCacheLock> RowCacheLock::Acquire(const std::string& path) {
  const std::string lock_path = absl::StrCat(path, ".lock");
  int fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  // A lock file another user made (flock needs no write access).
  if (fd < 0 && errno == EACCES) fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot create", lock_path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const absl::Status status = Errno("cannot lock", lock_path);
      ::close(fd);
      return status;
    }
  }
  return RowCacheLock(fd);
}

RowCacheLock::~RowCacheLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace fedsim
