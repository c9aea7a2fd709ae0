#include "algorithms/strategy_options.h"

namespace fedsim {

LocalTrainingSpec LocalSpec(const v1::ExperimentConfig& config) {
  LocalTrainingSpec local;
  local.epochs = config.local().epochs();
  local.batch_size = config.local().batch_size();
  local.lr = config.local().lr();
  local.max_steps = config.local().max_steps();
  local.prox_mu = config.algorithm().prox_mu();
  local.momentum = config.local().momentum();
  local.fresh_batches = config.local().fresh_batches();
  local.grad_clip_norm = config.local().grad_clip_norm();
  return local;
}

RobustOptions RobustOf(const v1::ExperimentConfig& config) {
  const v1::AggregationConfig& a = config.aggregation();
  RobustOptions o;
  switch (a.rule()) {
    case v1::AggregationConfig::RULE_COORDINATE_MEDIAN:
      o.rule = RobustRule::kCoordinateMedian;
      break;
    case v1::AggregationConfig::RULE_TRIMMED_MEAN:
      o.rule = RobustRule::kTrimmedMean;
      break;
    case v1::AggregationConfig::RULE_KRUM:
      o.rule = RobustRule::kKrum;
      break;
    case v1::AggregationConfig::RULE_MULTI_KRUM:
      o.rule = RobustRule::kMultiKrum;
      break;
    case v1::AggregationConfig::RULE_BULYAN:
      o.rule = RobustRule::kBulyan;
      break;
    default:
      o.rule = RobustRule::kMean;
  }
  o.trim_fraction = a.trim_fraction();
  o.byzantine = a.byzantine();
  o.multi_krum_m = a.multi_krum_m();
  return o;
}

ServerOptimizerOptions ServerOptimizerOf(const v1::ExperimentConfig& config) {
  const v1::ServerOptimizerConfig& opt = config.algorithm().server_optimizer();
  ServerOptimizerOptions server_optimizer;
  switch (opt.kind()) {
    case v1::ServerOptimizerConfig::KIND_MOMENTUM:
      server_optimizer.kind = ServerOptimizerKind::kMomentum;
      break;
    case v1::ServerOptimizerConfig::KIND_ADAM:
      server_optimizer.kind = ServerOptimizerKind::kAdam;
      break;
    case v1::ServerOptimizerConfig::KIND_YOGI:
      server_optimizer.kind = ServerOptimizerKind::kYogi;
      break;
    case v1::ServerOptimizerConfig::KIND_ADAGRAD:
      server_optimizer.kind = ServerOptimizerKind::kAdagrad;
      break;
    default:
      server_optimizer.kind = ServerOptimizerKind::kSgd;
  }
  server_optimizer.lr = config.algorithm().server_lr();
  server_optimizer.momentum = opt.momentum();
  server_optimizer.beta1 = opt.beta1();
  server_optimizer.beta2 = opt.beta2();
  server_optimizer.tau = opt.tau();
  return server_optimizer;
}

StragglerOptions StragglersOf(const v1::ExperimentConfig& config) {
  StragglerOptions stragglers;
  stragglers.fraction = config.clients().straggler_fraction();
  stragglers.keep = config.algorithm().keep_stragglers();
  stragglers.seed = config.seed();
  return stragglers;
}

}  // namespace fedsim
