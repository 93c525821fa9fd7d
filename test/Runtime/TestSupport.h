//===- TestSupport.h - Shared pieces of the runtime tests -----------------===//
//
// Scratch cache folders, random problems with NaN-poisoned outputs, and
// naive float64 references for softmax variants given as score and mask
// functions: the forward, and the backward of a score s + bias(h, i, j) *
// w[h] (its gradients of Q, K, V and w).
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_TEST_RUNTIME_TESTSUPPORT_H
#define ATTN_TEST_RUNTIME_TESTSUPPORT_H

#include "attn/attn.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace attn_test {

/// A fresh folder under $TMPDIR, removed by the destructor.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char *tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/attn-rt.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path = ::mkdtemp(buf.data());
  }
  ~ScratchDir() {
    std::string cmd = "rm -rf '" + path + "'";
    (void)std::system(cmd.c_str());
  }
};

inline attn::CacheConfig diskCacheAt(const std::string &dir,
                                     uint64_t maxBytes = uint64_t(1) << 30) {
  attn::CacheConfig c;
  c.diskCache = true;
  c.dir = dir;
  c.maxBytes = maxBytes;
  return c;
}

inline attn::CacheConfig memoryOnly() {
  attn::CacheConfig c;
  c.diskCache = false;
  return c;
}

/// The run's input seed: $ATTN_TEST_SEED, else fresh from the system, so
/// every run checks new inputs. Printed once so that a failure can be
/// repeated with ATTN_TEST_SEED=N.
inline unsigned baseSeed() {
  static const unsigned seed = [] {
    const char *env = std::getenv("ATTN_TEST_SEED");
    unsigned s = env ? static_cast<unsigned>(std::strtoul(env, nullptr, 10))
                     : std::random_device{}();
    std::fprintf(stderr, "input seed %u (ATTN_TEST_SEED=%u repeats it)\n", s,
                 s);
    return s;
  }();
  return seed;
}

/// One problem: random Q, K, V, poisoned O and LSE, float32. `salt` makes
/// problems of one run differ from each other.
struct Problem {
  int64_t B, H, Hkv, Lq, Lkv, D, Dv;
  std::vector<float> q, k, v, o, lse;

  Problem(int64_t B, int64_t H, int64_t Hkv, int64_t Lq, int64_t Lkv, int64_t D,
          int64_t Dv, unsigned salt = 1)
      : B(B), H(H), Hkv(Hkv), Lq(Lq), Lkv(Lkv), D(D), Dv(Dv) {
    std::mt19937 rng(baseSeed() ^ (salt * 0x9e3779b9u));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](std::vector<float> &x, size_t n) {
      x.resize(n);
      for (float &e : x)
        e = normal(rng);
    };
    fill(q, B * H * Lq * D);
    fill(k, B * Hkv * Lkv * D);
    fill(v, B * Hkv * Lkv * Dv);
    poison();
  }

  void poison() {
    o.assign(B * H * Lq * Dv, std::numeric_limits<float>::quiet_NaN());
    lse.assign(B * H * Lq, std::numeric_limits<float>::quiet_NaN());
  }

  attn::RunArgs args(bool withLse = true) {
    attn::RunArgs a;
    a.q = attn::Tensor::contiguous(q.data(), attn::DType::F32, {B, H, Lq, D});
    a.k =
        attn::Tensor::contiguous(k.data(), attn::DType::F32, {B, Hkv, Lkv, D});
    a.v =
        attn::Tensor::contiguous(v.data(), attn::DType::F32, {B, Hkv, Lkv, Dv});
    a.o = attn::Tensor::contiguous(o.data(), attn::DType::F32, {B, H, Lq, Dv});
    if (withLse)
      a.lse =
          attn::Tensor::contiguous(lse.data(), attn::DType::F32, {B, H, Lq});
    return a;
  }

  /// max |O - ref| and |LSE - ref| (infinite on NaN, or on a row the
  /// reference leaves empty unless O = 0 and LSE = -inf there).
  /// score(s, b, h, i, j) and mask(b, h, i, j) in float64.
  double maxError(
      const std::function<double(double, int64_t, int64_t, int64_t, int64_t)>
          &score,
      const std::function<bool(int64_t, int64_t, int64_t, int64_t)> &mask,
      bool checkLse = true) const {
    double worst = 0;
    auto note = [&](double got, double want) {
      double e = std::isnan(got) ? INFINITY : std::abs(got - want);
      if (std::isinf(want) && got == want)
        e = 0;
      worst = std::max(worst, e);
    };
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        int64_t hkv = h / (H / Hkv);
        for (int64_t i = 0; i < Lq; ++i) {
          std::vector<double> s(Lkv);
          std::vector<bool> keep(Lkv);
          double m = -INFINITY;
          for (int64_t j = 0; j < Lkv; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += double(q[((b * H + h) * Lq + i) * D + d]) *
                     double(k[((b * Hkv + hkv) * Lkv + j) * D + d]);
            s[j] = score(scale * dot, b, h, i, j);
            keep[j] = mask(b, h, i, j);
            if (keep[j])
              m = std::max(m, s[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < Lkv; ++j)
            if (keep[j])
              sum += std::exp(s[j] - m);
          for (int64_t d = 0; d < Dv; ++d) {
            double acc = 0;
            for (int64_t j = 0; j < Lkv; ++j)
              if (keep[j])
                acc += std::exp(s[j] - m) / sum *
                       double(v[((b * Hkv + hkv) * Lkv + j) * Dv + d]);
            note(o[((b * H + h) * Lq + i) * Dv + d], sum > 0 ? acc : 0.0);
          }
          if (checkLse)
            note(lse[(b * H + h) * Lq + i],
                 sum > 0 ? m + std::log(sum) : -INFINITY);
        }
      }
    return worst;
  }
};

/// The float64 gradients of softmax attention whose score is
/// s + w[h] * bias(h, i, j) under `mask`, for a loss with dL/dO = dO:
/// dq, dk, dv in the layouts of Q, K, V, and dw[H]. Written from the
/// definition: P = softmax(t), D_i = dO_i . O_i, dT = P (dO V^T - D),
/// dQ = scale dT K, dK = scale dT^T Q, dV = P^T dO, dw[h] = sum dT bias.
struct BackwardReference {
  std::vector<double> dq, dk, dv, dw;

  BackwardReference(
      const Problem &p, const std::vector<float> &dO,
      const std::vector<float> &w,
      const std::function<double(int64_t, int64_t, int64_t)> &bias,
      const std::function<bool(int64_t, int64_t, int64_t, int64_t)> &mask) {
    const int64_t B = p.B, H = p.H, Hkv = p.Hkv, Lq = p.Lq, Lkv = p.Lkv,
                  D = p.D, Dv = p.Dv;
    dq.assign(B * H * Lq * D, 0);
    dk.assign(B * Hkv * Lkv * D, 0);
    dv.assign(B * Hkv * Lkv * Dv, 0);
    dw.assign(H, 0);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        int64_t hkv = h / (H / Hkv);
        for (int64_t i = 0; i < Lq; ++i) {
          const float *qi = &p.q[((b * H + h) * Lq + i) * D];
          const float *doi = &dO[((b * H + h) * Lq + i) * Dv];
          std::vector<double> t(Lkv), P(Lkv, 0.0);
          std::vector<bool> keep(Lkv);
          double m = -INFINITY;
          for (int64_t j = 0; j < Lkv; ++j) {
            const float *kj = &p.k[((b * Hkv + hkv) * Lkv + j) * D];
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += double(qi[d]) * double(kj[d]);
            t[j] = scale * dot + double(w[h]) * bias(h, i, j);
            keep[j] = mask(b, h, i, j);
            if (keep[j])
              m = std::max(m, t[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < Lkv; ++j)
            if (keep[j])
              sum += std::exp(t[j] - m);
          if (sum == 0)
            continue; // an empty row: zero gradients
          std::vector<double> o(Dv, 0.0);
          for (int64_t j = 0; j < Lkv; ++j) {
            if (!keep[j])
              continue;
            P[j] = std::exp(t[j] - m) / sum;
            for (int64_t c = 0; c < Dv; ++c)
              o[c] += P[j] * double(p.v[((b * Hkv + hkv) * Lkv + j) * Dv + c]);
          }
          double Di = 0;
          for (int64_t c = 0; c < Dv; ++c)
            Di += double(doi[c]) * o[c];
          for (int64_t j = 0; j < Lkv; ++j) {
            if (!keep[j])
              continue;
            const float *kj = &p.k[((b * Hkv + hkv) * Lkv + j) * D];
            const float *vj = &p.v[((b * Hkv + hkv) * Lkv + j) * Dv];
            double dP = 0;
            for (int64_t c = 0; c < Dv; ++c)
              dP += double(doi[c]) * double(vj[c]);
            double dT = P[j] * (dP - Di);
            dw[h] += dT * bias(h, i, j);
            for (int64_t d = 0; d < D; ++d) {
              dq[((b * H + h) * Lq + i) * D + d] += scale * dT * double(kj[d]);
              dk[((b * Hkv + hkv) * Lkv + j) * D + d] +=
                  scale * dT * double(qi[d]);
            }
            for (int64_t c = 0; c < Dv; ++c)
              dv[((b * Hkv + hkv) * Lkv + j) * Dv + c] += P[j] * double(doi[c]);
          }
        }
      }
  }

  /// ||got - want|| / ||want||.
  static double relError(const std::vector<float> &got,
                         const std::vector<double> &want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      double d = double(got[i]) - want[i];
      num += std::isnan(got[i]) ? INFINITY : d * d;
      den += want[i] * want[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
  }
};

} // namespace attn_test

#endif // ATTN_TEST_RUNTIME_TESTSUPPORT_H
