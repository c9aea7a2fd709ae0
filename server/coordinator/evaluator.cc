#include "server/coordinator/evaluator.h"

#include <optional>
#include <vector>

namespace fedsim {

Evaluation EvaluateModel(const Objective& objective, const Dataset& data,
                         const FlatVector& params, int num_threads) {
  Evaluation out;
  const std::int64_t n = data.size();
  if (n == 0) return out;
  const std::int64_t chunks = (n + kEvalChunk - 1) / kEvalChunk;
  std::vector<double> loss(chunks, 0.0);
  std::vector<std::int64_t> correct(chunks, 0);
  // Objective::Evaluate adds (l2/2)||w||^2 to every batch's mean loss; the
  // example-weighted mean over chunks therefore carries it exactly once.
#pragma omp parallel num_threads(num_threads) if (num_threads > 1)
  {
    // One batch per thread, reused: a chunk's float64 rows (kEvalChunk x d,
    // 6.4 MB for Fashion-MNIST) allocated afresh for every chunk cost an
    // mmap, page faults and zeroing each time, a quarter of an evaluating
    // quickstart round.
    Batch batch;
#pragma omp for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t begin = c * kEvalChunk;
      const std::int64_t end = std::min(n, begin + kEvalChunk);
      // The rows in place where the objective can (no float64 copy).
      if (std::optional<double> mean =
              objective.EvaluateRowsWithCorrect(params, data, begin, end, correct[c])) {
        loss[c] = *mean * static_cast<double>(end - begin);
        if (!objective.IsClassifier()) correct[c] = 0;
        continue;
      }
      GatherRange(data, begin, end, batch);
      // One forward pass for the loss and the accuracy (bit for bit the
      // values of Evaluate and NumCorrect).
      loss[c] = objective.EvaluateWithCorrect(params, batch, correct[c]) *
                static_cast<double>(end - begin);
      if (!objective.IsClassifier()) correct[c] = 0;
    }
  }
  double loss_sum = 0.0;
  std::int64_t correct_sum = 0;
  for (std::int64_t c = 0; c < chunks; ++c) {
    loss_sum += loss[c];
    correct_sum += correct[c];
  }
  out.loss = loss_sum / static_cast<double>(n);
  if (objective.IsClassifier()) {
    out.accuracy = static_cast<double>(correct_sum) / static_cast<double>(n);
  }
  return out;
}

}  // namespace fedsim
