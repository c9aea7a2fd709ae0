// File: tests/testing/datasets.h
//
// GaussianRows(n, d, classes, rng): a Dataset of n rows whose d features
// are N(0, 1) draws (stored as float32) and whose label is a class drawn
// uniformly from [0, classes), or an N(0, 1) target when classes is 0;
// drawn row by row, features then label, from `rng`. Header-only.
#ifndef FEDSIM_TESTS_TESTING_DATASETS_H_
#define FEDSIM_TESTS_TESTING_DATASETS_H_

#include <cstdint>

#include "common/data/dataset.h"
#include "common/random/stream.h"

namespace fedsim::test {

inline Dataset GaussianRows(std::int64_t n, std::int64_t d, int classes, RngStream& rng) {
  Dataset data;
  data.features.resize(n, d);
  data.labels.resize(n);
  data.num_classes = classes;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) {
      data.features(i, j) = static_cast<float>(rng.Gaussian());
    }
    data.labels[i] = classes > 0
                         ? static_cast<double>(rng.UniformInt(static_cast<std::uint64_t>(classes)))
                         : rng.Gaussian();
  }
  return data;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_DATASETS_H_
