//===- host_cpp.cpp - Compile and run a variant from C++ with libattn -----===//
//
// JIT-compiles causal ALiBi attention from a string, runs it on this
// program's own buffers (random data, grouped-query heads, a sequence length
// that is no multiple of any tile) and checks O and LSE against a naive
// float64 implementation. Exits 0 when they match.
//
//   c++ -std=c++17 host_cpp.cpp -Iruntime/include -Lbuild/lib -lattn
//
//===----------------------------------------------------------------------===//

#include "attn/attn.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

static const char *kSource = R"(
attention alibi_causal {
  param slopes: f32[H];                       // one slope per query head
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask  = kv_idx <= q_idx;
}
)";

int main() {
  const int64_t B = 2, H = 4, Hkv = 2, L = 77, D = 32;
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto randomVector = [&](size_t n) {
    std::vector<float> v(n);
    for (float &x : v)
      x = normal(rng);
    return v;
  };
  std::vector<float> q = randomVector(B * H * L * D);
  std::vector<float> k = randomVector(B * Hkv * L * D);
  std::vector<float> v = randomVector(B * Hkv * L * D);
  std::vector<float> slopes(H);
  for (int64_t h = 0; h < H; ++h)
    slopes[h] = std::pow(2.0f, -8.0f * float(h + 1) / float(H));
  // Poisoned outputs: anything the kernel does not write stays NaN.
  std::vector<float> o(B * H * L * D, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> lse(B * H * L, std::numeric_limits<float>::quiet_NaN());

  try {
    attn::CompileOptions options;
    options.headDim = D; // specialise: the tiled, multi-threaded kernel
    options.valueDim = D;
    attn::Kernel kernel = attn::compile(kSource, options);
    std::printf("compiled '%s' (key %.16s...)\n",
                kernel.signature().name.c_str(), kernel.key().c_str());

    attn::RunArgs args;
    args.q = attn::Tensor::contiguous(q.data(), attn::DType::F32, {B, H, L, D});
    args.k =
        attn::Tensor::contiguous(k.data(), attn::DType::F32, {B, Hkv, L, D});
    args.v =
        attn::Tensor::contiguous(v.data(), attn::DType::F32, {B, Hkv, L, D});
    args.o = attn::Tensor::contiguous(o.data(), attn::DType::F32, {B, H, L, D});
    args.lse =
        attn::Tensor::contiguous(lse.data(), attn::DType::F32, {B, H, L});
    args.params["slopes"] =
        attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {H});
    kernel.run(args);
  } catch (const attn::Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }

  // The naive float64 reference: softmax over the unmasked keys.
  double maxErr = 0, maxLseErr = 0;
  const double scale = 1.0 / std::sqrt(double(D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      int64_t hkv = h / (H / Hkv);
      for (int64_t i = 0; i < L; ++i) {
        const float *qi = &q[((b * H + h) * L + i) * D];
        std::vector<double> s(i + 1);
        double m = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          const float *kj = &k[((b * Hkv + hkv) * L + j) * D];
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += double(qi[d]) * double(kj[d]);
          s[j] = scale * dot + double(slopes[h]) * double(j - i);
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          sum += std::exp(s[j] - m);
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j)
            acc += std::exp(s[j] - m) / sum *
                   double(v[((b * Hkv + hkv) * L + j) * D + d]);
          double got = o[((b * H + h) * L + i) * D + d];
          maxErr = std::isnan(got) ? INFINITY
                                   : std::max(maxErr, std::abs(got - acc));
        }
        double gotLse = lse[(b * H + h) * L + i];
        maxLseErr =
            std::isnan(gotLse)
                ? INFINITY
                : std::max(maxLseErr, std::abs(gotLse - (m + std::log(sum))));
      }
    }
  std::printf("max |O - ref| = %.3g, max |LSE - ref| = %.3g\n", maxErr,
              maxLseErr);
  if (!(maxErr < 1e-4 && maxLseErr < 1e-4)) {
    std::fprintf(stderr, "error: the kernel does not match the reference\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
