// Small numeric helpers for the CLI: softmax, top-k, latency percentiles.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace vslim {

std::vector<float> Softmax(const float* logits, size_t n);

// Indices and values of the k largest entries, largest first (ties keep the lower index).
std::vector<std::pair<size_t, float>> TopK(const std::vector<float>& values, size_t k);

// The q-th percentile (0-100) with linear interpolation, as numpy.percentile.
double Percentile(std::vector<double> samples, double q);

}  // namespace vslim
