#include "common/data/file_sources.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// IDX's pixel scale: a uint8 v becomes float(v * (1 / 255)), bit for bit
// what LoadIdx makes of it.
constexpr double kPixelScale = 1.0 / 255.0;

std::string ArrayShapeText(const std::vector<std::int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), shape.size() == 1 ? ",)" : ")");
}

bool IsChannels(std::int64_t v) { return v == 1 || v == 3 || v == 4; }

bool IsIntegerDtype(NpyDtype t) { return t != NpyDtype::kFloat32 && t != NpyDtype::kFloat64; }

absl::Status CheckArrayLabels(const std::string& name, const Eigen::VectorXd& labels,
                         bool classification) {
  for (Eigen::Index i = 0; i < labels.size(); ++i) {
    const double v = labels[i];
    if (classification) {
      if (!(v >= 0.0 && v <= static_cast<double>(kMaxClassIndex) && v == std::trunc(v))) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": row ", i, " = ", v, "; a class label is an integer in [0, ",
            kMaxClassIndex, "] (data.classification: false reads real targets)"));
      }
    } else if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": row ", i, " = ", v, "; targets must be finite"));
    }
  }
  return absl::OkStatus();
}

int ArrayNumClasses(const Eigen::VectorXd& labels) {
  return labels.size() == 0 ? 0 : static_cast<int>(labels.maxCoeff()) + 1;
}

// Fills `out` (train and test) from the named arrays; client_train is optional.
absl::StatusOr<FederatedData> FromArrays(std::map<std::string, NpyArray>& arrays,
                                         const std::string& where,
                                         const ArraySourceOptions& options) {
  for (const char* need : {"x_train", "y_train", "x_test", "y_test"}) {
    if (!arrays.contains(need)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": no array '", need, "' (fedsim reads x_train, y_train, x_test, y_test and "
          "optionally client_train, as Keras' mnist.npz names them)"));
    }
  }
  FederatedData out;
  ImageShape test_image;
  FEDSIM_ASSIGN_OR_RETURN(out.train, DatasetFromArrays(arrays.at("x_train"), arrays.at("y_train"),
                                                       options, &out.image));
  FEDSIM_ASSIGN_OR_RETURN(out.test, DatasetFromArrays(arrays.at("x_test"), arrays.at("y_test"),
                                                      options, &test_image));
  if (out.train.dim() != out.test.dim() || !(out.image == test_image)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": x_train rows have shape ", ArrayShapeText(std::vector<std::int64_t>(
                                                 arrays.at("x_train").shape.begin() + 1,
                                                 arrays.at("x_train").shape.end())),
        " but x_test rows ", ArrayShapeText(std::vector<std::int64_t>(
                                 arrays.at("x_test").shape.begin() + 1,
                                 arrays.at("x_test").shape.end())),
        "; they must be equal"));
  }
  if (auto it = arrays.find("client_train"); it != arrays.end()) {
    FEDSIM_ASSIGN_OR_RETURN(out.train_row_clients,
                            ClientIdsFromArray(it->second, out.train.size()));
  }
  return out;
}

}  // namespace

absl::StatusOr<Dataset> DatasetFromArrays(const NpyArray& x, const NpyArray& y,
                                          const ArraySourceOptions& options, ImageShape* image) {
  const auto bad = [](const std::string& name, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", why));
  };
  if (x.shape.empty()) return bad(x.name, "a scalar; features are an array (rows, ...)");
  const std::int64_t n = x.shape[0];
  if (!(y.shape.size() == 1 || (y.shape.size() == 2 && y.shape[1] == 1))) {
    return bad(y.name, absl::StrCat("shape ", ArrayShapeText(y.shape),
                                    "; labels are (rows,) or (rows, 1)"));
  }
  if (y.shape[0] != n) {
    return bad(y.name, absl::StrCat(y.shape[0], " labels for the ", n, " rows of ", x.name,
                                    "; there must be one a row"));
  }
  *image = ImageShape{};
  bool nhwc = false;
  const std::vector<std::int64_t>& s = x.shape;
  if (s.size() == 3) {
    *image = {1, s[1], s[2]};
  } else if (s.size() == 4) {
    ImageLayout layout = options.layout;
    if (layout == ImageLayout::kAuto) {
      if (IsChannels(s[1])) {
        layout = ImageLayout::kNchw;
      } else if (IsChannels(s[3])) {
        layout = ImageLayout::kNhwc;
      } else {
        return bad(x.name, absl::StrCat("shape ", ArrayShapeText(s),
                                        ": neither dimension 1 nor 3 is 1, 3 or 4 channels; "
                                        "set data.image_layout to nchw or nhwc"));
      }
    }
    nhwc = layout == ImageLayout::kNhwc;
    *image = nhwc ? ImageShape{s[3], s[1], s[2]} : ImageShape{s[1], s[2], s[3]};
  }
  std::int64_t d = 1;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] > 0 && d > kMaxDatasetValues / s[i]) {
      return bad(x.name, absl::StrCat("shape ", ArrayShapeText(s), ": rows of more than ",
                                      kMaxDatasetValues, " values"));
    }
    d *= s[i];
  }
  if (n < 1 || d < 1) {
    return bad(x.name, absl::StrCat("shape ", ArrayShapeText(s), ": no rows or no features"));
  }
  if (n * d > kMaxDatasetValues) {
    return bad(x.name, absl::StrCat("shape ", ArrayShapeText(s), ": more than ", kMaxDatasetValues,
                                    " values"));
  }
  Dataset out;
  if (x.mapped && x.dtype == NpyDtype::kFloat32 && !nhwc &&
      reinterpret_cast<std::uintptr_t>(x.data) % alignof(float) == 0) {
    auto shared = std::make_shared<SharedRows>();
    shared->data = reinterpret_cast<const float*>(x.data);
    shared->rows = n;
    shared->cols = d;
    shared->keep = x.keep;
    out.shared = std::move(shared);
  } else {
    out.features.resize(n, d);
    float* dst = out.features.data();
    const bool pixels = x.dtype == NpyDtype::kUint8;
    const std::int64_t hw = image->height * image->width;
    for (std::int64_t r = 0; r < n; ++r) {
      for (std::int64_t k = 0; k < d; ++k) {
        // NHWC element (h, w, c) of row r goes to c * HW + h * W + w.
        const std::int64_t to = nhwc ? (k % image->channels) * hw + k / image->channels : k;
        const double v = x.At(r * d + k);
        const auto f = static_cast<float>(pixels ? v * kPixelScale : v);
        if (!std::isfinite(f)) {
          return bad(x.name, absl::StrCat("row ", r, " value ", k, " = ", v,
                                          "; features must be finite in float32"));
        }
        dst[r * d + to] = f;
      }
    }
  }
  out.labels.resize(n);
  for (std::int64_t r = 0; r < n; ++r) out.labels[r] = y.At(r);
  FEDSIM_RETURN_IF_ERROR(CheckArrayLabels(y.name, out.labels, options.classification));
  out.num_classes = options.classification ? ArrayNumClasses(out.labels) : 0;
  return out;
}

absl::StatusOr<std::vector<std::int64_t>> ClientIdsFromArray(const NpyArray& ids,
                                                             std::int64_t rows) {
  if (!(ids.shape.size() == 1 || (ids.shape.size() == 2 && ids.shape[1] == 1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        ids.name, ": shape ", ArrayShapeText(ids.shape), "; client ids are (rows,)"));
  }
  if (ids.shape[0] != rows) {
    return absl::InvalidArgumentError(absl::StrCat(ids.name, ": ", ids.shape[0],
                                                   " client ids for ", rows,
                                                   " training rows; there must be one a row"));
  }
  if (!IsIntegerDtype(ids.dtype) || ids.dtype == NpyDtype::kBool) {
    return absl::InvalidArgumentError(absl::StrCat(
        ids.name, ": dtype ", NpyDtypeName(ids.dtype), "; client ids are integers"));
  }
  std::vector<std::int64_t> out(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const double v = ids.At(r);
    if (!(v >= 0.0 && v < 9.0e15)) {
      return absl::InvalidArgumentError(absl::StrCat(
          ids.name, ": row ", r, " = ", v, "; client ids are integers >= 0"));
    }
    out[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(v);
  }
  return out;
}

absl::StatusOr<FederatedData> LoadNpz(const std::string& path, const ArraySourceOptions& options) {
  FEDSIM_ASSIGN_OR_RETURN(auto arrays, ReadNpz(path));
  for (const auto& [key, array] : arrays) {
    if (std::find_if(std::begin(kArrayNames), std::end(kArrayNames),
                     [&](const char* n) { return key == n; }) == std::end(kArrayNames)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": member '", key, ".npy' is not one fedsim reads (x_train, y_train, x_test, "
          "y_test, client_train); remove or rename it"));
    }
  }
  return FromArrays(arrays, path, options);
}

absl::StatusOr<FederatedData> LoadNpyFolder(const std::string& dir,
                                            const ArraySourceOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("data.path = '", dir,
                                            "': not a folder (data.source = npy reads "
                                            "x_train.npy, y_train.npy, x_test.npy, y_test.npy)"));
  }
  std::map<std::string, NpyArray> arrays;
  for (const char* name : kArrayNames) {
    const fs::path p = fs::path(dir) / absl::StrCat(name, ".npy");
    if (!fs::exists(p, ec)) {
      if (std::string(name) == "client_train") continue;
      return absl::NotFoundError(absl::StrCat(p.string(), ": no such file (data.source = npy "
                                              "reads x_train.npy, y_train.npy, x_test.npy, "
                                              "y_test.npy and optionally client_train.npy)"));
    }
    // Features are mapped (read in place when float32); the small arrays
    // are read.
    const bool features = name[0] == 'x';
    FEDSIM_ASSIGN_OR_RETURN(NpyArray array, ReadNpy(p.string(), features));
    arrays.emplace(name, std::move(array));
  }
  return FromArrays(arrays, dir, options);
}

absl::StatusOr<FederatedData> LoadCifar(const std::string& dir, CifarLabels labels) {
  std::error_code ec;
  const bool cifar10 = labels == CifarLabels::kCifar10;
  const char* source = cifar10 ? "cifar10" : "cifar100";
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "data.path = '", dir, "': not a folder (data.source = ", source, " reads ",
        cifar10 ? "data_batch_*.bin and test_batch.bin" : "train.bin and test.bin", ")"));
  }
  std::vector<fs::path> train_files;
  fs::path test_file;
  if (cifar10) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("data_batch_", 0) == 0 && e.path().extension() == ".bin") {
        train_files.push_back(e.path());
      }
    }
    std::sort(train_files.begin(), train_files.end());
    test_file = fs::path(dir) / "test_batch.bin";
  } else {
    train_files.push_back(fs::path(dir) / "train.bin");
    test_file = fs::path(dir) / "test.bin";
  }
  if (train_files.empty()) {
    return absl::NotFoundError(absl::StrCat("data.path = '", dir,
                                            "': no data_batch_*.bin there (CIFAR-10's "
                                            "binary version, cifar-10-binary.tar.gz)"));
  }
  const std::int64_t label_bytes = cifar10 ? 1 : 2;
  const std::int64_t record = label_bytes + 3072;
  const int max_label = cifar10 ? 9 : labels == CifarLabels::kCifar100Fine ? 99 : 19;
  // The byte of the record that holds the label used.
  const std::int64_t label_at = labels == CifarLabels::kCifar100Fine ? 1 : 0;

  const auto read = [&](const std::vector<fs::path>& files) -> absl::StatusOr<Dataset> {
    std::int64_t rows = 0;
    for (const fs::path& f : files) {
      struct stat st {};
      if (::stat(f.c_str(), &st) != 0) {
        return absl::NotFoundError(absl::StrCat(f.string(), ": no such file"));
      }
      if (st.st_size == 0 || st.st_size % record != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            f.string(), ": ", st.st_size, " bytes, not a whole number of ", record,
            "-byte records (", label_bytes, " label byte", label_bytes > 1 ? "s" : "",
            " + 3072 pixel bytes): truncated, or not ", source, "'s binary format"));
      }
      rows += st.st_size / record;
    }
    if (rows * 3072 > kMaxDatasetValues) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": ", rows, " images; too many"));
    }
    Dataset out;
    out.features.resize(rows, 3072);
    out.labels.resize(rows);
    std::vector<unsigned char> buf(static_cast<std::size_t>(record) * 1024);
    std::int64_t row = 0;
    for (const fs::path& f : files) {
      std::FILE* file = std::fopen(f.c_str(), "rb");
      if (file == nullptr) {
        return absl::NotFoundError(absl::StrCat(f.string(), ": ", std::strerror(errno)));
      }
      std::int64_t offset = 0;
      while (true) {
        const std::size_t got = std::fread(buf.data(), 1, buf.size(), file);
        if (got == 0) break;
        if (got % static_cast<std::size_t>(record) != 0) {
          std::fclose(file);
          return absl::InvalidArgumentError(absl::StrCat(f.string(), ": offset ", offset,
                                                         ": the file changed while read"));
        }
        for (std::size_t at = 0; at < got; at += static_cast<std::size_t>(record)) {
          const unsigned char* rec = buf.data() + at;
          const int label = rec[label_at];
          if (label > max_label) {
            std::fclose(file);
            return absl::InvalidArgumentError(absl::StrCat(
                f.string(), ": offset ", offset + static_cast<std::int64_t>(at) + label_at,
                ": label ", label, "; ", source,
                labels == CifarLabels::kCifar100Coarse ? " coarse" : "",
                labels == CifarLabels::kCifar100Fine ? " fine" : "", " labels are 0 to ",
                max_label));
          }
          if (row >= rows) break;
          out.labels[row] = label;
          float* dst = out.features.row(row).data();
          for (int k = 0; k < 3072; ++k) {
            dst[k] = static_cast<float>(rec[label_bytes + k] * kPixelScale);
          }
          ++row;
        }
        offset += static_cast<std::int64_t>(got);
      }
      std::fclose(file);
    }
    if (row != rows) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": the files changed while read (", row, " of ", rows, " images)"));
    }
    out.num_classes = max_label + 1;
    return out;
  };
  FederatedData out;
  FEDSIM_ASSIGN_OR_RETURN(out.train, read(train_files));
  FEDSIM_ASSIGN_OR_RETURN(out.test, read({test_file}));
  out.image = {3, 32, 32};
  return out;
}

}  // namespace fedsim
