#include "common/data/loaders.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {


// Read granularity: large enough for throughput, small enough that a file
// much shorter than its header claims never causes a big allocation.
constexpr std::size_t kChunkBytes = std::size_t{1} << 22;

constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // uint8, 3 dims
constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // uint8, 1 dim

// A file opened through zlib, which reads gzip and plain files alike.
class GzReader {
 public:
  static absl::StatusOr<GzReader> Open(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    if (std::filesystem::is_directory(path, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": is a directory, expected a file"));
    }
    gzFile file = gzopen(path.c_str(), "rb");
    if (file == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          path, ": cannot open: ", std::strerror(errno)));
    }
    gzbuffer(file, 1 << 18);
    return GzReader(path, file);
  }

  GzReader(GzReader&& other) noexcept
      : path_(std::move(other.path_)),
        file_(std::exchange(other.file_, nullptr)) {}
  GzReader& operator=(GzReader&&) = delete;
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }

  // Reads up to `n` bytes into `out`; returns how many were read (fewer only
  // at the end of the data). A corrupt or truncated gzip stream is an error.
  absl::StatusOr<std::size_t> Read(void* out, std::size_t n) {
    auto* dst = static_cast<unsigned char*>(out);
    std::size_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(
          std::min<std::size_t>(n - done, std::size_t{1} << 30));
      const int got = gzread(file_, dst + done, want);
      if (got < 0) return StreamError();
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    if (done < n) {
      // gzread reports a gzip stream cut short as a short read plus an error
      // state; a plain file simply ends.
      int code = Z_OK;
      gzerror(file_, &code);
      if (code != Z_OK && code != Z_STREAM_END) return StreamError();
    }
    return done;
  }

  // Reads the whole remaining content.
  absl::StatusOr<std::string> ReadAll() {
    std::string text;
    std::size_t size = 0;
    while (true) {
      text.resize(size + kChunkBytes);
      FEDSIM_ASSIGN_OR_RETURN(const std::size_t got,
                              Read(text.data() + size, kChunkBytes));
      size += got;
      if (got < kChunkBytes) break;
    }
    text.resize(size);
    return text;
  }

  const std::string& path() const { return path_; }

 private:
  GzReader(std::string path, gzFile file)
      : path_(std::move(path)), file_(file) {}

  absl::Status StreamError() {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    if (code == Z_ERRNO) message = std::strerror(errno);
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": corrupt or truncated gzip data (",
        message != nullptr ? message : "unknown zlib error", ")"));
  }

  std::string path_;
  gzFile file_;
};

std::uint32_t BigEndian32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
         (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

// Reads the IDX header (magic and `num_dims` dimensions) and checks the
// magic; the file name and "images"/"labels" make the message unambiguous
// when the two paths are swapped.
absl::StatusOr<std::vector<std::uint32_t>> ReadIdxHeader(
    GzReader& reader, std::uint32_t expected_magic, int num_dims,
    absl::string_view what) {
  std::array<unsigned char, 4> word;
  FEDSIM_ASSIGN_OR_RETURN(const std::size_t got,
                          reader.Read(word.data(), word.size()));
  if (got < word.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(reader.path(), ": truncated IDX header: file has ", got,
                     " bytes, expected a 4-byte magic number"));
  }
  const std::uint32_t magic = BigEndian32(word.data());
  if (magic != expected_magic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: bad IDX magic 0x%08x, expected 0x%08x (%s: uint8, %d dimension%s)",
        reader.path(), magic, expected_magic, what, num_dims,
        num_dims == 1 ? "" : "s"));
  }
  std::vector<std::uint32_t> dims(num_dims);
  for (int i = 0; i < num_dims; ++i) {
    FEDSIM_ASSIGN_OR_RETURN(const std::size_t n,
                            reader.Read(word.data(), word.size()));
    if (n < word.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          reader.path(), ": truncated IDX header: ends inside dimension ",
          i + 1, " of ", num_dims));
    }
    dims[i] = BigEndian32(word.data());
    if (dims[i] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          reader.path(), ": IDX dimension ", i + 1, " is 0; must be >= 1"));
    }
  }
  return dims;
}

// Reads exactly `count` payload bytes, growing the buffer chunk by chunk so
// that memory follows the bytes actually present, then checks that nothing
// follows them.
absl::StatusOr<std::vector<unsigned char>> ReadIdxPayload(
    GzReader& reader, std::int64_t count, absl::string_view what) {
  std::vector<unsigned char> bytes;
  std::size_t size = 0;
  const auto total = static_cast<std::size_t>(count);
  while (size < total) {
    const std::size_t want = std::min(kChunkBytes, total - size);
    bytes.resize(size + want);
    FEDSIM_ASSIGN_OR_RETURN(const std::size_t got,
                            reader.Read(bytes.data() + size, want));
    size += got;
    if (got < want) {
      return absl::InvalidArgumentError(absl::StrCat(
          reader.path(), ": truncated: header declares ", count, " ", what,
          " bytes, file has only ", size));
    }
  }
  unsigned char extra;
  FEDSIM_ASSIGN_OR_RETURN(const std::size_t trailing, reader.Read(&extra, 1));
  if (trailing != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        reader.path(), ": unexpected data after the ", count, " ", what,
        " bytes the header declares"));
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// Text parsing.

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

absl::string_view Trim(absl::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Parses a whole token as a finite double. from_chars is locale independent
// and exact; it rejects a leading '+', which LIBSVM labels ("+1") use.
bool ParseDouble(absl::string_view s, double& value) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (s.empty() || s.front() == '-' || s.front() == '+') return false;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size() &&
         std::isfinite(value);
}

bool ParseInt64(absl::string_view s, std::int64_t& value) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (s.empty() || s.front() == '-' || s.front() == '+') return false;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size();
}

// A feature value must also survive the conversion to float32.
bool FitsFloat(double v) {
  return std::abs(v) <= static_cast<double>(std::numeric_limits<float>::max());
}

// Splits `text` into lines (without '\n'), calling fn(line_number, line);
// line numbers are 1-based. Stops at the first error.
template <typename Fn>
absl::Status ForEachLine(absl::string_view text, Fn&& fn) {
  std::int64_t line_number = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const absl::string_view line = text.substr(0, eol);
    ++line_number;
    FEDSIM_RETURN_IF_ERROR(fn(line_number, line));
    if (eol == absl::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  return absl::OkStatus();
}

std::string Quoted(absl::string_view s) {
  constexpr std::size_t kMaxShown = 40;
  if (s.size() > kMaxShown) {
    return absl::StrCat("'", s.substr(0, kMaxShown), "...'");
  }
  return absl::StrCat("'", s, "'");
}

// Turns a label read as a double into a class index, or explains why not.
absl::Status CheckClassLabel(double label, absl::string_view where) {
  if (label < 0 || label != std::floor(label)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": label ", label, " is not a class index (an integer >= 0)"));
  }
  if (label > static_cast<double>(kMaxClassIndex)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": label ", label, " exceeds the largest class index ",
        kMaxClassIndex));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> AssembleDense(const std::string& path,
                                      std::vector<float> features,
                                      std::vector<double> labels,
                                      std::int64_t dim, int num_classes) {
  const auto n = static_cast<std::int64_t>(labels.size());
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": contains no data rows"));
  }
  Dataset data;
  data.features = Eigen::Map<const RowMajorMatrixF>(features.data(), n, dim);
  data.labels = Eigen::Map<const Eigen::VectorXd>(labels.data(), n);
  data.num_classes = num_classes;
  return data;
}

int NumClasses(const std::vector<double>& labels) {
  double largest = -1;
  for (double y : labels) largest = std::max(largest, y);
  return static_cast<int>(largest) + 1;
}

}  // namespace

absl::StatusOr<Dataset> LoadIdx(const std::string& images_path,
                                const std::string& labels_path, double scale,
                                ImageShape* image) {
  if (!std::isfinite(scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadIdx: scale = ", scale, "; must be finite"));
  }
  FEDSIM_ASSIGN_OR_RETURN(GzReader images, GzReader::Open(images_path));
  FEDSIM_ASSIGN_OR_RETURN(GzReader labels, GzReader::Open(labels_path));
  FEDSIM_ASSIGN_OR_RETURN(
      const std::vector<std::uint32_t> image_dims,
      ReadIdxHeader(images, kIdxImagesMagic, 3, "idx3 images"));
  FEDSIM_ASSIGN_OR_RETURN(
      const std::vector<std::uint32_t> label_dims,
      ReadIdxHeader(labels, kIdxLabelsMagic, 1, "idx1 labels"));

  const std::int64_t n = image_dims[0];
  // rows * cols < 2^64 always fits uint64; only then compare with the limit.
  const std::uint64_t dim64 = std::uint64_t{image_dims[1]} * image_dims[2];
  if (label_dims[0] != image_dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, " declares ", n, " images but ", labels_path,
        " declares ", label_dims[0], " labels; the counts must match"));
  }
  // Checked before anything is allocated: a corrupt header may claim 10^12
  // pixels.
  if (dim64 > static_cast<std::uint64_t>(kMaxDatasetValues) ||
      n > kMaxDatasetValues / static_cast<std::int64_t>(dim64)) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, ": header declares ", n, " images of ", image_dims[1],
        "x", image_dims[2], " pixels, more than the limit of ", kMaxDatasetValues,
        " values"));
  }
  const auto dim = static_cast<std::int64_t>(dim64);
  if (image != nullptr) *image = {1, image_dims[1], image_dims[2]};

  FEDSIM_ASSIGN_OR_RETURN(const std::vector<unsigned char> label_bytes,
                          ReadIdxPayload(labels, n, "label"));

  // The pixels are inflated block by block straight into the features,
  // never held whole as bytes (the training set's 47 MB buffer, grown and
  // copied as it filled, was a third of the start-up).
  Dataset data;
  data.features.resize(n, dim);
  float* out = data.features.data();
  const auto total = static_cast<std::size_t>(n * dim);
  std::vector<unsigned char> block(std::min(kChunkBytes, std::max<std::size_t>(total, 1)));
  for (std::size_t done = 0; done < total;) {
    const std::size_t want = std::min(block.size(), total - done);
    FEDSIM_ASSIGN_OR_RETURN(const std::size_t got, images.Read(block.data(), want));
    for (std::size_t i = 0; i < got; ++i) out[done + i] = static_cast<float>(block[i] * scale);
    done += got;
    if (got < want) {
      return absl::InvalidArgumentError(absl::StrCat(
          images.path(), ": truncated: header declares ", n * dim, " pixel bytes, file has only ",
          done));
    }
  }
  {
    unsigned char extra;
    FEDSIM_ASSIGN_OR_RETURN(const std::size_t trailing, images.Read(&extra, 1));
    if (trailing != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          images.path(), ": unexpected data after the ", n * dim,
          " pixel bytes the header declares"));
    }
  }
  data.labels.resize(n);
  int largest = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    data.labels[i] = label_bytes[i];
    largest = std::max<int>(largest, label_bytes[i]);
  }
  data.num_classes = largest + 1;
  return data;
}

absl::StatusOr<Dataset> LoadCsv(const std::string& path,
                                const CsvOptions& options) {
  if (options.delimiter == '\n' || options.delimiter == '\r' ||
      options.delimiter == '\0') {
    return absl::InvalidArgumentError(
        "LoadCsv: delimiter must not be a line break or NUL");
  }
  FEDSIM_ASSIGN_OR_RETURN(GzReader reader, GzReader::Open(path));
  FEDSIM_ASSIGN_OR_RETURN(const std::string text, reader.ReadAll());

  std::vector<float> features;
  std::vector<double> labels;
  std::int64_t num_columns = -1;  // fixed by the first data row
  std::int64_t first_data_line = 0;
  std::int64_t label_index = -1;
  std::vector<absl::string_view> cells;

  auto parse_line = [&](std::int64_t line_number,
                        absl::string_view line) -> absl::Status {
    if (line_number == 1 && options.has_header) return absl::OkStatus();
    if (Trim(line).empty()) return absl::OkStatus();
    cells.clear();
    std::size_t start = 0;
    while (true) {
      const std::size_t end = line.find(options.delimiter, start);
      cells.push_back(Trim(line.substr(start, end - start)));
      if (end == absl::string_view::npos) break;
      start = end + 1;
    }
    const auto count = static_cast<std::int64_t>(cells.size());
    if (num_columns < 0) {
      num_columns = count;
      first_data_line = line_number;
      if (num_columns < 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": row has ", num_columns,
            " column; need at least 2 (features and a label)"));
      }
      label_index = options.label_column < 0
                        ? num_columns + options.label_column
                        : options.label_column;
      if (label_index < 0 || label_index >= num_columns) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": label_column = ", options.label_column,
            " is out of range for rows of ", num_columns, " columns"));
      }
    } else if (count != num_columns) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_number, ": row has ", count, " columns, expected ",
          num_columns, " (as on line ", first_data_line, ")"));
    }
    if (static_cast<std::int64_t>(features.size()) + num_columns - 1 >
        kMaxDatasetValues) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_number, ": more than the limit of ", kMaxDatasetValues,
          " feature values"));
    }
    for (std::int64_t j = 0; j < num_columns; ++j) {
      const absl::string_view cell = cells[j];
      double value;
      if (!ParseDouble(cell, value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": column ", j + 1, ": ",
            cell.empty()
                ? std::string("empty cell")
                : absl::StrCat(Quoted(cell), " is not a finite number")));
      }
      if (j == label_index) {
        if (options.classification) {
          FEDSIM_RETURN_IF_ERROR(CheckClassLabel(
              value, absl::StrCat(path, ":", line_number, ": column ", j + 1)));
        }
        labels.push_back(value);
      } else {
        if (!FitsFloat(value)) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ":", line_number, ": column ", j + 1, ": ", Quoted(cell),
              " is outside the float32 range"));
        }
        features.push_back(static_cast<float>(value));
      }
    }
    return absl::OkStatus();
  };
  FEDSIM_RETURN_IF_ERROR(ForEachLine(text, parse_line));

  const int num_classes = options.classification ? NumClasses(labels) : 0;
  return AssembleDense(path, std::move(features), std::move(labels),
                       num_columns - 1, num_classes);
}

absl::StatusOr<Dataset> LoadLibsvm(const std::string& path,
                                   std::int64_t num_features) {
  if (num_features < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LoadLibsvm: num_features = ", num_features,
        "; must be >= 0 (0 infers it)"));
  }
  FEDSIM_ASSIGN_OR_RETURN(GzReader reader, GzReader::Open(path));
  FEDSIM_ASSIGN_OR_RETURN(const std::string text, reader.ReadAll());

  // Sparse entries are kept until the width is known, then scattered.
  struct Entry {
    std::int64_t index;  // 0-based
    float value;
  };
  std::vector<Entry> entries;
  std::vector<std::int64_t> row_end;  // row i's entries end at row_end[i]
  std::vector<double> raw_labels;
  std::vector<std::int64_t> label_line;  // for messages about labels
  std::int64_t max_index = 0;
  std::vector<absl::string_view> tokens;

  auto parse_line = [&](std::int64_t line_number,
                        absl::string_view line) -> absl::Status {
    // '#' starts a comment, as in the LIBSVM tools' own files.
    line = line.substr(0, line.find('#'));
    tokens.clear();
    std::size_t pos = 0;
    while (pos < line.size()) {
      while (pos < line.size() && IsBlank(line[pos])) ++pos;
      std::size_t end = pos;
      while (end < line.size() && !IsBlank(line[end])) ++end;
      if (end > pos) tokens.push_back(line.substr(pos, end - pos));
      pos = end;
    }
    if (tokens.empty()) return absl::OkStatus();

    double label;
    if (!ParseDouble(tokens[0], label) || label != std::floor(label)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_number, ": label ", Quoted(tokens[0]),
          " is not an integer"));
    }
    std::int64_t previous = 0;
    for (std::size_t t = 1; t < tokens.size(); ++t) {
      const absl::string_view token = tokens[t];
      const std::size_t colon = token.find(':');
      if (colon == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": ", Quoted(token),
            " is not an index:value pair"));
      }
      std::int64_t index;
      if (!ParseInt64(token.substr(0, colon), index) || index < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": feature index ",
            Quoted(token.substr(0, colon)), " is not an integer >= 1"));
      }
      if (index <= previous) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": feature index ", index,
            " follows index ", previous,
            "; indices must be strictly increasing"));
      }
      if (num_features > 0 && index > num_features) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": feature index ", index,
            " exceeds num_features = ", num_features));
      }
      double value;
      const absl::string_view value_text = token.substr(colon + 1);
      if (!ParseDouble(value_text, value) || !FitsFloat(value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_number, ": feature ", index, ": value ",
            Quoted(value_text), " is not a finite float32 number"));
      }
      previous = index;
      max_index = std::max(max_index, index);
      entries.push_back({index - 1, static_cast<float>(value)});
    }
    raw_labels.push_back(label);
    label_line.push_back(line_number);
    row_end.push_back(static_cast<std::int64_t>(entries.size()));
    return absl::OkStatus();
  };
  FEDSIM_RETURN_IF_ERROR(ForEachLine(text, parse_line));

  const auto n = static_cast<std::int64_t>(raw_labels.size());
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": contains no data rows"));
  }
  const std::int64_t dim = num_features > 0 ? num_features : max_index;
  if (dim == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no row has a feature; cannot infer num_features"));
  }
  if (n > kMaxDatasetValues / dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", n, " rows x ", dim, " features exceed the limit of ",
        kMaxDatasetValues, " dense values"));
  }

  // Label mapping: {-1, +1} is the LIBSVM binary convention; anything else
  // must already be class indices.
  bool has_minus_one = false;
  bool binary = true;
  for (double y : raw_labels) {
    if (y == -1) has_minus_one = true;
    if (y != -1 && y != 0 && y != 1) binary = false;
  }
  const bool plus_minus = binary && has_minus_one;
  std::vector<double> labels(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const double y = raw_labels[i];
    if (plus_minus) {
      if (y == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", label_line[i],
            ": label 0 mixed with label -1; binary labels must be {-1, +1} "
            "or {0, 1}"));
      }
      labels[i] = y > 0 ? 1.0 : 0.0;
    } else {
      FEDSIM_RETURN_IF_ERROR(
          CheckClassLabel(y, absl::StrCat(path, ":", label_line[i])));
      labels[i] = y;
    }
  }

  Dataset data;
  data.features = RowMajorMatrixF::Zero(n, dim);
  std::int64_t begin = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t e = begin; e < row_end[i]; ++e) {
      data.features(i, entries[e].index) = entries[e].value;
    }
    begin = row_end[i];
  }
  data.labels = Eigen::Map<const Eigen::VectorXd>(labels.data(), n);
  data.num_classes = binary ? 2 : NumClasses(labels);
  return data;
}

}  // namespace fedsim
