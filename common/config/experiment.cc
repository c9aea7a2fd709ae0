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

absl::StatusOr<Dataset> LoadIdxPair(const std::string& dir,
                                    const std::string& prefix) {
  FEDSIM_ASSIGN_OR_RETURN(std::string images,
                          FindIdxFile(dir, prefix + "-images-idx3-ubyte"));
  FEDSIM_ASSIGN_OR_RETURN(std::string labels,
                          FindIdxFile(dir, prefix + "-labels-idx1-ubyte"));
  return LoadIdx(images, labels);
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
          std::async(std::launch::async, [&path] { return LoadIdxPair(path, "t10k"); });
      absl::StatusOr<Dataset> train = LoadIdxPair(path, "train");
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
  out.test.num_classes = out.train.num_classes;
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


// The data of an experiment: loaded or generated, partitioned, the
// train_loss sample drawn, the rows reordered (BuildExperiment's comment).
absl::StatusOr<FederatedData> PrepareData(const v1::ExperimentConfig& config,
                                          const std::string& data_dir, bool keep_row_order) {
  Experiment exp;
  FEDSIM_ASSIGN_OR_RETURN(exp.data, LoadData(config, data_dir));

  const auto& clients = config.clients();
  if (clients.partition() != v1::ClientsConfig::PARTITION_NATURAL) {
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
  if (const std::int64_t k = config.eval().train_rows();
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
  constexpr std::int64_t kMaxRowsToReorder = std::int64_t{1} << 21;
  if (!keep_row_order && exp.data.train.size() <= kMaxRowsToReorder) {
    MakeClientRowsContiguous(exp.data);
  }
  return std::move(exp.data);
}

// Bump when what BuildExperiment makes of the same files and config
// changes (a loader, the partition, the sample, the reordering): a row
// cache written by an older fedsim is then never mapped by a newer one.
constexpr int kDataPipelineVersion = 1;

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
  const std::string path = data_dir.empty() ? d.path() : data_dir;
  if (!path.empty() && std::filesystem::is_directory(path, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
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

std::string RowCachePath(const std::string& dir, const std::string& key) {
  return (std::filesystem::path(dir) / absl::StrCat(key, ".rows")).string();
}

}  // namespace

absl::Status ShareRowsThroughCache(Experiment& e, const v1::ExperimentConfig& config,
                                   const std::string& data_dir, const std::string& cache_dir,
                                   bool durable) {
  if (config.data().source() == v1::DataConfig::SOURCE_LSA) return absl::OkStatus();
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
  if (row_cache_dir.empty()) {
    FEDSIM_ASSIGN_OR_RETURN(exp.data, PrepareData(config, data_dir, keep_row_order));
  } else {
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
      FEDSIM_ASSIGN_OR_RETURN(exp.data, PrepareData(config, data_dir, false));
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

}  // namespace fedsim
