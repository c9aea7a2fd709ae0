// LEAF's JSON files (Caldas et al. 2018, github.com/TalwalkarLab/leaf),
// read with nlohmann's SAX parser: FEMNIST's files are hundreds of MB, and
// a document tree of them would take ten times that.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/data/file_sources.h"
#include "nlohmann/json.hpp"

namespace fedsim {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// What one split (train/ or test/) reads: rows in user order.
struct LeafSplit {
  std::vector<float> x;
  std::vector<double> y;
  std::vector<std::int64_t> row_user;  // index into `users`
  std::vector<std::string> users;
  std::unordered_map<std::string, std::int64_t> user_index;
  std::vector<std::string> user_file;  // where each user was read
  std::int64_t dim = -1;
  int text = -1;  // -1 unknown, 0 numbers, 1 characters
};

int LetterIndex(char c) {
  const char* p = std::strchr(kLeafLetters, c);
  return (c == '\0' || p == nullptr) ? -1 : static_cast<int>(p - kLeafLetters);
}

// The SAX handler of one file. Paths it reads:
//   {"users": [name...], "num_samples": [n...], "user_data": {name: {"x": [...], "y": [...]}}}
// and any other top-level key is skipped ("hierarchies").
class LeafHandler : public nlohmann::json_sax<json> {
 public:
  LeafHandler(const std::string& file, LeafSplit& split) : file_(file), split_(split) {}

  const std::string& error() const { return error_; }
  const std::vector<std::string>& users() const { return users_; }
  const std::vector<std::int64_t>& num_samples() const { return num_samples_; }
  // Samples read for each user of user_data, in order.
  const std::vector<std::pair<std::string, std::int64_t>>& read() const { return read_; }

  bool null() override { return Scalar("null"); }
  bool boolean(bool) override { return Scalar("a boolean"); }
  bool number_integer(number_integer_t v) override { return Number(static_cast<double>(v), true); }
  bool number_unsigned(number_unsigned_t v) override {
    return Number(static_cast<double>(v), true);
  }
  bool number_float(number_float_t v, const string_t&) override { return Number(v, false); }
  bool binary(binary_t&) override { return Scalar("binary"); }

  bool string(string_t& s) override {
    if (skip_ > 0) return true;
    switch (at_) {
      case At::kUsers:
        users_.push_back(s);
        return true;
      case At::kX:
        if (!Kind(1)) return false;
        StartSample();
        for (const char c : s) {
          const int id = LetterIndex(c);
          if (id < 0) {
            const auto byte = static_cast<unsigned char>(c);
            return Fail(absl::StrCat(
                "user '", user_, "' x[", x_count_, "]: character ",
                byte >= 32 && byte < 127 ? absl::StrCat("'", std::string(1, c), "'")
                                         : absl::StrCat("byte ", static_cast<int>(byte)),
                " is not in LEAF's Shakespeare vocabulary"));
          }
          split_.x.push_back(static_cast<float>(id));
        }
        return EndSample();
      case At::kSample:
        return Fail(absl::StrCat("user '", user_, "' x[", x_count_,
                                 "] is a list of strings (Sent140's tweets need word embeddings, "
                                 "which fedsim does not have); samples are lists of numbers or "
                                 "one string of characters"));
      case At::kY: {
        const int id = s.size() == 1 ? LetterIndex(s[0]) : -1;
        if (id < 0) {
          return Fail(absl::StrCat("user '", user_, "' y[", y_count_, "] = \"", s,
                                   "\"; a character label is one character of LEAF's "
                                   "Shakespeare vocabulary"));
        }
        split_.y.push_back(id);
        ++y_count_;
        return true;
      }
      default:
        return Scalar("a string");
    }
  }

  bool start_object(std::size_t) override {
    if (Skipping()) return true;
    switch (at_) {
      case At::kStart:
        at_ = At::kTop;
        return true;
      case At::kUserData:
        at_ = At::kUserDataObject;
        return true;
      case At::kUserDataValue:
        at_ = At::kUser;
        x_count_ = y_count_ = 0;
        return true;
      case At::kUserDataObject:
        return Fail("user_data: expected a user name");
      default:
        return Unexpected("an object");
    }
  }

  bool key(string_t& k) override {
    if (skip_ > 0) return true;
    key_ = k.substr(0, 40);
    if (at_ == At::kTop) {
      if (k == "users") {
        at_ = At::kUsersKey;
      } else if (k == "num_samples") {
        at_ = At::kNumSamplesKey;
      } else if (k == "user_data") {
        at_ = At::kUserData;
      } else {
        skip_pending_ = true;  // "hierarchies" and other keys LEAF writes
      }
      return true;
    }
    if (at_ == At::kUserDataObject) {
      user_ = k;
      at_ = At::kUserDataValue;
      return true;
    }
    if (at_ == At::kUser) {
      if (k == "x") {
        at_ = At::kXKey;
      } else if (k == "y") {
        at_ = At::kYKey;
      } else {
        return Fail(absl::StrCat("user '", user_, "': key '", k, "'; a user's data holds x and y"));
      }
      return true;
    }
    return Unexpected("a key");
  }

  bool end_object() override {
    if (skip_ > 0) {
      if (--skip_ == 0) at_ = At::kTop;
      return true;
    }
    switch (at_) {
      case At::kUser: {
        if (x_count_ != y_count_) {
          return Fail(absl::StrCat("user '", user_, "': ", x_count_, " samples in x but ",
                                   y_count_, " labels in y"));
        }
        auto [it, inserted] = split_.user_index.emplace(
            user_, static_cast<std::int64_t>(split_.users.size()));
        if (!inserted) {
          return Fail(absl::StrCat("user '", user_, "' appears twice (also in ",
                                   split_.user_file[static_cast<std::size_t>(it->second)], ")"));
        }
        split_.users.push_back(user_);
        split_.user_file.push_back(file_);
        split_.row_user.insert(split_.row_user.end(), static_cast<std::size_t>(y_count_),
                               it->second);
        read_.emplace_back(user_, y_count_);
        at_ = At::kUserDataObject;
        return true;
      }
      case At::kUserDataObject:
        at_ = At::kTop;
        return true;
      case At::kTop:
        at_ = At::kDone;
        return true;
      default:
        return Unexpected("the end of an object");
    }
  }

  bool start_array(std::size_t) override {
    if (Skipping()) return true;
    switch (at_) {
      case At::kUsersKey:
        at_ = At::kUsers;
        return true;
      case At::kNumSamplesKey:
        at_ = At::kNumSamples;
        return true;
      case At::kXKey:
        at_ = At::kX;
        return true;
      case At::kYKey:
        at_ = At::kY;
        return true;
      case At::kX:
        if (!Kind(0)) return false;
        StartSample();
        at_ = At::kSample;
        return true;
      default:
        return Unexpected("an array");
    }
  }

  bool end_array() override {
    if (skip_ > 0) {
      if (--skip_ == 0) at_ = At::kTop;
      return true;
    }
    switch (at_) {
      case At::kUsers:
      case At::kNumSamples:
        at_ = At::kTop;
        return true;
      case At::kX:
      case At::kY:
        at_ = At::kUser;
        return true;
      case At::kSample:
        at_ = At::kX;
        return EndSample();
      default:
        return Unexpected("the end of an array");
    }
  }

  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    if (error_.empty()) {
      error_ = absl::StrCat(file_, ": offset ", position, ": not valid JSON near '",
                            last_token.substr(0, 40), "' (", ex.what(), ")");
    }
    return false;
  }

 private:
  enum class At {
    kStart, kTop, kUsersKey, kUsers, kNumSamplesKey, kNumSamples, kUserData, kUserDataObject,
    kUserDataValue, kUser, kXKey, kX, kSample, kYKey, kY, kDone
  };

  bool Fail(const std::string& why) {
    if (error_.empty()) error_ = absl::StrCat(file_, ": ", why);
    return false;
  }
  bool Unexpected(const char* what) {
    return Fail(absl::StrCat("unexpected ", what,
                             at_ == At::kStart ? " at the start"
                                               : absl::StrCat(" after key '", key_, "'"),
                             user_.empty() ? "" : absl::StrCat(" in user '", user_, "'"),
                             "; LEAF files are {\"users\": [...], \"num_samples\": [...], "
                             "\"user_data\": {user: {\"x\": [...], \"y\": [...]}}}"));
  }
  bool Scalar(const char* what) {
    if (skip_ > 0) return true;
    if (skip_pending_) {  // a skipped key's scalar value
      skip_pending_ = false;
      return true;
    }
    return Unexpected(what);
  }
  // An object or array inside a skipped value, or the value of a skipped
  // top-level key: counts its depth until its end.
  bool Skipping() {
    if (skip_ > 0 || skip_pending_) {
      skip_pending_ = false;
      ++skip_;
      return true;
    }
    return false;
  }

  bool Number(double v, bool integer) {
    if (skip_ > 0) return true;
    if (skip_pending_) {
      skip_pending_ = false;
      return true;
    }
    switch (at_) {
      case At::kNumSamples:
        if (!integer || v < 0 || v > static_cast<double>(kMaxDatasetValues)) {
          return Fail(absl::StrCat("num_samples holds ", v, "; counts are integers >= 0"));
        }
        num_samples_.push_back(static_cast<std::int64_t>(v));
        return true;
      case At::kSample:
        if (!std::isfinite(v)) {
          return Fail(absl::StrCat("user '", user_, "' x[", x_count_, "] holds ", v,
                                   "; features must be finite"));
        }
        split_.x.push_back(static_cast<float>(v));
        return true;
      case At::kY:
        if (!(v >= 0 && v <= static_cast<double>(kMaxClassIndex) && v == std::trunc(v))) {
          return Fail(absl::StrCat("user '", user_, "' y[", y_count_, "] = ", v,
                                   "; a class label is an integer in [0, ", kMaxClassIndex, "]"));
        }
        split_.y.push_back(v);
        ++y_count_;
        return true;
      default:
        return Unexpected("a number");
    }
  }

  // Samples are all numbers (kind 0) or all strings (kind 1).
  bool Kind(int kind) {
    if (split_.text < 0) split_.text = kind;
    if (split_.text != kind) {
      return Fail(absl::StrCat("user '", user_, "' x[", x_count_, "] is ",
                               kind == 1 ? "a string" : "a list of numbers",
                               "; earlier samples were ",
                               kind == 1 ? "lists of numbers" : "strings"));
    }
    return true;
  }
  void StartSample() { sample_start_ = static_cast<std::int64_t>(split_.x.size()); }
  bool EndSample() {
    const std::int64_t width = static_cast<std::int64_t>(split_.x.size()) - sample_start_;
    if (split_.dim < 0) split_.dim = width;
    if (width != split_.dim || width == 0) {
      return Fail(absl::StrCat("user '", user_, "' x[", x_count_, "] has ", width,
                               split_.text == 1 ? " characters" : " values",
                               ", the first sample had ", split_.dim,
                               "; every sample must have as many"));
    }
    if (static_cast<std::int64_t>(split_.x.size()) > kMaxDatasetValues) {
      return Fail(absl::StrCat("more than ", kMaxDatasetValues, " feature values"));
    }
    ++x_count_;
    return true;
  }

  const std::string& file_;
  LeafSplit& split_;
  At at_ = At::kStart;
  int skip_ = 0;
  bool skip_pending_ = false;
  std::string error_;
  std::string user_;
  std::string key_;
  std::int64_t sample_start_ = 0;
  std::int64_t x_count_ = 0;
  std::int64_t y_count_ = 0;
  std::vector<std::string> users_;
  std::vector<std::int64_t> num_samples_;
  std::vector<std::pair<std::string, std::int64_t>> read_;

};

absl::Status ReadSplit(const fs::path& dir, LeafSplit& split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": no such folder (data.source = leaf reads train/ and test/ with LEAF's "
                      "JSON files)"));
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": no .json files"));
  }
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(f.string(), ": cannot open"));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = f.string();
    LeafHandler handler(name, split);
    const bool ok = json::sax_parse(text.begin(), text.end(), &handler);
    if (!ok || !handler.error().empty()) {
      return absl::InvalidArgumentError(handler.error().empty()
                                            ? absl::StrCat(name, ": not a LEAF JSON file")
                                            : handler.error());
    }
    // users and num_samples must describe user_data.
    const auto& read = handler.read();
    if (handler.users().size() != read.size() ||
        handler.num_samples().size() != handler.users().size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": users lists ", handler.users().size(), " users, num_samples ",
          handler.num_samples().size(), ", user_data ", read.size(), "; they must be equal"));
    }
    std::unordered_map<std::string, std::int64_t> counts(read.begin(), read.end());
    std::unordered_map<std::string, std::size_t> listed;
    for (std::size_t i = 0; i < handler.users().size(); ++i) {
      const std::string& u = handler.users()[i];
      if (auto [at, fresh] = listed.emplace(u, i); !fresh) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": users[", i, "] = '", u, "' is also users[", at->second,
            "]; user names must be unique"));
      }
      auto it = counts.find(u);
      if (it == counts.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": users[", i, "] = '", u, "' has no entry in user_data"));
      }
      if (it->second != handler.num_samples()[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": num_samples[", i, "] = ", handler.num_samples()[i], " but user '", u,
            "' has ", it->second, " samples in user_data"));
      }
    }
  }
  if (split.y.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": no samples"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FederatedData> LoadLeaf(const std::string& dir) {
  LeafSplit train, test;
  FEDSIM_RETURN_IF_ERROR(ReadSplit(fs::path(dir) / "train", train));
  FEDSIM_RETURN_IF_ERROR(ReadSplit(fs::path(dir) / "test", test));
  if (train.dim != test.dim || train.text != test.text) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": training samples have ", train.dim, train.text == 1 ? " characters" : " values",
        ", test samples ", test.dim, test.text == 1 ? " characters" : " values",
        "; they must be alike"));
  }
  FederatedData out;
  const auto fill = [](LeafSplit& s, Dataset& d) {
    const auto n = static_cast<Eigen::Index>(s.y.size());
    d.features = Eigen::Map<const RowMajorMatrixF>(s.x.data(), n, s.dim);
    d.labels = Eigen::Map<const Eigen::VectorXd>(s.y.data(), n);
    std::vector<float>().swap(s.x);
  };
  fill(train, out.train);
  fill(test, out.test);
  // Characters: the vocabulary's 80 classes; numbers: 1 + the largest
  // label. Either way every label is a class.
  const int largest =
      static_cast<int>(std::max(out.train.labels.maxCoeff(), out.test.labels.maxCoeff()));
  const int classes = std::max(largest + 1, train.text == 1
                                                ? static_cast<int>(std::strlen(kLeafLetters))
                                                : 0);
  out.train.num_classes = out.test.num_classes = classes;
  if (train.text == 0 && train.dim == 784) out.image = {1, 28, 28};
  out.train_row_clients = std::move(train.row_user);
  out.client_names = std::move(train.users);
  out.test_row_clients.resize(test.row_user.size());
  for (std::size_t i = 0; i < test.row_user.size(); ++i) {
    const std::string& u = test.users[static_cast<std::size_t>(test.row_user[i])];
    auto it = train.user_index.find(u);
    out.test_row_clients[i] = it == train.user_index.end() ? -1 : it->second;
  }
  return out;
}

}  // namespace fedsim
