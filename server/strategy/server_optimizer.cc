#include "server/strategy/server_optimizer.h"

#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {

ServerOptimizer::ServerOptimizer(const ServerOptimizerOptions& options)
    : options_(options) {
  FEDSIM_CHECK(options_.lr > 0.0 && options_.momentum >= 0.0 &&
               options_.momentum < 1.0 && options_.beta1 >= 0.0 &&
               options_.beta1 < 1.0 && options_.beta2 >= 0.0 &&
               options_.beta2 < 1.0 && options_.tau > 0.0);
}

std::string ServerOptimizer::DisplayName(std::string_view base) const {
  const char* suffix = "";
  switch (options_.kind) {
    case ServerOptimizerKind::kSgd:
      return std::string(base);
    case ServerOptimizerKind::kMomentum:
      if (base == "FedAvg") return "FedAvgM";
      suffix = "Momentum";
      break;
    case ServerOptimizerKind::kAdam:
      suffix = "Adam";
      break;
    case ServerOptimizerKind::kYogi:
      suffix = "Yogi";
      break;
    case ServerOptimizerKind::kAdagrad:
      suffix = "Adagrad";
      break;
  }
  if (base == "FedAvg") return absl::StrCat("Fed", suffix);
  return absl::StrCat(std::string(base), "+", suffix);
}

void ServerOptimizer::Step(const FlatVector& delta, FlatVector& global,
                           const KernelContext& kernel) {
  FEDSIM_CHECK(delta.size() == global.size());
  const double eta = options_.lr;
  switch (options_.kind) {
    case ServerOptimizerKind::kSgd:
      Axpy(eta, delta, global, kernel);
      return;
    case ServerOptimizerKind::kMomentum:
      if (m_.size() == 0 || options_.momentum == 0.0) {
        m_ = delta;  // beta m + Delta with m = 0 (or beta = 0), exactly
      } else {
        FEDSIM_CHECK(m_.size() == delta.size());
        m_ = options_.momentum * m_ + delta;
      }
      Axpy(eta, m_, global, kernel);
      return;
    case ServerOptimizerKind::kAdam:
    case ServerOptimizerKind::kYogi:
    case ServerOptimizerKind::kAdagrad:
      break;
  }
  const double b1 = options_.beta1, b2 = options_.beta2, tau = options_.tau;
  if (m_.size() == 0) {
    m_ = FlatVector::Zero(delta.size());
    v_ = FlatVector::Constant(delta.size(), tau * tau);
  }
  FEDSIM_CHECK(m_.size() == delta.size());
  m_ = b1 * m_ + (1.0 - b1) * delta;
  const Eigen::ArrayXd d2 = delta.array().square();
  switch (options_.kind) {
    case ServerOptimizerKind::kAdagrad:
      v_.array() += d2;
      break;
    case ServerOptimizerKind::kYogi:
      v_.array() -= (1.0 - b2) * d2 * (v_.array() - d2).sign();
      break;
    default:  // kAdam
      v_ = b2 * v_ + (1.0 - b2) * d2.matrix();
      break;
  }
  global.array() += eta * m_.array() / (v_.array().sqrt() + tau);
}

namespace {

std::vector<double> ToVector(const FlatVector& v) {
  return std::vector<double>(v.data(), v.data() + v.size());
}

FlatVector FromVector(const std::vector<double>& v) {
  FlatVector out(static_cast<Eigen::Index>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) out[static_cast<Eigen::Index>(i)] = v[i];
  return out;
}

}  // namespace

void ServerOptimizer::Encode(ByteWriter& out) const {
  out.F64s(ToVector(m_));
  out.F64s(ToVector(v_));
}

bool ServerOptimizer::Decode(ByteReader& in) {
  const std::vector<double> m = in.F64s();
  const std::vector<double> v = in.F64s();
  if (!in.ok() || (!v.empty() && v.size() != m.size())) return false;
  m_ = FromVector(m);
  v_ = FromVector(v);
  return true;
}

}  // namespace fedsim
