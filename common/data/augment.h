// File: common/data/augment.h
//
// The standard augmentation of image training rows (local.augment):
// torchvision's RandomCrop(size, padding) followed by
// RandomHorizontalFlip(), applied to C x H x W rows as local training
// reads them. Every example of every step draws from the task's own stream
// (seed, kAugment, client, round), in batch order: first the crop offset
// (row offset, then column offset, each uniform in [0, 2 padding]) when
// padding > 0, then the flip (one UniformInt(2), 1 = mirror) when flipping;
// so a run is reproducible and identical in every runtime.
#ifndef FEDSIM_COMMON_DATA_AUGMENT_H_
#define FEDSIM_COMMON_DATA_AUGMENT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/data/dataset.h"
#include "common/random/stream.h"

namespace fedsim {

struct AugmentSpec {
  ImageShape image;
  std::int64_t crop_padding = 0;
  bool horizontal_flip = false;
  // The value of padded pixels, one a channel: what a 0 pixel became when
  // the data were loaded (0, or -mean/std after normalisation), as
  // torchvision pads the raw image before ToTensor and Normalize.
  std::vector<float> pad_value;

  bool enabled() const { return crop_padding > 0 || horizontal_flip; }
};

// Writes the augmented copy of one C x H x W image `in` to `out` with the
// crop offset (dy, dx) in [0, 2 padding] and the flip given.
void AugmentImage(const AugmentSpec& spec, const float* in, std::int64_t dy, std::int64_t dx,
                  bool flip, float* out);

// Augmented copies of rows of a data set, drawn from one stream.
class Augmenter {
 public:
  Augmenter(const AugmentSpec& spec, RngStream rng) : spec_(spec), rng_(std::move(rng)) {}

  // The rows `rows` of `data`, augmented, as rows 0 .. rows.size() - 1 of
  // the returned data set (valid until the next call), with their labels.
  const Dataset& Apply(const Dataset& data, std::span<const std::int64_t> rows);
  // 0, 1, ..., n - 1: the rows of Apply's result.
  std::span<const std::int64_t> Identity(std::int64_t n);

 private:
  const AugmentSpec& spec_;
  RngStream rng_;
  Dataset out_;
  std::vector<std::int64_t> identity_;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_AUGMENT_H_
