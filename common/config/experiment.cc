#include "common/config/experiment.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <filesystem>
#include <future>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/config/config.h"
#include "common/base/build_info.h"
#include "common/codec/flat_bytes.h"
#include "common/data/file_sources.h"
#include "common/data/loaders.h"
#include "common/data/row_cache.h"
#include "common/data/partition.h"
#include "common/data/synthetic.h"
#include "common/nn/network.h"
#include "common/objectives/network_objective.h"
#include "common/random/stream.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// Finds `name` or `name.gz` in `dir`.
absl::StatusOr<std::string> FindIdxFile(const std::string& dir,
                                        const std::string& name) {
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path p = fs::path(dir) / candidate;
    if (fs::exists(p)) return p.string();
  }
  return absl::NotFoundError(absl::StrCat(
      "data.path = '", dir, "': no ", name, " or ", name,
      ".gz there (run scripts/setup.sh to fetch Fashion-MNIST)"));
}

absl::StatusOr<Dataset> LoadIdxPair(const std::string& dir, const std::string& prefix,
                                    ImageShape* image) {
  FEDSIM_ASSIGN_OR_RETURN(std::string images,
                          FindIdxFile(dir, prefix + "-images-idx3-ubyte"));
  FEDSIM_ASSIGN_OR_RETURN(std::string labels,
                          FindIdxFile(dir, prefix + "-labels-idx1-ubyte"));
  return LoadIdx(images, labels, 1.0 / 255.0, image);
}

// data.normalize_mean / normalize_std: (x - mean[c]) / std[c] on every
// value of channel c, in float32 as torchvision's Normalize, on a copy of
// mapped rows.
absl::Status Normalize(const v1::DataConfig& d, FederatedData& data) {
  if (d.normalize_mean_size() == 0 && d.normalize_std_size() == 0) return absl::OkStatus();
  const std::int64_t channels = data.image.empty() ? 1 : data.image.channels;
  for (const auto& [key, n] : {std::pair{"normalize_mean", d.normalize_mean_size()},
                               std::pair{"normalize_std", d.normalize_std_size()}}) {
    if (n != 1 && n != channels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.", key, " has ", n, " values; the rows have ", channels,
          data.image.empty() ? " channel (they are not images): give one value"
                             : " channels: give one value a channel, or one for all"));
    }
  }
  if (d.normalize_mean_size() == 0 || d.normalize_std_size() == 0) {
    return absl::InvalidArgumentError(
        "data.normalize_mean and data.normalize_std go together; one is missing");
  }
  const std::int64_t plane = data.image.empty() ? 0 : data.image.height * data.image.width;
  for (Dataset* set : {&data.train, &data.test}) {
    if (set->shared != nullptr) {
      set->features = set->rows();
      set->shared.reset();
    }
    const std::int64_t dim = set->dim();
    for (std::int64_t r = 0; r < set->size(); ++r) {
      float* row = set->features.row(r).data();
      for (std::int64_t k = 0; k < dim; ++k) {
        const int c = plane == 0 ? 0 : static_cast<int>(k / plane);
        const auto mean = static_cast<float>(d.normalize_mean(d.normalize_mean_size() == 1 ? 0 : c));
        const auto sd = static_cast<float>(d.normalize_std(d.normalize_std_size() == 1 ? 0 : c));
        row[k] = (row[k] - mean) / sd;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<FederatedData> LoadData(const v1::ExperimentConfig& config,
                                       const std::string& data_dir) {
  const auto& d = config.data();
  const std::string path = data_dir.empty() ? d.path() : data_dir;
  FederatedData out;
  switch (d.source()) {
    case v1::DataConfig::SOURCE_FASHION_MNIST:
    case v1::DataConfig::SOURCE_IDX: {
      // The test set is inflated on a second thread while this one does
      // the training set (zlib is most of the start-up); the results do
      // not depend on it.
      std::future<absl::StatusOr<Dataset>> test =
          std::async(std::launch::async, [&path] { return LoadIdxPair(path, "t10k", nullptr); });
      absl::StatusOr<Dataset> train = LoadIdxPair(path, "train", &out.image);
      absl::StatusOr<Dataset> test_data = test.get();
      if (!train.ok()) return train.status();
      if (!test_data.ok()) return test_data.status();
      out.train = *std::move(train);
      out.test = *std::move(test_data);
      break;
    }
    case v1::DataConfig::SOURCE_CSV: {
      CsvOptions options;
      options.label_column = d.label_column();
      options.has_header = d.has_header();
      options.classification = d.classification();
      auto resolve = [&](const std::string& f) {
        return data_dir.empty() ? f : (fs::path(data_dir) / fs::path(f).filename()).string();
      };
      FEDSIM_ASSIGN_OR_RETURN(out.train, LoadCsv(resolve(d.train_file()), options));
      FEDSIM_ASSIGN_OR_RETURN(out.test, LoadCsv(resolve(d.test_file()), options));
      break;
    }
    case v1::DataConfig::SOURCE_LIBSVM: {
      auto resolve = [&](const std::string& f) {
        return data_dir.empty() ? f : (fs::path(data_dir) / fs::path(f).filename()).string();
      };
      FEDSIM_ASSIGN_OR_RETURN(out.train,
                              LoadLibsvm(resolve(d.train_file()), d.num_features()));
      // The test file must have the training set's width.
      FEDSIM_ASSIGN_OR_RETURN(out.test,
                              LoadLibsvm(resolve(d.test_file()), out.train.dim()));
      break;
    }
    case v1::DataConfig::SOURCE_SYNTHETIC_LEAST_SQUARES: {
      LeastSquaresSpec spec;
      spec.num_clients = config.clients().count();
      spec.examples_per_client = d.least_squares().examples_per_client();
      spec.dim = d.least_squares().dim();
      spec.noise_std = d.least_squares().noise_std();
      spec.heterogeneity = d.least_squares().heterogeneity();
      spec.test_examples = d.least_squares().test_examples();
      return MakeLeastSquares(spec, config.seed());
    }
    case v1::DataConfig::SOURCE_FEDPROX_SYNTHETIC: {
      FedProxSyntheticSpec spec;
      spec.alpha = d.fedprox_synthetic().alpha();
      spec.beta = d.fedprox_synthetic().beta();
      spec.iid = d.fedprox_synthetic().iid();
      spec.num_devices = config.clients().count();
      return MakeFedProxSynthetic(spec, config.seed());
    }
    case v1::DataConfig::SOURCE_NPZ:
    case v1::DataConfig::SOURCE_NPY: {
      ArraySourceOptions options;
      options.classification = d.classification();
      options.layout = d.image_layout() == v1::DataConfig::IMAGE_LAYOUT_NCHW   ? ImageLayout::kNchw
                       : d.image_layout() == v1::DataConfig::IMAGE_LAYOUT_NHWC ? ImageLayout::kNhwc
                                                                               : ImageLayout::kAuto;
      if (d.source() == v1::DataConfig::SOURCE_NPY) {
        FEDSIM_ASSIGN_OR_RETURN(out, LoadNpyFolder(path, options));
      } else {
        // A worker's --data-dir names the folder of the config's file.
        const std::string file =
            data_dir.empty() ? d.path() : (fs::path(data_dir) / fs::path(d.path()).filename()).string();
        FEDSIM_ASSIGN_OR_RETURN(out, LoadNpz(file, options));
      }
      break;
    }
    case v1::DataConfig::SOURCE_CIFAR10: {
      FEDSIM_ASSIGN_OR_RETURN(out, LoadCifar(path, CifarLabels::kCifar10));
      break;
    }
    case v1::DataConfig::SOURCE_CIFAR100: {
      FEDSIM_ASSIGN_OR_RETURN(
          out, LoadCifar(path, d.cifar100_labels() == v1::DataConfig::CIFAR100_LABELS_COARSE
                                   ? CifarLabels::kCifar100Coarse
                                   : CifarLabels::kCifar100Fine));
      break;
    }
    case v1::DataConfig::SOURCE_LEAF: {
      FEDSIM_ASSIGN_OR_RETURN(out, LoadLeaf(path));
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("config: data.source = ", d.source(), " is not supported"));
  }
  if (out.train.dim() != out.test.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data: the training set has ", out.train.dim(),
        " features but the test set has ", out.test.dim()));
  }
  out.train.num_classes = std::max(out.train.num_classes, out.test.num_classes);
  if (d.has_num_classes()) {
    if (out.train.num_classes == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.num_classes = ", d.num_classes(), " but the labels are real targets"));
    }
    if (d.num_classes() < out.train.num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data.num_classes = ", d.num_classes(), " but the data has label ",
          out.train.num_classes - 1, "; it must exceed every label"));
    }
    out.train.num_classes = d.num_classes();
  }
  out.test.num_classes = out.train.num_classes;
  // Every label a class (a loader's own count could be smaller).
  for (const Dataset* set : {&out.train, &out.test}) {
    if (out.train.num_classes == 0 || set->labels.size() == 0) continue;
    const double largest = set->labels.maxCoeff();
    if (!(largest < out.train.num_classes) || !(set->labels.minCoeff() >= 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data: a label ", largest, " of the ", set == &out.train ? "training" : "test",
          " set is not a class of ", out.train.num_classes));
    }
  }
  FEDSIM_RETURN_IF_ERROR(Normalize(d, out));
  return out;
}

Eigen::MatrixXd RowMajorMatrix(const google::protobuf::RepeatedField<double>& v,
                               Eigen::Index rows, Eigen::Index cols) {
  Eigen::MatrixXd m(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i) {
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = v[i * cols + j];
  }
  return m;
}

absl::StatusOr<LsaProblem> BuildLsaProblem(const v1::ExperimentConfig& config) {
  const auto& l = config.lsa();
  switch (l.problem()) {
    case v1::LsaConfig::PROBLEM_TD: {
      std::vector<TdChain> chains;
      for (int c = 0; c < l.mdps_size(); ++c) {
        const auto& m = l.mdps(c);
        const auto s = static_cast<Eigen::Index>(m.reward_size());
        if (s == 0 || m.transition_size() != s * s || m.features_size() % s != 0 ||
            m.features_size() == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "lsa.mdps[", c, "]: reward has ", s, " entries, so transition needs ",
              s * s, " (has ", m.transition_size(), ") and features a multiple of ",
              s, " (has ", m.features_size(), ")"));
        }
        TdChain chain;
        chain.transition = RowMajorMatrix(m.transition(), s, s);
        chain.reward = Eigen::Map<const Eigen::VectorXd>(m.reward().data(), s);
        chain.features = RowMajorMatrix(m.features(), s, m.features_size() / s);
        chain.gamma = m.gamma();
        chains.push_back(std::move(chain));
      }
      return MakeTdProblem(std::move(chains));
    }
    case v1::LsaConfig::PROBLEM_LINEAR: {
      std::vector<Eigen::MatrixXd> as;
      std::vector<Eigen::VectorXd> bs;
      for (int c = 0; c < l.systems_size(); ++c) {
        const auto& sys = l.systems(c);
        const auto p = static_cast<Eigen::Index>(sys.b_size());
        if (p == 0 || sys.a_size() != p * p) {
          return absl::InvalidArgumentError(absl::StrCat(
              "lsa.systems[", c, "]: b has ", p, " entries, so a needs ", p * p,
              " (has ", sys.a_size(), ")"));
        }
        as.push_back(RowMajorMatrix(sys.a(), p, p));
        bs.push_back(Eigen::Map<const Eigen::VectorXd>(sys.b().data(), p));
      }
      return MakeLinearProblem(std::move(as), std::move(bs), l.noise_std());
    }
    default: {
      GarnetSpec spec;
      spec.num_agents = config.clients().count();
      spec.states = l.states();
      spec.actions = l.actions();
      spec.branching = l.branching();
      spec.features = l.features();
      spec.gamma = l.gamma();
      spec.kernel_heterogeneity = l.kernel_heterogeneity();
      spec.reward_heterogeneity = l.reward_heterogeneity();
      return MakeGarnet(spec, l.environment_seed());
    }
  }
}

absl::StatusOr<Experiment> BuildLsaExperiment(const v1::ExperimentConfig& config) {
  Experiment exp;
  auto problem = BuildLsaProblem(config);
  if (!problem.ok()) return AnnotateStatus(problem.status(), "lsa");
  exp.lsa = std::make_unique<LsaSetup>();
  exp.lsa->problem = *std::move(problem);
  switch (config.lsa().oracle()) {
    case v1::LsaConfig::ORACLE_MARKOV:
      exp.lsa->oracle = LsaOracle::kMarkov;
      break;
    case v1::LsaConfig::ORACLE_EXPECTED:
      exp.lsa->oracle = LsaOracle::kExpected;
      break;
    default:
      exp.lsa->oracle = LsaOracle::kIid;
  }
  exp.lsa->control_variates = AlgorithmTraitsOf(config.algorithm().name()).control_variates();
  const double p = config.algorithm().communication_probability();
  exp.lsa->cv_divisor = p > 0.0 ? config.local().lr() / p
                                : config.local().lr() *
                                      static_cast<double>(config.local().max_steps());
  exp.client_sizes.assign(exp.lsa->problem.agents.size(), 1);
  exp.data.optimum = exp.lsa->problem.theta_star;
  return exp;
}

}  // namespace

bool ScaffLsaPartialParticipation(const v1::ExperimentConfig& config) {
  return config.algorithm().name() == v1::AlgorithmConfig::NAME_SCAFFLSA &&
         (config.participation().model() != v1::ParticipationConfig::MODEL_UNIFORM ||
          config.participation().client_fraction() < 1.0);
}

absl::StatusOr<DpSetup> ResolveDp(const v1::ExperimentConfig& config,
                                  const std::vector<std::int64_t>& client_sizes) {
  const v1::DpConfig& c = config.local().dp();
  const v1::LocalConfig& local = config.local();
  DpSetup dp;
  switch (c.mode()) {
    case v1::DpConfig::MODE_CLIP:
      dp.spec.mode = DpMode::kClip;
      break;
    case v1::DpConfig::MODE_DICESGD:
      dp.spec.mode = DpMode::kDiceSgd;
      break;
    default:
      dp.spec.mode = DpMode::kNone;
  }
  dp.spec.clip = c.clip();
  dp.spec.error_clip = c.error_clip();
  dp.spec.ghost_clipping = c.ghost_clipping();
  dp.orders = RdpOrders(c.max_order(), c.fractional_orders());
  dp.delta = c.delta();
  dp.conversion = c.conversion() == v1::DpConfig::CONVERSION_CLASSICAL
                      ? RdpConversion::kClassical
                      : RdpConversion::kTight;
  dp.epsilon_budget = c.epsilon_budget();
  for (const std::int64_t n : client_sizes) {
    if (n < 1) {
      return absl::InvalidArgumentError(
          "config: local.dp: a client has no rows; DP-SGD needs n_k >= 1");
    }
    dp.sampling_rates.push_back(SamplingRate(local.batch_size(), n));
    dp.steps_per_task.push_back(DpLocalSteps(local.epochs(), local.batch_size(),
                                             local.max_steps(), n));
  }
  if (c.target_epsilon() > 0.0) {
    std::vector<std::int64_t> total_steps;
    for (const std::int64_t s : dp.steps_per_task) {
      total_steps.push_back(s * config.rounds());
    }
    absl::StatusOr<double> z =
        CalibrateNoiseMultiplier(dp.sampling_rates, total_steps, dp.delta,
                                 c.target_epsilon(), dp.orders, dp.conversion);
    if (!z.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config: local.dp.target_epsilon = ", c.target_epsilon(),
                       "; ", z.status().message()));
    }
    dp.spec.noise_multiplier = *z;
    dp.calibrated = true;
  } else {
    dp.spec.noise_multiplier = c.noise_multiplier();
  }
  return dp;
}

namespace {

nn::LayerSpec LayerFromConfig(const v1::LayerConfig& c) {
  nn::LayerSpec l;
  switch (c.type()) {
    case v1::LayerConfig::TYPE_CONV2D: l.kind = nn::LayerKind::kConv2d; break;
    case v1::LayerConfig::TYPE_MAXPOOL2D: l.kind = nn::LayerKind::kMaxPool2d; break;
    case v1::LayerConfig::TYPE_RELU: l.kind = nn::LayerKind::kRelu; break;
    case v1::LayerConfig::TYPE_DROPOUT: l.kind = nn::LayerKind::kDropout; break;
    case v1::LayerConfig::TYPE_FLATTEN: l.kind = nn::LayerKind::kFlatten; break;
    case v1::LayerConfig::TYPE_LINEAR: l.kind = nn::LayerKind::kLinear; break;
    case v1::LayerConfig::TYPE_EMBEDDING: l.kind = nn::LayerKind::kEmbedding; break;
    case v1::LayerConfig::TYPE_LSTM: l.kind = nn::LayerKind::kLstm; break;
    default: break;
  }
  l.out = c.out();
  l.kernel = c.kernel();
  l.stride = c.stride();
  l.padding = c.padding();
  l.same = c.same();
  l.p = c.p();
  l.vocab = c.vocab();
  l.num_layers = c.num_layers() == 0 ? 1 : c.num_layers();
  l.init = c.init() == v1::LayerConfig::INIT_KAIMING_NORMAL ? nn::Init::kKaimingNormal
                                                             : nn::Init::kTorchDefault;
  return l;
}

// A key given to a layer that does not use it is an error, not silently
// ignored (a maxpool2d with padding would otherwise run without it).
absl::Status CheckLayerKeys(const v1::LayerConfig& l, int index) {
  using L = v1::LayerConfig;
  const std::string type = absl::AsciiStrToLower(L::Type_Name(l.type()).substr(5));
  // Which keys each type takes.
  bool out = false, kernel = false, stride = false, padding = false, p = false, vocab = false,
       layers = false, init = false;
  switch (l.type()) {
    case L::TYPE_CONV2D: out = kernel = stride = padding = init = true; break;
    case L::TYPE_MAXPOOL2D: kernel = stride = true; break;
    case L::TYPE_DROPOUT: p = true; break;
    case L::TYPE_LINEAR: out = init = true; break;
    case L::TYPE_EMBEDDING: out = vocab = true; break;
    case L::TYPE_LSTM: out = layers = true; break;
    default: break;
  }
  const auto refuse = [&](const char* key, const std::string& value) {
    return absl::InvalidArgumentError(absl::StrCat("model.layers[", index, "].", key, " = ", value,
                                                   " does not apply to ", type));
  };
  if (!out && l.out() != 0) return refuse("out", absl::StrCat(l.out()));
  if (!kernel && l.kernel() != 0) return refuse("kernel", absl::StrCat(l.kernel()));
  if (!stride && l.stride() != 0) return refuse("stride", absl::StrCat(l.stride()));
  if (!padding && l.padding() != 0) return refuse("padding", absl::StrCat(l.padding()));
  if (!padding && l.same()) return refuse("same", "true");
  if (!p && l.p() != 0.0) return refuse("p", absl::StrCat(l.p()));
  if (!vocab && l.vocab() != 0) return refuse("vocab", absl::StrCat(l.vocab()));
  if (!layers && l.num_layers() != 0) return refuse("num_layers", absl::StrCat(l.num_layers()));
  if (!init && l.init() == L::INIT_KAIMING_NORMAL) return refuse("init", "kaiming_normal");
  return absl::OkStatus();
}

// Token ids (the input of an embedding) must be integers in [0, vocab).
absl::Status CheckTokens(const Dataset& data, const char* which, int vocab) {
  const auto rows = data.rows();
  for (Eigen::Index r = 0; r < rows.rows(); ++r) {
    for (Eigen::Index k = 0; k < rows.cols(); ++k) {
      const float v = rows(r, k);
      if (!(v >= 0.0f && v < static_cast<float>(vocab) && v == std::trunc(v))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data: ", which, " row ", r, " feature ", k, " = ", v,
            "; the network starts with an embedding, whose inputs are token ids, integers in "
            "[0, ", vocab, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// The network of model.architecture or model.layers, checked against the
// data: its input takes a row's features, its outputs are the classes.
absl::StatusOr<std::shared_ptr<const nn::Network>> BuildNetwork(const v1::ModelConfig& model,
                                                                const FederatedData& data) {
  const std::int64_t d = data.train.dim();
  if (d > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: the data's rows have ", d, " features; a network takes < 2^31"));
  }
  std::string what;
  absl::StatusOr<nn::Network> net = absl::InternalError("no network");
  if (!model.architecture().empty()) {
    what = absl::StrCat("model.architecture = ", model.architecture());
    net = nn::MakePreset(model.architecture(), model.dropout());
  } else {
    what = "model.layers";
    nn::NetworkSpec spec;
    if (model.input_shape_size() == 3) {
      spec.input = {nn::Shape::Kind::kImage, model.input_shape(0), model.input_shape(1),
                    model.input_shape(2)};
    } else {
      spec.input = {nn::Shape::Kind::kFlat,
                    model.input_shape_size() == 1 ? model.input_shape(0)
                                                  : static_cast<int>(d),
                    1, 1};
    }
    for (int i = 0; i < model.layers_size(); ++i) {
      const v1::LayerConfig& l = model.layers(i);
      if (l.type() == v1::LayerConfig::TYPE_UNSPECIFIED) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.layers[", i, "].type is missing; one of conv2d, "
            "maxpool2d, relu, dropout, flatten, linear, embedding, lstm"));
      }
      FEDSIM_RETURN_IF_ERROR(CheckLayerKeys(l, i));
      spec.layers.push_back(LayerFromConfig(l));
    }
    net = nn::Network::Create(spec);
  }
  if (!net.ok()) return net.status();
  if (model.dropout() > 0.0 && !net->HasDropout()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.dropout = ", model.dropout(), " with ", what,
        ", which has no Dropout layers (fedfix_cnn_cifar has)"));
  }
  const nn::Shape& in = net->shapes().front();
  if (in.size() != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " takes rows of ", in.size(), " features (", in.ToString(),
        "); the data's rows have ", d));
  }
  if (net->NumOutputs() != data.train.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", net->NumOutputs(), " outputs; the data has ", data.train.num_classes,
        " classes (a classifier's last layer has one output a class)"));
  }
  if (const int vocab = net->TokenVocabulary(); vocab > 0) {
    FEDSIM_RETURN_IF_ERROR(CheckTokens(data.train, "training", vocab));
    FEDSIM_RETURN_IF_ERROR(CheckTokens(data.test, "test", vocab));
  }
  return std::make_shared<const nn::Network>(*std::move(net));
}


// clients.partition = natural for sources whose files name the clients:
// one client per id (in increasing id order: LEAF's users in file order),
// rows in file order; clients outside [min_samples, max_samples] left out;
// clients.count, if set, of the rest drawn uniformly (kPartition stream),
// kept in id order. The rows of left-out clients go (training and test
// rows; mapped training rows stay in the file and `kept_rows` lists the
// others), and test rows of ids that are no kept client's.
absl::Status NaturalPartition(const v1::ExperimentConfig& config, FederatedData& data,
                              std::vector<std::int64_t>* kept_rows) {
  const auto& c = config.clients();
  if (data.train_row_clients.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clients.partition = natural but data.path = '", config.data().path(),
        "' names no clients (npz/npy: add client_train, one client id a training row)"));
  }
  const auto n = static_cast<std::int64_t>(data.train_row_clients.size());
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < n; ++r) order[static_cast<std::size_t>(r)] = r;
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return data.train_row_clients[static_cast<std::size_t>(a)] <
           data.train_row_clients[static_cast<std::size_t>(b)];
  });
  std::vector<std::vector<std::int64_t>> groups;
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::int64_t id = data.train_row_clients[static_cast<std::size_t>(order[i])];
    if (ids.empty() || ids.back() != id) {
      ids.push_back(id);
      groups.emplace_back();
    }
    groups.back().push_back(order[i]);
  }
  std::int64_t smallest = n, largest = 0;
  std::vector<std::size_t> kept;
  for (std::size_t k = 0; k < groups.size(); ++k) {
    const auto size = static_cast<std::int64_t>(groups[k].size());
    smallest = std::min(smallest, size);
    largest = std::max(largest, size);
    if (size >= c.min_samples() && (c.max_samples() == 0 || size <= c.max_samples())) {
      kept.push_back(k);
    }
  }
  if (kept.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clients.min_samples = ", c.min_samples(), ", max_samples = ", c.max_samples(),
        " leave no client: the data's ", groups.size(), " clients have ", smallest, " to ",
        largest, " training rows"));
  }
  if (c.has_count()) {
    if (c.count() > static_cast<std::int64_t>(kept.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clients.count = ", c.count(), " but the data names ", kept.size(), " clients",
          kept.size() < groups.size() ? " within clients.min_samples / max_samples" : "",
          " (leave count unset for all of them)"));
    }
    RngStream rng(config.seed(), RngPurpose::kPartition, -1, -1);
    std::vector<std::int64_t> pick =
        rng.SampleWithoutReplacement(static_cast<std::int64_t>(kept.size()), c.count());
    std::sort(pick.begin(), pick.end());
    std::vector<std::size_t> chosen;
    for (std::int64_t i : pick) chosen.push_back(kept[static_cast<std::size_t>(i)]);
    kept = std::move(chosen);
  }
  data.client_rows.clear();
  std::vector<std::string> names;
  std::vector<std::int64_t> kept_ids;
  for (std::size_t k : kept) {
    kept_ids.push_back(ids[k]);
    data.client_rows.push_back(std::move(groups[k]));
    if (static_cast<std::size_t>(ids[k]) < data.client_names.size()) {
      names.push_back(data.client_names[static_cast<std::size_t>(ids[k])]);
    }
  }
  // The rows of left-out clients leave the training set (train_loss,
  // run_start's train_rows): rows held in memory are dropped; rows read in
  // place from a mapped file stay there, unread, and `kept_rows` says which
  // rows train_loss may sample.
  std::vector<std::int64_t> rows;
  for (const auto& client : data.client_rows) rows.insert(rows.end(), client.begin(), client.end());
  std::sort(rows.begin(), rows.end());
  if (static_cast<std::int64_t>(rows.size()) < n) {
    if (data.train.shared == nullptr) {
      std::vector<std::int64_t> new_index(static_cast<std::size_t>(n), -1);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        new_index[static_cast<std::size_t>(rows[i])] = static_cast<std::int64_t>(i);
      }
      const int classes = data.train.num_classes;
      data.train = SelectRows(data.train, rows);
      data.train.num_classes = classes;
      for (auto& client : data.client_rows) {
        for (std::int64_t& r : client) r = new_index[static_cast<std::size_t>(r)];
      }
      std::vector<std::int64_t> row_clients;
      for (std::int64_t r : rows) {
        row_clients.push_back(data.train_row_clients[static_cast<std::size_t>(r)]);
      }
      data.train_row_clients = std::move(row_clients);
    } else {
      *kept_rows = std::move(rows);
    }
  }
  if (!data.test_row_clients.empty()) {
    // A test row stays if it is a kept client's, or of no training client
    // (LEAF's split by users); those of left-out clients go with them.
    std::sort(kept_ids.begin(), kept_ids.end());
    std::vector<std::int64_t> keep_test;
    for (std::size_t r = 0; r < data.test_row_clients.size(); ++r) {
      const std::int64_t id = data.test_row_clients[r];
      if (id < 0 || std::binary_search(kept_ids.begin(), kept_ids.end(), id)) {
        keep_test.push_back(static_cast<std::int64_t>(r));
      }
    }
    if (keep_test.empty()) {
      return absl::InvalidArgumentError(
          "clients: the kept clients have no test rows (every test row belongs to a client left "
          "out by clients.min_samples / max_samples / count, or with no training rows)");
    }
    if (static_cast<std::int64_t>(keep_test.size()) < data.test.size()) {
      const int classes = data.test.num_classes;
      data.test = SelectRows(data.test, keep_test);
      data.test.num_classes = classes;
      std::vector<std::int64_t> test_clients;
      for (std::int64_t r : keep_test) {
        test_clients.push_back(data.test_row_clients[static_cast<std::size_t>(r)]);
      }
      data.test_row_clients = std::move(test_clients);
    }
  }
  data.client_names = std::move(names);
  return absl::OkStatus();
}

// local.augment against the data: crops and flips need image rows.
absl::StatusOr<std::optional<AugmentSpec>> ResolveAugment(const v1::ExperimentConfig& config,
                                                          const FederatedData& data) {
  const v1::AugmentConfig& a = config.local().augment();
  if (a.crop_padding() == 0 && !a.horizontal_flip()) return std::nullopt;
  if (data.image.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local.augment crops and flips images, but data.source = ",
        absl::AsciiStrToLower(v1::DataConfig::Source_Name(config.data().source()).substr(7)),
        " gives rows that are not images (idx, cifar10/100, FEMNIST-shaped leaf and image "
        "arrays of npz/npy are)"));
  }
  if (a.crop_padding() >= data.image.height || a.crop_padding() >= data.image.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local.augment.crop_padding = ", a.crop_padding(), "; must be smaller than the ",
        data.image.height, " x ", data.image.width, " images"));
  }
  AugmentSpec spec;
  spec.image = data.image;
  spec.crop_padding = a.crop_padding();
  spec.horizontal_flip = a.horizontal_flip();
  // A 0 pixel after data.normalize_*: (0 - mean) / std, as Normalize makes it.
  const auto& d = config.data();
  for (std::int64_t c = 0; c < data.image.channels; ++c) {
    if (d.normalize_mean_size() == 0) {
      spec.pad_value.push_back(0.0f);
    } else {
      const auto mean = static_cast<float>(
          d.normalize_mean(d.normalize_mean_size() == 1 ? 0 : static_cast<int>(c)));
      const auto sd = static_cast<float>(
          d.normalize_std(d.normalize_std_size() == 1 ? 0 : static_cast<int>(c)));
      spec.pad_value.push_back((0.0f - mean) / sd);
    }
  }
  return spec;
}

// The data of an experiment: loaded or generated, partitioned, the
// train_loss sample drawn, the rows reordered (BuildExperiment's comment).
absl::StatusOr<FederatedData> PrepareData(const v1::ExperimentConfig& config,
                                          const std::string& data_dir, bool keep_row_order) {
  Experiment exp;
  FEDSIM_ASSIGN_OR_RETURN(exp.data, LoadData(config, data_dir));

  const auto& clients = config.clients();
  const auto source = config.data().source();
  // Set when a natural partition leaves out clients of mapped rows: the
  // rows train_loss may use.
  std::vector<std::int64_t> kept_rows;
  if (clients.partition() == v1::ClientsConfig::PARTITION_NATURAL &&
      (source == v1::DataConfig::SOURCE_NPZ || source == v1::DataConfig::SOURCE_NPY ||
       source == v1::DataConfig::SOURCE_LEAF)) {
    FEDSIM_RETURN_IF_ERROR(NaturalPartition(config, exp.data, &kept_rows));
  } else if (clients.partition() != v1::ClientsConfig::PARTITION_NATURAL) {
    PartitionSpec spec;
    spec.num_clients = clients.count();
    spec.dirichlet_alpha = clients.dirichlet_alpha();
    spec.shards_per_client = clients.shards_per_client();
    switch (clients.partition()) {
      case v1::ClientsConfig::PARTITION_DIRICHLET:
        spec.kind = PartitionKind::kDirichlet;
        break;
      case v1::ClientsConfig::PARTITION_SHARDS:
        spec.kind = PartitionKind::kShards;
        break;
      default:
        spec.kind = PartitionKind::kIid;
    }
    RngStream rng(config.seed(), RngPurpose::kPartition, -1, -1);
    auto rows = PartitionRows(exp.data.train, spec, rng);
    if (!rows.ok()) return AnnotateStatus(rows.status(), "clients");
    exp.data.client_rows = *std::move(rows);
  }
  // train_loss's rows: drawn from the seed and the training set's size
  // only, before any reordering, so every partition and algorithm of a seed
  // is evaluated on the same rows, summed in the same order.
  if (!kept_rows.empty()) {
    const std::int64_t k = config.eval().train_rows();
    const auto m = static_cast<std::int64_t>(kept_rows.size());
    if (k > 0 && k < m) {
      RngStream rng(config.seed(), RngPurpose::kEvalSample, -1, -1);
      for (std::int64_t i : rng.SampleWithoutReplacement(m, k)) {
        exp.data.eval_rows.push_back(kept_rows[static_cast<std::size_t>(i)]);
      }
    } else {
      exp.data.eval_rows = std::move(kept_rows);
    }
  } else if (const std::int64_t k = config.eval().train_rows();
             k > 0 && k < exp.data.train.size()) {
    RngStream rng(config.seed(), RngPurpose::kEvalSample, -1, -1);
    exp.data.eval_rows = rng.SampleWithoutReplacement(exp.data.train.size(), k);
  }
  // Reordering costs about 0.25 us a row (random access, in place): 15 ms
  // for Fashion-MNIST, repaid within 30 quickstart rounds, but 4.9 s for
  // the 20 million rows of the 10^6-client scale benchmark, where it saves
  // 0.15 ms a round (docs/performance.md). Beyond kMaxRowsToReorder the
  // rows keep their order until the loaders place each row in its
  // client's block as they read it.
  // Rows mapped from a .npy file stay where the file has them (read-only,
  // paged in as clients read them).
  constexpr std::int64_t kMaxRowsToReorder = std::int64_t{1} << 21;
  if (!keep_row_order && exp.data.train.size() <= kMaxRowsToReorder &&
      exp.data.train.shared == nullptr) {
    MakeClientRowsContiguous(exp.data);
  }
  return std::move(exp.data);
}

// Bump when what BuildExperiment makes of the same files and config
// changes (a loader, the partition, the sample, the reordering): a row
// cache written by an older fedsim is then never mapped by a newer one.
constexpr int kDataPipelineVersion = 2;

// The files a config reads: data.path's regular files (IDX folders), or
// train_file and test_file (CSV, LIBSVM) resolved as LoadData resolves
// them; none for generated data.
std::vector<std::filesystem::path> DataFiles(const v1::ExperimentConfig& config,
                                             const std::string& data_dir) {
  const auto& d = config.data();
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  if (d.source() == v1::DataConfig::SOURCE_CSV || d.source() == v1::DataConfig::SOURCE_LIBSVM) {
    for (const std::string& f : {d.train_file(), d.test_file()}) {
      files.push_back(data_dir.empty() ? std::filesystem::path(f)
                                       : std::filesystem::path(data_dir) /
                                             std::filesystem::path(f).filename());
    }
    return files;
  }
  if (d.source() == v1::DataConfig::SOURCE_NPZ) {
    files.push_back(data_dir.empty() ? std::filesystem::path(d.path())
                                     : std::filesystem::path(data_dir) /
                                           std::filesystem::path(d.path()).filename());
    return files;
  }
  const std::string path = data_dir.empty() ? d.path() : data_dir;
  if (!path.empty() && std::filesystem::is_directory(path, ec)) {
    // LEAF's files are in train/ and test/.
    for (const auto& entry : std::filesystem::recursive_directory_iterator(path, ec)) {
      if (entry.is_regular_file(ec)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  }
  return files;
}

// What identifies the data a config makes: the data pipeline's version,
// the ISA level, the config keys that shape the data, and every data file
// by canonical path, size and modification time. Each part is written
// with its length, so no two inputs give the same text.
absl::StatusOr<std::string> RowCacheKey(const v1::ExperimentConfig& config,
                                        const std::string& data_dir) {
  std::string text;
  const auto add = [&text](absl::string_view part) {
    absl::StrAppend(&text, part.size(), ":", part, "\n");
  };
  add(absl::StrCat("fedsim row cache, pipeline ", kDataPipelineVersion));
  add(BuildIsa());
  add(absl::StrCat(config.seed()));
  add(absl::StrCat(config.eval().train_rows()));
  v1::DataConfig data = config.data();
  data.clear_path();  // the files below say where the data is
  data.clear_train_file();
  data.clear_test_file();
  for (const google::protobuf::Message* m :
       {static_cast<const google::protobuf::Message*>(&data),
        static_cast<const google::protobuf::Message*>(&config.clients())}) {
    std::string bytes;
    {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      m->SerializeToCodedStream(&coded);
    }
    add(bytes);
  }
  for (const std::filesystem::path& f : DataFiles(config, data_dir)) {
    std::error_code ec;
    const std::filesystem::path canonical = std::filesystem::weakly_canonical(f, ec);
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) {
      add(absl::StrCat((ec ? f : canonical).string(), " missing"));
      continue;
    }
    add(absl::StrCat((ec ? f : canonical).string(), " ", st.st_size, " ", st.st_mtim.tv_sec,
                     ".", st.st_mtim.tv_nsec));
  }
  return absl::BytesToHexString(Sha256Digest(text));
}

// data.source = npy without normalisation: float32 training rows are the
// file's own mapping, shared by every process through the page cache, so
// a row cache would only copy them (decided once loaded: other dtypes are
// converted into memory).
bool MapsDataFiles(const v1::ExperimentConfig& config) {
  return config.data().source() == v1::DataConfig::SOURCE_NPY &&
         config.data().normalize_mean_size() == 0;
}

std::string RowCachePath(const std::string& dir, const std::string& key) {
  return (std::filesystem::path(dir) / absl::StrCat(key, ".rows")).string();
}

}  // namespace

absl::Status ShareRowsThroughCache(Experiment& e, const v1::ExperimentConfig& config,
                                   const std::string& data_dir, const std::string& cache_dir,
                                   bool durable) {
  if (config.data().source() == v1::DataConfig::SOURCE_LSA) return absl::OkStatus();
  if (MapsDataFiles(config) && e.data.train.shared != nullptr) {
    e.data_note = "rows read in place from x_train.npy (data.source = npy)";
    return absl::OkStatus();
  }
  FEDSIM_ASSIGN_OR_RETURN(const std::string key, RowCacheKey(config, data_dir));
  const std::string path = RowCachePath(cache_dir, key);
  FEDSIM_ASSIGN_OR_RETURN(RowCacheLock lock, RowCacheLock::Acquire(path));
  absl::StatusOr<FederatedData> mapped = MapRowCache(path, key);
  if (!mapped.ok()) {
    if (!absl::IsNotFound(mapped.status())) {
      e.data_note = absl::StrCat(mapped.status().message(), "; rewritten");
    }
    FEDSIM_RETURN_IF_ERROR(WriteRowCache(e.data, path, key, durable));
    mapped = MapRowCache(path, key);
    if (!mapped.ok()) return mapped.status();
  }
  e.data = *std::move(mapped);
  if (e.data_note.empty()) e.data_note = absl::StrCat("rows shared through ", path);
  return absl::OkStatus();
}

absl::StatusOr<Experiment> BuildExperiment(const v1::ExperimentConfig& config,
                                           const std::string& data_dir,
                                           bool keep_row_order,
                                           const std::string& row_cache_dir) {
  if (config.data().source() == v1::DataConfig::SOURCE_LSA) {
    return BuildLsaExperiment(config);
  }
  Experiment exp;
  // data.source = npy: float32 rows are read in place from x_train.npy,
  // which every process maps (a row cache would only copy them); other
  // arrays are converted, and then shared through the cache as any data.
  std::optional<FederatedData> prepared;
  bool use_cache = !row_cache_dir.empty();
  if (use_cache && MapsDataFiles(config)) {
    FEDSIM_ASSIGN_OR_RETURN(FederatedData d, PrepareData(config, data_dir, keep_row_order));
    if (d.train.shared != nullptr) {
      exp.data = std::move(d);
      exp.data_note = "rows read in place from x_train.npy (data.source = npy)";
      use_cache = false;
    } else {
      prepared = std::move(d);
    }
  }
  if (row_cache_dir.empty()) {
    FEDSIM_ASSIGN_OR_RETURN(exp.data, PrepareData(config, data_dir, keep_row_order));
  } else if (use_cache) {
    if (keep_row_order) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row cache ", row_cache_dir, ": holds reordered rows; keep_row_order needs a build "
          "without it"));
    }
    FEDSIM_ASSIGN_OR_RETURN(const std::string key, RowCacheKey(config, data_dir));
    const std::string path = RowCachePath(row_cache_dir, key);
    // One process builds and writes; the others wait here, then map. A
    // cache that cannot be used (a folder that is not writable, a full
    // disk) costs sharing, not the run: the rows are then this process's
    // own, and data_note says why.
    absl::StatusOr<RowCacheLock> lock = RowCacheLock::Acquire(path);
    absl::StatusOr<FederatedData> mapped =
        lock.ok() ? MapRowCache(path, key) : absl::StatusOr<FederatedData>(lock.status());
    if (mapped.ok()) {
      exp.data = *std::move(mapped);
      exp.data_note = absl::StrCat("rows mapped from ", path);
    } else {
      if (lock.ok() && !absl::IsNotFound(mapped.status())) {
        exp.data_note = absl::StrCat(mapped.status().message(), "; ");
      }
      if (prepared.has_value()) {
        exp.data = *std::move(prepared);
      } else {
        FEDSIM_ASSIGN_OR_RETURN(exp.data, PrepareData(config, data_dir, false));
      }
      absl::Status written = lock.ok() ? WriteRowCache(exp.data, path, key, /*durable=*/true)
                                       : lock.status();
      if (written.ok()) mapped = MapRowCache(path, key);
      if (written.ok() && mapped.ok()) {
        exp.data = *std::move(mapped);
        absl::StrAppend(&exp.data_note, "rows written to ", path);
      } else {
        absl::StrAppend(&exp.data_note, "row cache not used (",
                        written.ok() ? mapped.status().message() : written.message(),
                        "): rows loaded by this process alone");
      }
    }
  }
  for (const auto& rows : exp.data.client_rows) {
    exp.client_sizes.push_back(static_cast<std::int64_t>(rows.size()));
  }
  FEDSIM_ASSIGN_OR_RETURN(exp.augment, ResolveAugment(config, exp.data));

  ObjectiveSpec spec;
  spec.num_features = exp.data.train.dim();
  spec.num_classes = exp.data.train.num_classes;
  spec.hidden_units = config.model().hidden_units();
  spec.l2 = config.model().l2();
  spec.precision = config.model().precision() == v1::ModelConfig::PRECISION_FLOAT32
                       ? Precision::kFloat32
                       : Precision::kFloat64;
  switch (config.model().objective()) {
    case v1::ModelConfig::OBJECTIVE_LEAST_SQUARES:
      spec.kind = ObjectiveKind::kLeastSquares;
      break;
    case v1::ModelConfig::OBJECTIVE_LOGISTIC:
      spec.kind = ObjectiveKind::kLogistic;
      if (spec.num_classes != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.objective = logistic needs 2 classes; the data has ",
            spec.num_classes));
      }
      break;
    case v1::ModelConfig::OBJECTIVE_MLP:
      spec.kind = ObjectiveKind::kMlp;
      break;
    case v1::ModelConfig::OBJECTIVE_NETWORK: {
      FEDSIM_ASSIGN_OR_RETURN(std::shared_ptr<const nn::Network> net,
                              BuildNetwork(config.model(), exp.data));
      FEDSIM_ASSIGN_OR_RETURN(exp.objective,
                              MakeNetworkObjective(std::move(net), spec.l2, spec.precision));
      if (config.local().dp().mode() != v1::DpConfig::MODE_NONE) {
        FEDSIM_ASSIGN_OR_RETURN(exp.dp, ResolveDp(config, exp.client_sizes));
      }
      return exp;
    }
    default:
      spec.kind = ObjectiveKind::kSoftmax;
  }
  if (spec.kind != ObjectiveKind::kLeastSquares && spec.num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.objective is a classifier but the data has ", spec.num_classes,
        " classes (regression data needs objective: least_squares)"));
  }
  FEDSIM_ASSIGN_OR_RETURN(exp.objective, MakeObjective(spec));
  if (config.local().dp().mode() != v1::DpConfig::MODE_NONE) {
    FEDSIM_ASSIGN_OR_RETURN(exp.dp, ResolveDp(config, exp.client_sizes));
  }
  return exp;
}

absl::StatusOr<FederatedData> LoadExperimentData(const v1::ExperimentConfig& config,
                                                 const std::string& data_dir) {
  return LoadData(config, data_dir);
}

absl::StatusOr<FederatedData> PrepareExperimentData(const v1::ExperimentConfig& config,
                                                    const std::string& data_dir) {
  return PrepareData(config, data_dir, /*keep_row_order=*/false);
}

}  // namespace fedsim
