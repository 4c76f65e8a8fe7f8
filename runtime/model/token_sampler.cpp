// Distributed next-token selection over vocabulary shards (contract in token_sampler.h).
#include "runtime/model/token_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/core/error.h"
#include "runtime/core/hash.h"

namespace tandem {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The nucleus search starts this far below the row maximum: tokens further down carry a
// relative mass below e^-80 and cannot change a top_p < 1 threshold.
constexpr float kNucleusRange = 80.0f;
constexpr int kBisectSteps = 40;

bool samples(const SamplingParams& p) { return p.temperature >= kMinSamplingTemperature; }

}  // namespace

TokenSampler::TokenSampler(Backend& be, Communicator& tp, int64_t vocab_begin,
                           int64_t local_vocab, int64_t vocab)
    : be_(be), tp_(tp), begin_(vocab_begin), local_(local_vocab) {
  valid_ = std::clamp<int64_t>(vocab - vocab_begin, 0, local_vocab);
}

float TokenSampler::gumbel(uint64_t seed, int64_t step, int64_t id) {
  uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(step) * 0x100000001B3ull ^
                                            splitmix64(static_cast<uint64_t>(id))));
  // 53 random bits -> u in (0, 1)
  const double u = (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  return static_cast<float>(-std::log(-std::log(u)));
}

void TokenSampler::all_reduce(std::vector<float>& v, ReduceOp op) {
  if (tp_.size() == 1 || v.empty()) return;
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor host = Tensor::wrap(v.data(), DeviceKind::CPU, {n}, DType::F32);
  if (be_.kind() == DeviceKind::CPU) {
    tp_.all_reduce(host, op);
    return;
  }
  Tensor dev = be_.empty({n});
  be_.copy(dev, host);
  tp_.all_reduce(dev, op);
  be_.copy(host, dev);
}

std::vector<float> TokenSampler::all_gather(const std::vector<float>& v) {
  if (tp_.size() == 1) return v;
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<float> out(static_cast<size_t>(n * tp_.size()));
  Tensor in = Tensor::wrap(const_cast<float*>(v.data()), DeviceKind::CPU, {n}, DType::F32);
  Tensor all = Tensor::wrap(out.data(), DeviceKind::CPU, {n * tp_.size()}, DType::F32);
  if (be_.kind() == DeviceKind::CPU) {
    tp_.all_gather(all, in);
    return out;
  }
  Tensor din = be_.empty({n}), dall = be_.empty({n * tp_.size()});
  be_.copy(din, in);
  tp_.all_gather(dall, din);
  be_.copy(all, dall);
  return out;
}

std::vector<int32_t> TokenSampler::sample(const Tensor& logits,
                                          const std::vector<SamplingParams>& rows) {
  const int64_t R = static_cast<int64_t>(rows.size());
  check_shape(logits, {R, local_}, "sampler logits");
  std::vector<int32_t> out(static_cast<size_t>(R), 0);
  if (R == 0) return out;
  Tensor host = logits;
  if (!logits.is_cpu()) {
    host = be_.host_empty({R, local_});
    be_.copy(host, logits);
  }
  const float* L = host.f32();
  // Greedy rows read the logits in place; sampled rows get z = logits / temperature.
  int64_t nsampled = 0;
  for (const SamplingParams& p : rows) nsampled += samples(p);
  std::vector<float> z(static_cast<size_t>(nsampled * valid_));
  std::vector<const float*> rowp(static_cast<size_t>(R));
  for (int64_t r = 0, k = 0; r < R; ++r) {
    if (!samples(rows[r])) {
      rowp[r] = L + r * local_;
      continue;
    }
    float* dst = z.data() + (k++) * valid_;
    const float inv = 1.0f / rows[r].temperature;
    for (int64_t j = 0; j < valid_; ++j) dst[j] = L[r * local_ + j] * inv;
    rowp[r] = dst;
  }
  auto row = [&](int64_t r) { return rowp[r]; };

  // Top-k threshold: the k-th largest of the union of every rank's local k largest.
  std::vector<float> thresh(static_cast<size_t>(R), kNegInf);
  int64_t kmax = 0;
  for (const SamplingParams& p : rows)
    if (samples(p) && p.top_k > 0) kmax = std::max<int64_t>(kmax, p.top_k);
  if (kmax > 0) {
    std::vector<float> local(static_cast<size_t>(R * kmax), kNegInf);
    std::vector<float> tmp;
    for (int64_t r = 0; r < R; ++r) {
      if (!samples(rows[r]) || rows[r].top_k <= 0) continue;
      const int64_t k = std::min<int64_t>(rows[r].top_k, valid_);
      tmp.assign(row(r), row(r) + valid_);
      std::partial_sort(tmp.begin(), tmp.begin() + k, tmp.end(), std::greater<float>());
      std::copy_n(tmp.begin(), k, local.begin() + r * kmax);
    }
    const std::vector<float> all = all_gather(local);
    for (int64_t r = 0; r < R; ++r) {
      if (!samples(rows[r]) || rows[r].top_k <= 0) continue;
      tmp.clear();
      for (int g = 0; g < tp_.size(); ++g)
        tmp.insert(tmp.end(), all.begin() + (g * R + r) * kmax, all.begin() + (g * R + r + 1) * kmax);
      const int64_t k = std::min<int64_t>(rows[r].top_k, static_cast<int64_t>(tmp.size()));
      std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
      thresh[r] = tmp[k - 1];
    }
  }

  // Nucleus threshold by bisection: the largest tau with mass(z >= tau) >= top_p.
  bool any_p = false;
  for (const SamplingParams& p : rows) any_p |= samples(p) && p.top_p < 1.0f;
  if (any_p) {
    std::vector<float> m(static_cast<size_t>(R), kNegInf);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < valid_; ++j) m[r] = std::max(m[r], row(r)[j]);
    all_reduce(m, ReduceOp::Max);
    // Each row's candidates (within range and above the top-k cut) sorted descending, with
    // prefix sums of exp(z - max): a probe is then a binary search.
    std::vector<std::vector<float>> cand(static_cast<size_t>(R)), prefix(static_cast<size_t>(R));
    std::vector<float> lo(static_cast<size_t>(R)), hi(static_cast<size_t>(R)), total(R, 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      if (!samples(rows[r]) || rows[r].top_p >= 1.0f) continue;
      lo[r] = std::max(thresh[r], m[r] - kNucleusRange);
      hi[r] = m[r];
      for (int64_t j = 0; j < valid_; ++j)
        if (row(r)[j] >= lo[r]) cand[r].push_back(row(r)[j]);
      std::sort(cand[r].begin(), cand[r].end(), std::greater<float>());
      double acc = 0.0;
      for (float v : cand[r]) {
        acc += std::exp(static_cast<double>(v - m[r]));
        prefix[r].push_back(static_cast<float>(acc));
      }
      total[r] = prefix[r].empty() ? 0.0f : prefix[r].back();
    }
    all_reduce(total, ReduceOp::Sum);
    auto mass_at_least = [&](int64_t r, float tau) {
      const auto& c = cand[r];
      const size_t n = std::upper_bound(c.begin(), c.end(), tau, std::greater<float>()) - c.begin();
      // upper_bound with greater<> finds the first element < tau: n elements are >= tau
      return n == 0 ? 0.0f : prefix[r][n - 1];
    };
    std::vector<float> probe(static_cast<size_t>(R));
    for (int it = 0; it < kBisectSteps; ++it) {
      for (int64_t r = 0; r < R; ++r) probe[r] = mass_at_least(r, 0.5f * (lo[r] + hi[r]));
      all_reduce(probe, ReduceOp::Sum);
      for (int64_t r = 0; r < R; ++r) {
        if (!samples(rows[r]) || rows[r].top_p >= 1.0f) continue;
        const float mid = 0.5f * (lo[r] + hi[r]);
        if (probe[r] >= rows[r].top_p * total[r]) lo[r] = mid;
        else hi[r] = mid;
      }
    }
    for (int64_t r = 0; r < R; ++r)
      if (samples(rows[r]) && rows[r].top_p < 1.0f) thresh[r] = std::max(thresh[r], lo[r]);
  }

  // Argmax of the (perturbed) scores, then the lowest id holding the global best.
  std::vector<float> best(static_cast<size_t>(R), kNegInf), id(static_cast<size_t>(R), kNegInf);
  std::vector<int64_t> best_j(static_cast<size_t>(R), -1);
  for (int64_t r = 0; r < R; ++r) {
    const SamplingParams& p = rows[r];
    for (int64_t j = 0; j < valid_; ++j) {
      const float v = row(r)[j];
      if (v < thresh[r]) continue;
      const float s = samples(p) ? v + gumbel(p.seed, p.step, begin_ + j) : v;
      if (s > best[r]) {
        best[r] = s;
        best_j[r] = j;
      }
    }
  }
  std::vector<float> gbest = best;
  all_reduce(gbest, ReduceOp::Max);
  for (int64_t r = 0; r < R; ++r)
    if (best_j[r] >= 0 && best[r] == gbest[r]) id[r] = -static_cast<float>(begin_ + best_j[r]);
  all_reduce(id, ReduceOp::Max);
  for (int64_t r = 0; r < R; ++r) {
    TANDEM_CHECK(std::isfinite(id[r]), "sampler: row {} has no candidate token (best score {})", r,
                 gbest[r]);
    out[r] = static_cast<int32_t>(-id[r]);
  }
  return out;
}

}  // namespace tandem
