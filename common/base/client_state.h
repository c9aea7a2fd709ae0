// File: common/base/client_state.h
//
// State a virtual client keeps between the rounds it takes part in, on the
// client side, never sent over the network: SCAFFLSA's control variate and
// last local iterate, DiceSGD's error buffer, SCAFFOLD's c_i. Vectors are
// named by the algorithm that owns them ("scafflsa.xi", ...).
//
// In the embedded runtime the runtime owns one ClientState per client; in
// the distributed runtime the worker process that hosts the client owns it,
// and the coordinator pins such clients to one worker (see
// server/coordinator/coordinator.h).
#ifndef FEDSIM_COMMON_BASE_CLIENT_STATE_H_
#define FEDSIM_COMMON_BASE_CLIENT_STATE_H_

#include <map>
#include <string>

#include "common/base/types.h"

namespace fedsim {

struct ClientState {
  // Ordered by name, so a serialised state is canonical.
  std::map<std::string, FlatVector> vectors;

  // The vector `name`, created as `size` zeros on first use.
  FlatVector& Vector(const std::string& name, Eigen::Index size) {
    auto [it, inserted] = vectors.try_emplace(name);
    if (inserted) it->second = FlatVector::Zero(size);
    return it->second;
  }
  bool Has(const std::string& name) const { return vectors.count(name) > 0; }
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_CLIENT_STATE_H_
