#include "common/data/synthetic.h"

#include <cmath>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "Eigen/Dense"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/random/stream.h"

namespace fedsim {
namespace {


// Streams are keyed (seed, kDataGeneration, device, substream). A device's
// own data comes from substream -1 of its own key, so it does not depend on
// how many devices there are or in which order they are generated. Things
// that belong to no device use device -1 with these substreams.
constexpr std::int64_t kNoDevice = -1;
constexpr std::int64_t kDeviceStream = -1;
constexpr std::int64_t kSharedModelStream = -1;
constexpr std::int64_t kTestSetStream = -2;

RngStream DataStream(std::uint64_t seed, std::int64_t device,
                     std::int64_t substream) {
  return RngStream(seed, RngPurpose::kDataGeneration, device, substream);
}

absl::Status CheckSize(std::int64_t rows, std::int64_t dim,
                       absl::string_view what) {
  if (dim > 0 && rows > kMaxDatasetValues / dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", rows, " rows x ", dim, " features exceed the limit of ",
        kMaxDatasetValues, " values"));
  }
  return absl::OkStatus();
}

Eigen::VectorXd GaussianVector(RngStream& rng, std::int64_t n) {
  Eigen::VectorXd v(n);
  for (std::int64_t i = 0; i < n; ++i) v[i] = rng.Gaussian();
  return v;
}

// Draws x ~ N(mean, I) into row `row` of `features` (as float32) and returns
// x . w computed from the stored values, so that targets agree exactly with
// the features a model will see.
double DrawLinearRow(RngStream& rng, const Eigen::VectorXd& mean,
                     const Eigen::VectorXd& w, RowMajorMatrixF& features,
                     std::int64_t row) {
  double dot = 0.0;
  for (std::int64_t j = 0; j < mean.size(); ++j) {
    const auto x = static_cast<float>(mean[j] + rng.Gaussian());
    features(row, j) = x;
    dot += static_cast<double>(x) * w[j];
  }
  return dot;
}

// One device of the FedProx generator before the train/test split.
struct DeviceData {
  RowMajorMatrixF features;
  Eigen::VectorXd labels;
  std::vector<std::int64_t> order;  // shuffled; the first n_train are train
  std::int64_t n_train = 0;
};

}  // namespace

absl::StatusOr<FederatedData> MakeLeastSquares(const LeastSquaresSpec& spec,
                                               std::uint64_t seed) {
  if (spec.num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: num_clients = ", spec.num_clients, "; must be >= 1"));
  }
  if (spec.examples_per_client < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("least squares: examples_per_client = ",
                     spec.examples_per_client, "; must be >= 1"));
  }
  if (spec.dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("least squares: dim = ", spec.dim, "; must be >= 1"));
  }
  if (spec.test_examples < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: test_examples = ", spec.test_examples,
        "; must be >= 0"));
  }
  if (!(spec.noise_std >= 0) || !std::isfinite(spec.noise_std)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: noise_std = ", spec.noise_std,
        "; must be finite and >= 0"));
  }
  if (!(spec.heterogeneity >= 0) || !std::isfinite(spec.heterogeneity)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: heterogeneity = ", spec.heterogeneity,
        "; must be finite and >= 0"));
  }
  const std::int64_t per_client = spec.examples_per_client;
  const std::int64_t n = std::int64_t{spec.num_clients} * per_client;
  const std::int64_t d = spec.dim;
  if (n < d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: num_clients * examples_per_client = ", n,
        " training rows < dim = ", d,
        "; the optimum would not be unique"));
  }
  if (absl::Status s = CheckSize(n, d, "least squares training set"); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckSize(spec.test_examples, d, "least squares test set");
      !s.ok()) {
    return s;
  }

  RngStream shared = DataStream(seed, kNoDevice, kSharedModelStream);
  const Eigen::VectorXd w = GaussianVector(shared, d);

  FederatedData out;
  out.train.features.resize(n, d);
  out.train.labels.resize(n);
  out.train.num_classes = 0;
  out.client_rows.resize(spec.num_clients);
  for (int k = 0; k < spec.num_clients; ++k) {
    RngStream rng = DataStream(seed, k, kDeviceStream);
    const Eigen::VectorXd mu = spec.heterogeneity * GaussianVector(rng, d);
    const Eigen::VectorXd w_k = w + spec.heterogeneity * GaussianVector(rng, d);
    std::vector<std::int64_t>& rows = out.client_rows[k];
    rows.resize(per_client);
    for (std::int64_t i = 0; i < per_client; ++i) {
      const std::int64_t row = k * per_client + i;
      rows[i] = row;
      const double dot = DrawLinearRow(rng, mu, w_k, out.train.features, row);
      out.train.labels[row] = dot + spec.noise_std * rng.Gaussian();
    }
  }

  RngStream test_rng = DataStream(seed, kNoDevice, kTestSetStream);
  const Eigen::VectorXd zero = Eigen::VectorXd::Zero(d);
  out.test.features.resize(spec.test_examples, d);
  out.test.labels.resize(spec.test_examples);
  out.test.num_classes = 0;
  for (std::int64_t i = 0; i < spec.test_examples; ++i) {
    const double dot = DrawLinearRow(test_rng, zero, w, out.test.features, i);
    out.test.labels[i] = dot + spec.noise_std * test_rng.Gaussian();
  }

  // The optimum is that of the data as stored (float32 features widened to
  // double), so a gradient evaluated on GatherBatch output vanishes at it.
  const Eigen::MatrixXd x = out.train.features.cast<double>();
  const Eigen::MatrixXd gram = x.transpose() * x;
  const Eigen::VectorXd rhs = x.transpose() * out.train.labels;
  const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(gram);
  if (qr.rank() < d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "least squares: the ", n, " training rows span only ", qr.rank(),
        " of ", d, " dimensions; the optimum is not unique"));
  }
  Eigen::VectorXd theta = qr.solve(rhs);
  // One step of iterative refinement recovers the digits the normal
  // equations lose to cond(X^T X) = cond(X)^2.
  theta += qr.solve(rhs - gram * theta);
  out.optimum = std::move(theta);
  return out;
}

absl::StatusOr<FederatedData> MakeFedProxSynthetic(
    const FedProxSyntheticSpec& spec, std::uint64_t seed) {
  if (spec.num_devices < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox synthetic: num_devices = ", spec.num_devices,
        "; must be >= 1"));
  }
  if (spec.dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox synthetic: dim = ", spec.dim, "; must be >= 1"));
  }
  if (spec.num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox synthetic: num_classes = ", spec.num_classes,
        "; must be >= 2"));
  }
  // alpha and beta are standard deviations, as in the reference code.
  if (!(spec.alpha >= 0) || !std::isfinite(spec.alpha)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox synthetic: alpha = ", spec.alpha,
        "; must be finite and >= 0"));
  }
  if (!(spec.beta >= 0) || !std::isfinite(spec.beta)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fedprox synthetic: beta = ", spec.beta, "; must be finite and >= 0"));
  }
  const std::int64_t d = spec.dim;
  const int c = spec.num_classes;

  // Sigma = diag(j^-1.2), j = 1..d; x = v + sqrt(Sigma) z.
  Eigen::VectorXd sigma_sqrt(d);
  for (std::int64_t j = 0; j < d; ++j) {
    sigma_sqrt[j] = std::sqrt(std::pow(static_cast<double>(j + 1), -1.2));
  }

  // Synthetic-IID: one model shared by all devices, drawn from its own stream
  // so that it is the same whatever the number of devices.
  Eigen::MatrixXd shared_w;
  Eigen::VectorXd shared_b;
  if (spec.iid) {
    RngStream shared = DataStream(seed, kNoDevice, kSharedModelStream);
    shared_w.resize(d, c);
    for (std::int64_t j = 0; j < d; ++j) {
      for (int l = 0; l < c; ++l) shared_w(j, l) = shared.Gaussian();
    }
    shared_b = GaussianVector(shared, c);
  }

  std::vector<DeviceData> devices(spec.num_devices);
  std::int64_t total_train = 0;
  std::int64_t total_test = 0;
  for (int k = 0; k < spec.num_devices; ++k) {
    RngStream rng = DataStream(seed, k, kDeviceStream);
    // n_k = floor(LogNormal(4, 2)) + 50, numpy's lognormal(4, 2).astype(int).
    // The size is drawn first in both variants, so a seed gives the IID and
    // non-IID sets the same device sizes.
    const double lognormal = std::exp(4.0 + 2.0 * rng.Gaussian());
    if (!(lognormal < static_cast<double>(kMaxDatasetValues / d))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fedprox synthetic: seed ", seed, " draws ", lognormal,
          " examples for device ", k, "; more than the limit of ", kMaxDatasetValues,
          " values; use another seed"));
    }
    const std::int64_t n_k = static_cast<std::int64_t>(lognormal) + 50;
    if (absl::Status s =
            CheckSize(total_train + total_test + n_k, d, "fedprox synthetic");
        !s.ok()) {
      return s;
    }

    Eigen::VectorXd v = Eigen::VectorXd::Zero(d);
    Eigen::MatrixXd w_k;
    Eigen::VectorXd b_k;
    if (spec.iid) {
      w_k = shared_w;
      b_k = shared_b;
    } else {
      const double u_k = spec.alpha * rng.Gaussian();
      const double b_mean = spec.beta * rng.Gaussian();
      for (std::int64_t j = 0; j < d; ++j) v[j] = b_mean + rng.Gaussian();
      w_k.resize(d, c);
      for (std::int64_t j = 0; j < d; ++j) {
        for (int l = 0; l < c; ++l) w_k(j, l) = u_k + rng.Gaussian();
      }
      b_k.resize(c);
      for (int l = 0; l < c; ++l) b_k[l] = u_k + rng.Gaussian();
    }

    DeviceData& dev = devices[k];
    dev.features.resize(n_k, d);
    dev.labels.resize(n_k);
    for (std::int64_t i = 0; i < n_k; ++i) {
      for (std::int64_t j = 0; j < d; ++j) {
        dev.features(i, j) =
            static_cast<float>(v[j] + sigma_sqrt[j] * rng.Gaussian());
      }
    }
    // Labels follow the stored float32 features, so they are exactly what a
    // model trained on this data set sees.
    const Eigen::MatrixXd logits =
        (dev.features.cast<double>() * w_k).rowwise() + b_k.transpose();
    for (std::int64_t i = 0; i < n_k; ++i) {
      Eigen::Index best;
      logits.row(i).maxCoeff(&best);  // first maximum on ties, like np.argmax
      dev.labels[i] = static_cast<double>(best);
    }
    dev.order.resize(n_k);
    std::iota(dev.order.begin(), dev.order.end(), std::int64_t{0});
    rng.Shuffle(std::span<std::int64_t>(dev.order));
    // int(0.9 * n) in the reference code, in exact integer arithmetic.
    dev.n_train = (9 * n_k) / 10;
    total_train += dev.n_train;
    total_test += n_k - dev.n_train;
  }

  FederatedData out;
  out.train.features.resize(total_train, d);
  out.train.labels.resize(total_train);
  out.train.num_classes = c;
  out.test.features.resize(total_test, d);
  out.test.labels.resize(total_test);
  out.test.num_classes = c;
  out.client_rows.resize(spec.num_devices);
  std::int64_t train_row = 0;
  std::int64_t test_row = 0;
  for (int k = 0; k < spec.num_devices; ++k) {
    const DeviceData& dev = devices[k];
    std::vector<std::int64_t>& rows = out.client_rows[k];
    rows.reserve(dev.n_train);
    for (std::size_t i = 0; i < dev.order.size(); ++i) {
      const std::int64_t src = dev.order[i];
      if (static_cast<std::int64_t>(i) < dev.n_train) {
        out.train.features.row(train_row) = dev.features.row(src);
        out.train.labels[train_row] = dev.labels[src];
        rows.push_back(train_row++);
      } else {
        out.test.features.row(test_row) = dev.features.row(src);
        out.test.labels[test_row] = dev.labels[src];
        ++test_row;
      }
    }
  }
  return out;
}

}  // namespace fedsim
