#include "common/dp/privacy_ledger.h"

#include <algorithm>
#include <utility>

#include "common/base/check.h"

namespace fedsim {

PrivacyLedger::PrivacyLedger(PrivacyLedgerOptions options)
    : options_(std::move(options)),
      steps_(options_.sampling_rates.size(), 0) {
  FEDSIM_CHECK(options_.steps_per_task.size() == options_.sampling_rates.size());
  FEDSIM_CHECK(options_.delta > 0.0 && options_.delta < 1.0);
  FEDSIM_CHECK(options_.noise_multiplier >= 0.0);
}

const std::vector<double>& PrivacyLedger::Curve(double q) const {
  auto [it, inserted] = curves_.try_emplace(q);
  if (inserted) {
    it->second = PoissonGaussianRdp(q, options_.noise_multiplier, options_.orders);
  }
  return it->second;
}

void PrivacyLedger::Charge(std::int64_t client, std::int64_t steps) {
  FEDSIM_CHECK(client >= 0 && client < num_clients() && steps >= 0);
  steps_[client] += steps;
}

double PrivacyLedger::Epsilon(std::int64_t client, std::int64_t extra_tasks) const {
  FEDSIM_CHECK(client >= 0 && client < num_clients());
  const std::int64_t steps =
      steps_[client] + extra_tasks * options_.steps_per_task[client];
  if (steps == 0) return 0.0;
  RdpAccountant accountant(options_.orders);
  accountant.ComposeCurve(Curve(options_.sampling_rates[client]), steps);
  return accountant.Spent(options_.delta, options_.conversion).epsilon;
}

std::vector<double> PrivacyLedger::Epsilons() const {
  std::vector<double> out(steps_.size());
  for (std::int64_t k = 0; k < num_clients(); ++k) out[k] = Epsilon(k);
  return out;
}

PrivacyLedger::Summary PrivacyLedger::Summarize() const {
  Summary s;
  if (steps_.empty()) return s;
  double sum = 0.0;
  for (std::int64_t k = 0; k < num_clients(); ++k) {
    const double eps = Epsilon(k);
    s.max = std::max(s.max, eps);
    sum += eps;
  }
  s.mean = sum / static_cast<double>(steps_.size());
  return s;
}

double PrivacyLedger::MaxEpsilonAfterOneMoreTask() const {
  double worst = 0.0;
  for (std::int64_t k = 0; k < num_clients(); ++k) {
    worst = std::max(worst, Epsilon(k, 1));
  }
  return worst;
}

}  // namespace fedsim
