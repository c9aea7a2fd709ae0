#include "common/data/augment.h"

#include "common/base/check.h"

namespace fedsim {

void AugmentImage(const AugmentSpec& spec, const float* in, std::int64_t dy, std::int64_t dx,
                  bool flip, float* out) {
  const std::int64_t h = spec.image.height, w = spec.image.width, p = spec.crop_padding;
  for (std::int64_t c = 0; c < spec.image.channels; ++c) {
    const float pad = spec.pad_value.empty() ? 0.0f : spec.pad_value[static_cast<std::size_t>(c)];
    const float* plane = in + c * h * w;
    float* dst = out + c * h * w;
    for (std::int64_t y = 0; y < h; ++y) {
      // Output (y, x) is the padded image's (dy + y, dx + x'), x' the
      // column before the flip: the input's (dy + y - p, dx + x' - p).
      const std::int64_t sy = dy + y - p;
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t sx = dx + (flip ? w - 1 - x : x) - p;
        dst[y * w + x] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? plane[sy * w + sx] : pad;
      }
    }
  }
}

const Dataset& Augmenter::Apply(const Dataset& data, std::span<const std::int64_t> rows) {
  const std::int64_t d = data.dim();
  FEDSIM_CHECK(spec_.image.size() == d)
      << "augmenting rows of " << d << " values as images of " << spec_.image.size();
  const auto m = static_cast<Eigen::Index>(rows.size());
  out_.features.resize(m, d);
  out_.labels.resize(m);
  out_.num_classes = data.num_classes;
  const std::int64_t span = 2 * spec_.crop_padding + 1;
  for (Eigen::Index i = 0; i < m; ++i) {
    const std::int64_t r = rows[static_cast<std::size_t>(i)];
    std::int64_t dy = spec_.crop_padding, dx = spec_.crop_padding;
    if (spec_.crop_padding > 0) {
      dy = static_cast<std::int64_t>(rng_.UniformInt(static_cast<std::uint64_t>(span)));
      dx = static_cast<std::int64_t>(rng_.UniformInt(static_cast<std::uint64_t>(span)));
    }
    const bool flip = spec_.horizontal_flip && rng_.UniformInt(2) == 1;
    AugmentImage(spec_, data.row(r), dy, dx, flip, out_.features.row(i).data());
    out_.labels[i] = data.labels[r];
  }
  return out_;
}

std::span<const std::int64_t> Augmenter::Identity(std::int64_t n) {
  while (static_cast<std::int64_t>(identity_.size()) < n) {
    identity_.push_back(static_cast<std::int64_t>(identity_.size()));
  }
  return std::span<const std::int64_t>(identity_).subspan(0, static_cast<std::size_t>(n));
}

}  // namespace fedsim
