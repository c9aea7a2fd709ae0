#include "server/strategy/fedvarp.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"

namespace fedsim {

namespace {

ConstVectorRef VarpSlice(const std::vector<double>& y, std::int64_t k, std::int64_t d) {
  return ConstVectorRef(y.data() + k * d, static_cast<Eigen::Index>(d));
}

bool VarpAllFinite(const std::vector<double>& v) {
  return AllFinite(ConstVectorRef(v.data(), static_cast<Eigen::Index>(v.size())));
}

}  // namespace

FedVarp::FedVarp(const FedVarpOptions& options, std::int64_t num_clients,
                 std::int64_t dim)
    : options_(options), n_(num_clients), d_(dim) {
  FEDSIM_CHECK(n_ >= 1 && d_ >= 1 && options_.server_lr > 0.0)
      << "FedVARP: N = " << n_ << ", d = " << d_ << ", eta = " << options_.server_lr;
  y_.assign(static_cast<std::size_t>(n_ * d_), 0.0);
  ybar_.assign(static_cast<std::size_t>(d_), 0.0);
}

std::vector<TaskSpec> FedVarp::Plan(Round /*round*/,
                                    std::span<const ClientId> participants) {
  planned_.clear();
  planned_.reserve(participants.size());
  for (ClientId k : participants) {
    TaskSpec t;
    t.client = k;
    t.local = options_.local;
    planned_.push_back(std::move(t));
  }
  return planned_;
}

ConstVectorRef FedVarp::stored_update(ClientId client) const {
  FEDSIM_CHECK(client.value >= 0 && client.value < n_);
  return VarpSlice(y_, client.value, d_);
}

ConstVectorRef FedVarp::stored_mean() const {
  return ConstVectorRef(ybar_.data(), static_cast<Eigen::Index>(d_));
}

void FedVarp::MeanOf(const std::vector<double>& y, std::vector<double>& out) const {
  out.assign(static_cast<std::size_t>(d_), 0.0);
  VectorRef sum(out.data(), static_cast<Eigen::Index>(d_));
  // sum += 1.0 * y_n adds y_n exactly: the sum is in client order.
  for (std::int64_t k = 0; k < n_; ++k) Axpy(1.0, VarpSlice(y, k, d_), sum, options_.kernel);
  sum /= static_cast<double>(n_);
}

absl::StatusOr<AggregationReport> FedVarp::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  // Everything is checked before anything changes.
  if (global.size() != d_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FedVARP round ", round, ": model of ", global.size(), " parameters, expected ", d_));
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    const ClientResult& r = results[i];
    const bool planned = std::any_of(
        planned_.begin(), planned_.end(),
        [&](const TaskSpec& t) { return t.client == r.client; });
    if (!planned || r.client.value < 0 || r.client.value >= n_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": result from client ", r.client.value,
          ", which was not selected"));
    }
    if (i > 0 && !(results[i - 1].client < r.client)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": results are not sorted by distinct client ids"));
    }
    if (r.update.size() != d_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": update of client ", r.client.value, " has ",
          r.update.size(), " values, expected ", d_));
    }
  }
  AggregationReport report;
  if (results.empty()) return report;  // the official code: x and ybar stay

  // Direction: (sum_{S_t} (Delta_n - y_n)) / |S_t| + ybar, per element in
  // client order, with the y_n of before this round.
  const auto m = static_cast<double>(results.size());
  step_.setZero(d_);
  for (const ClientResult& r : results) {
    step_ += r.update - VarpSlice(y_, r.client.value, d_);
    report.weights.emplace_back(r.client, 1.0 / m);
  }
  step_ /= m;
  step_ += stored_mean();
  Axpy(options_.server_lr, step_, global, options_.kernel);

  // Then y_n <- Delta_n for the participants, and ybar <- mean of all y_n.
  for (const ClientResult& r : results) {
    VectorRef(y_.data() + r.client.value * d_, static_cast<Eigen::Index>(d_)) = r.update;
  }
  MeanOf(y_, ybar_);
  return report;
}

std::string FedVarp::EncodeState() const {
  ByteWriter w;
  w.I64(n_);
  w.I64(d_);
  w.F64s(y_);
  w.F64s(ybar_);
  return w.bytes();
}

absl::Status FedVarp::DecodeState(std::string_view bytes) {
  ByteReader r(bytes);
  const std::int64_t n = r.I64();
  const std::int64_t d = r.I64();
  if (!r.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: FedVARP state of ", bytes.size(), " bytes is malformed"));
  }
  if (n != n_ || d != d_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: FedVARP state for N = ", n, ", d = ", d, " given to a strategy of N = ",
        n_, ", d = ", d_));
  }
  std::vector<double> y = r.F64s();
  std::vector<double> ybar = r.F64s();
  if (!r.done() || y.size() != static_cast<std::size_t>(n_ * d_) ||
      ybar.size() != static_cast<std::size_t>(d_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: FedVARP state of ", bytes.size(), " bytes is malformed (expected ",
        8 * (n_ + 1) * d_ + 32, ")"));
  }
  if (!VarpAllFinite(y) || !VarpAllFinite(ybar)) {
    return absl::InvalidArgumentError(
        "checkpoint: FedVARP state holds a value that is not finite");
  }
  std::vector<double> mean;
  MeanOf(y, mean);
  if (mean != ybar) {
    return absl::InvalidArgumentError(
        "checkpoint: FedVARP state's ybar is not the mean of its stored updates");
  }
  y_ = std::move(y);
  ybar_ = std::move(ybar);
  return absl::OkStatus();
}

}  // namespace fedsim
