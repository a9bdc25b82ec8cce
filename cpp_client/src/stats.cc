#include "vslim/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vslim {

std::vector<float> Softmax(const float* logits, size_t n) {
  std::vector<float> out(n);
  if (n == 0) return out;
  const float top = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    out[i] = std::exp(logits[i] - top);
    sum += static_cast<double>(out[i]);
  }
  for (float& v : out) v = static_cast<float>(static_cast<double>(v) / sum);
  return out;
}

std::vector<std::pair<size_t, float>> TopK(const std::vector<float>& values, size_t k) {
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, values.size());
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] > values[b]; });
  std::vector<std::pair<size_t, float>> top;
  for (size_t i = 0; i < k; ++i) top.emplace_back(order[i], values[order[i]]);
  return top;
}

double Percentile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0.0;
  std::sort(samples.begin(), samples.end());
  const double rank = q / 100.0 * static_cast<double>(samples.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, samples.size() - 1);
  return samples[lo] + (samples[hi] - samples[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace vslim
