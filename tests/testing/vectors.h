// File: tests/testing/vectors.h
//
// Vec({a, b, ...}): a FlatVector (Eigen::VectorXd) written inline in a test.
//
// Why not Eigen::Vector2d(a, b): a fixed-size temporary assigned to, compared
// with or subtracted from a dynamic vector makes GCC 12 at -O2 with AVX
// (-march=x86-64-v3) warn -Warray-bounds about a 32-byte packet load from a
// 16-byte object on a path Eigen never takes; the warning is an error here,
// and whether it fires depends on inlining, hence on how the unity build
// batches files. Dynamic vectors on both sides have no such path.
// Header-only.
#ifndef FEDSIM_TESTS_TESTING_VECTORS_H_
#define FEDSIM_TESTS_TESTING_VECTORS_H_

#include <cstddef>
#include <initializer_list>

#include "common/base/types.h"

namespace fedsim::test {

inline FlatVector Vec(std::initializer_list<double> values) {
  FlatVector v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (double x : values) v[i++] = x;
  return v;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_VECTORS_H_
