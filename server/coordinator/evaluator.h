// File: server/coordinator/evaluator.h
//
// Evaluates a global model on the training and test sets: mean loss and
// accuracy. Rows are processed in chunks of kEvalChunk; chunk results are
// summed in chunk order, so the numbers do not depend on the thread count.
// A chunk is read where it is stored (float32) when the objective has such
// a path (Objective::EvaluateRowsWithCorrect: every built-in objective);
// otherwise its rows are copied to float64 into one buffer per thread.
#ifndef FEDSIM_SERVER_COORDINATOR_EVALUATOR_H_
#define FEDSIM_SERVER_COORDINATOR_EVALUATOR_H_

#include <cstdint>

#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/objectives/objective.h"

namespace fedsim {

inline constexpr std::int64_t kEvalChunk = 1024;

struct Evaluation {
  double loss = NAN;
  double accuracy = NAN;  // NaN for regression objectives
};

// Mean loss (without the L2 term's double counting: the L2 term is added
// once, as in Objective::Evaluate) and accuracy of `params` over all rows of
// `data`, on up to `num_threads` threads. An empty data set gives NaNs.
Evaluation EvaluateModel(const Objective& objective, const Dataset& data,
                         const FlatVector& params, int num_threads);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_EVALUATOR_H_
