#include "server/strategy/mifa.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"

namespace fedsim {

namespace {

ConstVectorRef MifaSlice(const std::vector<double>& y, std::int64_t k, std::int64_t d) {
  return ConstVectorRef(y.data() + k * d, static_cast<Eigen::Index>(d));
}

}  // namespace

Mifa::Mifa(const MifaOptions& options, std::int64_t num_clients, std::int64_t dim)
    : options_(options), n_(num_clients), d_(dim) {
  FEDSIM_CHECK(n_ >= 1 && d_ >= 1 && options_.server_lr > 0.0)
      << "MIFA: N = " << n_ << ", d = " << d_ << ", eta = " << options_.server_lr;
  y_.assign(static_cast<std::size_t>(n_ * d_), 0.0);
  mean_ = FlatVector::Zero(d_);
}

std::vector<TaskSpec> Mifa::Plan(Round /*round*/,
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

ConstVectorRef Mifa::stored_update(ClientId client) const {
  FEDSIM_CHECK(client.value >= 0 && client.value < n_);
  return MifaSlice(y_, client.value, d_);
}

ConstVectorRef Mifa::stored_mean() const {
  return ConstVectorRef(mean_.data(), mean_.size());
}

void Mifa::MeanOf(const std::vector<double>& y, FlatVector& out) const {
  out.setZero(d_);
  // out += 1.0 * y_n adds y_n exactly: the sum is in client order.
  for (std::int64_t k = 0; k < n_; ++k) Axpy(1.0, MifaSlice(y, k, d_), out, options_.kernel);
  out /= static_cast<double>(n_);
}

absl::StatusOr<AggregationReport> Mifa::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  // Everything is checked before anything changes.
  if (global.size() != d_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MIFA round ", round, ": model of ", global.size(), " parameters, expected ", d_));
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
  const double w = 1.0 / static_cast<double>(n_);
  for (const ClientResult& r : results) {
    VectorRef(y_.data() + r.client.value * d_, static_cast<Eigen::Index>(d_)) = r.update;
    report.weights.emplace_back(r.client, w);
  }
  // With nobody new the y_n, hence their mean, are those of the last round.
  if (!results.empty()) MeanOf(y_, mean_);
  Axpy(options_.server_lr, mean_, global, options_.kernel);
  return report;
}

std::string Mifa::EncodeState() const {
  ByteWriter w;
  w.I64(n_);
  w.I64(d_);
  w.F64s(y_);
  return w.bytes();
}

absl::Status Mifa::DecodeState(std::string_view bytes) {
  ByteReader r(bytes);
  const std::int64_t n = r.I64();
  const std::int64_t d = r.I64();
  if (!r.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: MIFA state of ", bytes.size(), " bytes is malformed"));
  }
  if (n != n_ || d != d_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: MIFA state for N = ", n, ", d = ", d, " given to a strategy of N = ",
        n_, ", d = ", d_));
  }
  std::vector<double> y = r.F64s();
  if (!r.done() || y.size() != static_cast<std::size_t>(n_ * d_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: MIFA state of ", bytes.size(), " bytes is malformed (expected ",
        8 * n_ * d_ + 24, ")"));
  }
  if (!AllFinite(ConstVectorRef(y.data(), static_cast<Eigen::Index>(y.size())))) {
    return absl::InvalidArgumentError(
        "checkpoint: MIFA state holds a value that is not finite");
  }
  y_ = std::move(y);
  MeanOf(y_, mean_);
  return absl::OkStatus();
}

}  // namespace fedsim
