//===- attn-bench.cpp - Benchmarking attention variants on the CPU --------===//
//
// Compiles each variant of a file for the given shape, warms up, times the
// tiled kernel over repeats and reports the median, GFLOP/s over unmasked
// score entries only (2 (D + Dv) flops each), the share of tiles skipped,
// the extra peak memory, and ratios against baselines measured in the same
// run: the reference loop lowering and a materialised Q K^T -> softmax -> P V
// on OpenBLAS. It also measures the machine's single-precision FMA peak with
// a register-only loop, so results read as a fraction of the ceiling. With
// --backward it also times the tiled backward kernel (dQ, dK, dV and every
// f32 param's gradient, from the forward's LSE) against the forward of the
// same run and a materialised backward on OpenBLAS.
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Frontend/Sema.h"
#include "attnc/Frontend/VariantSelection.h"
#include "attnc/Support/Npy.h"
#include "attnc/Target/CpuKernel.h"
#include "attnc/Target/ThreadPool.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <immintrin.h>
#include <random>
#include <sstream>

extern "C" {
#include <cblas.h>
void openblas_set_num_threads(int);
}

using namespace attnc;

namespace {

const char *kUsage = R"(attn-bench - time attention variants on the CPU

USAGE
  attn-bench FILE.attn [--variant NAME]... [--B 1] [--H 8] [--Hkv H]
             [--L 4096 | --Lq N --Lkv N] [--D 64] [--Dv D] [--dtype f32|f16]
             [--param NAME=VALUE | NAME=FILE.npy | NAME=docs:N | NAME=alibi]...
             [--warmup 1] [--repeat 5] [--threads N] [--tile-q 128] [--tile-kv 64]
             [--baselines ref,blas | none] [--backward] [--json OUT.json]

  Every variant of FILE (or each --variant) is compiled for the shape and
  timed. Generated params: docs:N is an i32[L] of N equal documents, alibi
  is f32[H] of ALiBi slopes. The reference baseline is single-threaded.
  --backward also times the backward pass (the tiled backward kernel with
  64 x 64 tiles, dQ, dK, dV and every f32 param's gradient) and reports it
  against the forward time of the same run and a materialised backward on
  OpenBLAS (dense softmax: S, P, dP and dS as Lq x Lkv matrices).
)";

[[noreturn]] void fail(const std::string &msg) {
  llvm::errs() << "error: " << msg << "\n";
  std::exit(1);
}

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// Resident and peak resident memory of the process, in bytes.
std::pair<int64_t, int64_t> rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  int64_t cur = 0, peak = 0;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0)
      cur = std::stoll(line.substr(6)) * 1024;
    if (line.rfind("VmHWM:", 0) == 0)
      peak = std::stoll(line.substr(6)) * 1024;
  }
  return {cur, peak};
}

/// Resets the peak to the current RSS (Linux clear_refs 5).
void resetPeak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

__attribute__((target("avx512f"))) double fmaLoop512(int64_t iters) {
  __m512 acc[16];
  __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 16; ++i)
    acc[i] = _mm512_set1_ps(float(i));
  for (int64_t n = 0; n < iters; ++n)
    for (int i = 0; i < 16; ++i)
      acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  float sink = 0;
  for (int i = 0; i < 16; ++i)
    sink += _mm512_reduce_add_ps(acc[i]);
  return sink;
}

__attribute__((target("avx2,fma"))) double fmaLoop256(int64_t iters) {
  __m256 acc[12];
  __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 12; ++i)
    acc[i] = _mm256_set1_ps(float(i));
  for (int64_t n = 0; n < iters; ++n)
    for (int i = 0; i < 12; ++i)
      acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  float out[8], sink = 0;
  for (int i = 0; i < 12; ++i) {
    _mm256_storeu_ps(out, acc[i]);
    for (float f : out)
      sink += f;
  }
  return sink;
}

/// Single-precision FMA peak of `threads` threads, in GFLOP/s.
double measurePeak(int threads) {
  bool wide = __builtin_cpu_supports("avx512f");
  int64_t iters = 20'000'000;
  double flopsPerIter = wide ? 16 * 16 * 2 : 12 * 8 * 2;
  std::vector<double> runs;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> sink(threads);
    double t0 = now();
    parallelFor(threads, threads, [&](int64_t i, int) {
      sink[i] = wide ? fmaLoop512(iters) : fmaLoop256(iters);
    });
    double t = now() - t0;
    runs.push_back(threads * iters * flopsPerIter / t / 1e9);
  }
  return *std::max_element(runs.begin(), runs.end());
}

struct Shape {
  int64_t B = 1, H = 8, Hkv = -1, Lq = 4096, Lkv = 4096, D = 64, Dv = -1;
};

struct Options {
  std::string file;
  std::vector<std::string> variants;
  Shape shape;
  std::string dtype = "f32";
  std::vector<std::string> params;
  int warmup = 1, repeat = 5, threads = 0;
  int64_t tileQ = 128, tileKV = 64;
  bool ref = true, blas = true, backward = false;
  std::string json;
};

/// Parses and checks `source` and returns a module holding variant `name`,
/// after `edit` (which may rewrite the variant).
mlir::OwningOpRef<mlir::ModuleOp> frontEnd(mlir::MLIRContext &ctx,
                                           const std::string &path,
                                           const std::string &name) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    fail("cannot read '" + path + "': " + buffer.getError().message());
  llvm::SourceMgr sm;
  unsigned id = sm.AddNewSourceBuffer(std::move(*buffer), llvm::SMLoc());
  attnc::SourceDiagnosticHandler handler(sm, &ctx);
  auto variants = parseAndCheck(sm, id, &ctx);
  if (mlir::failed(variants))
    std::exit(1);
  auto module = genModule(ctx, *variants, mlir::UnknownLoc::get(&ctx));
  if (!name.empty() && !keepOnlyVariant(*module, name))
    fail("no attention block named '" + name + "' in " + path);
  return module;
}

std::unique_ptr<CpuKernel> compile(const Options &o, const std::string &name,
                                   bool reference, bool countOnly,
                                   bool backward = false) {
  mlir::MLIRContext ctx;
  auto module = frontEnd(ctx, o.file, name);
  if (countOnly) {
    // Entries kept by the mask: with Q = K = 0, no score and plain softmax,
    // every kept entry scores 0 and LSE = log(count).
    auto v = llvm::cast<mlir::attn::VariantOp>(
        mlir::SymbolTable::lookupSymbolIn(*module, name));
    if (auto s = v.getScoreOp())
      s.erase();
    if (auto n = v.getNormalizeOp())
      n.erase();
  }
  CpuCompileOptions copts;
  copts.elementType = o.dtype == "f16" ? DType::F16 : DType::F32;
  copts.reference = reference;
  copts.headDim = o.shape.D;
  copts.valueDim = o.shape.Dv;
  copts.tileQ = o.tileQ;
  copts.tileKV = o.tileKV;
  if (backward) {
    copts.backward = true;
    copts.tileQ = 64;
  }
  std::string err;
  auto kernel = CpuKernel::compile(*module, name, copts, err);
  if (!kernel)
    fail(err);
  return kernel;
}

struct Buffers {
  NpyArray q, k, v, o, lse;
  NpyArray dO, dq, dk, dv; // --backward
  std::map<std::string, NpyArray> params;
  std::map<std::string, ScalarValue> scalars;
};

NpyArray randomArray(DType dtype, std::vector<int64_t> shape,
                     std::mt19937 &rng) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.data.resize(a.numel() * dtypeSize(dtype));
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < a.numel(); ++i) {
    float x = dist(rng);
    if (dtype == DType::F32) {
      std::memcpy(&a.data[i * 4], &x, 4);
    } else {
      _Float16 h = static_cast<_Float16>(x);
      std::memcpy(&a.data[i * 2], &h, 2);
    }
  }
  return a;
}

RunArgs makeArgs(Buffers &buf, const KernelSignature &sig, int threads,
                 bool withLse) {
  RunArgs a;
  a.q = TensorView::contiguous(buf.q.data.data(), buf.q.dtype, buf.q.shape);
  a.k = TensorView::contiguous(buf.k.data.data(), buf.k.dtype, buf.k.shape);
  a.v = TensorView::contiguous(buf.v.data.data(), buf.v.dtype, buf.v.shape);
  a.o = TensorView::contiguous(buf.o.data.data(), buf.o.dtype, buf.o.shape);
  if (withLse)
    a.lse =
        TensorView::contiguous(buf.lse.data.data(), DType::F32, buf.lse.shape);
  for (const SignatureParam &p : sig.params) {
    if (p.isConst)
      continue;
    if (auto it = buf.params.find(p.name); it != buf.params.end())
      a.params[p.name] = TensorView::contiguous(
          it->second.data.data(), it->second.dtype, it->second.shape);
    else if (auto s = buf.scalars.find(p.name); s != buf.scalars.end())
      a.params[p.name] = s->second;
  }
  a.numThreads = threads;
  return a;
}

/// The backward run's arguments: the forward's inputs, O and LSE (rowStats)
/// of a forward run, dO, and a gradient of every f32 param.
BackwardRunArgs makeBackwardArgs(Buffers &buf, const KernelSignature &sig,
                                 int threads,
                                 std::map<std::string, NpyArray> &grads) {
  RunArgs f = makeArgs(buf, sig, threads, false);
  BackwardRunArgs a;
  a.q = f.q;
  a.k = f.k;
  a.v = f.v;
  a.o = f.o;
  a.params = f.params;
  a.numThreads = threads;
  auto view = [](NpyArray &x) {
    return TensorView::contiguous(x.data.data(), x.dtype, x.shape);
  };
  a.dO = view(buf.dO);
  a.dq = view(buf.dq);
  a.dk = view(buf.dk);
  a.dv = view(buf.dv);
  if (sig.normalization == "softmax" || sig.normalization == "linear")
    a.rowStats = view(buf.lse);
  for (const SignatureParam &p : sig.params) {
    if (p.isConst || p.type != ParamType::F32)
      continue;
    NpyArray &g = grads[p.name];
    g.dtype = DType::F32;
    g.shape = p.isTensor ? buf.params.at(p.name).shape : std::vector<int64_t>{};
    g.data.assign(g.numel() * 4, 0);
    a.paramGrads[p.name] = view(g);
  }
  return a;
}

/// The materialised backward on OpenBLAS, one (b, h) at a time with Lq x
/// Lkv buffers (float32, dense softmax, H == Hkv): S = scale Q K^T, P =
/// softmax(S), dV = P^T dO, dP = dO V^T, dS = P (dP - D), dQ = scale dS K,
/// dK = scale dS^T Q.
void materialisedBackward(Buffers &buf, const Shape &s, int threads) {
  auto f = [](NpyArray &a) { return reinterpret_cast<float *>(a.data.data()); };
  float *q = f(buf.q), *k = f(buf.k), *v = f(buf.v), *o = f(buf.o),
        *dO = f(buf.dO), *dq = f(buf.dq), *dk = f(buf.dk), *dv = f(buf.dv);
  std::vector<float> S(s.Lq * s.Lkv), dP(s.Lq * s.Lkv), Drow(s.Lq);
  float scale = 1.0f / std::sqrt(float(s.D));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      int64_t hk = h / (s.H / s.Hkv);
      float *qp = q + ((b * s.H + h) * s.Lq) * s.D;
      float *kp = k + ((b * s.Hkv + hk) * s.Lkv) * s.D;
      float *vp = v + ((b * s.Hkv + hk) * s.Lkv) * s.Dv;
      float *op = o + ((b * s.H + h) * s.Lq) * s.Dv;
      float *dop = dO + ((b * s.H + h) * s.Lq) * s.Dv;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.Lq, s.Lkv, s.D,
                  scale, qp, s.D, kp, s.D, 0.0f, S.data(), s.Lkv);
      parallelFor(s.Lq, threads, [&](int64_t i, int) {
        float *row = S.data() + i * s.Lkv;
        float m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < s.Lkv; ++j)
          m = std::max(m, row[j]);
        for (int64_t j = 0; j < s.Lkv; ++j)
          sum += (row[j] = std::exp(row[j] - m));
        for (int64_t j = 0; j < s.Lkv; ++j)
          row[j] /= sum;
        float d = 0;
        for (int64_t c = 0; c < s.Dv; ++c)
          d += dop[i * s.Dv + c] * op[i * s.Dv + c];
        Drow[i] = d;
      });
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.Lkv, s.Dv, s.Lq,
                  1.0f, S.data(), s.Lkv, dop, s.Dv, 0.0f,
                  dv + ((b * s.Hkv + hk) * s.Lkv) * s.Dv, s.Dv);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.Lq, s.Lkv, s.Dv,
                  1.0f, dop, s.Dv, vp, s.Dv, 0.0f, dP.data(), s.Lkv);
      parallelFor(s.Lq, threads, [&](int64_t i, int) {
        for (int64_t j = 0; j < s.Lkv; ++j)
          dP[i * s.Lkv + j] = S[i * s.Lkv + j] * (dP[i * s.Lkv + j] - Drow[i]);
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Lq, s.D, s.Lkv,
                  scale, dP.data(), s.Lkv, kp, s.D, 0.0f,
                  dq + ((b * s.H + h) * s.Lq) * s.D, s.D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.Lkv, s.D, s.Lq,
                  scale, dP.data(), s.Lkv, qp, s.D, 0.0f,
                  dk + ((b * s.Hkv + hk) * s.Lkv) * s.D, s.D);
    }
}

/// Materialised attention on OpenBLAS: S = scale Q K^T, row softmax, O = P V,
/// one (b, h) at a time with an Lq x Lkv buffer (float32 only; mask-free).
void materialised(const Buffers &buf, const Shape &s, int threads) {
  const float *q = reinterpret_cast<const float *>(buf.q.data.data());
  const float *k = reinterpret_cast<const float *>(buf.k.data.data());
  const float *v = reinterpret_cast<const float *>(buf.v.data.data());
  float *o =
      reinterpret_cast<float *>(const_cast<uint8_t *>(buf.o.data.data()));
  std::vector<float> S(s.Lq * s.Lkv);
  float scale = 1.0f / std::sqrt(float(s.D));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      int64_t hk = h / (s.H / s.Hkv);
      const float *qp = q + ((b * s.H + h) * s.Lq) * s.D;
      const float *kp = k + ((b * s.Hkv + hk) * s.Lkv) * s.D;
      const float *vp = v + ((b * s.Hkv + hk) * s.Lkv) * s.Dv;
      float *op = o + ((b * s.H + h) * s.Lq) * s.Dv;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.Lq, s.Lkv, s.D,
                  scale, qp, s.D, kp, s.D, 0.0f, S.data(), s.Lkv);
      parallelFor(s.Lq, threads, [&](int64_t i, int) {
        float *row = S.data() + i * s.Lkv;
        float m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < s.Lkv; ++j)
          m = std::max(m, row[j]);
        for (int64_t j = 0; j < s.Lkv; ++j)
          sum += (row[j] = std::exp(row[j] - m));
        for (int64_t j = 0; j < s.Lkv; ++j)
          row[j] /= sum;
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Lq, s.Dv, s.Lkv,
                  1.0f, S.data(), s.Lkv, vp, s.Dv, 0.0f, op, s.Dv);
    }
}

Options parseArgs(int argc, char **argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  int64_t L = -1;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= args.size())
        fail("option '" + a + "' needs a value");
      return args[++i];
    };
    auto num = [&]() -> int64_t {
      std::string v = next();
      char *end = nullptr;
      long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || x < 0)
        fail("option '" + a + "' needs a non-negative integer, got '" + v +
             "'");
      return x;
    };
    if (a == "--help" || a == "-h") {
      llvm::outs() << kUsage;
      std::exit(0);
    } else if (a == "--variant") {
      o.variants.push_back(next());
    } else if (a == "--B") {
      o.shape.B = num();
    } else if (a == "--H") {
      o.shape.H = num();
    } else if (a == "--Hkv") {
      o.shape.Hkv = num();
    } else if (a == "--L") {
      L = num();
    } else if (a == "--Lq") {
      o.shape.Lq = num();
    } else if (a == "--Lkv") {
      o.shape.Lkv = num();
    } else if (a == "--D") {
      o.shape.D = num();
    } else if (a == "--Dv") {
      o.shape.Dv = num();
    } else if (a == "--dtype") {
      o.dtype = next();
    } else if (a == "--param") {
      o.params.push_back(next());
    } else if (a == "--tile-q") {
      o.tileQ = num();
    } else if (a == "--tile-kv") {
      o.tileKV = num();
    } else if (a == "--warmup") {
      o.warmup = num();
    } else if (a == "--repeat") {
      o.repeat = std::max<int64_t>(num(), 1);
    } else if (a == "--threads") {
      o.threads = num();
    } else if (a == "--baselines") {
      std::string v = next();
      o.ref = v.find("ref") != std::string::npos;
      o.blas = v.find("blas") != std::string::npos;
    } else if (a == "--backward") {
      o.backward = true;
    } else if (a == "--json") {
      o.json = next();
    } else if (!a.empty() && a[0] == '-') {
      fail("unknown option '" + a + "' (see attn-bench --help)");
    } else {
      o.file = a;
    }
  }
  if (o.file.empty())
    fail("no input file (see attn-bench --help)");
  if (L >= 0)
    o.shape.Lq = o.shape.Lkv = L;
  if (o.shape.Hkv < 0)
    o.shape.Hkv = o.shape.H;
  if (o.shape.Dv < 0)
    o.shape.Dv = o.shape.D;
  if (o.dtype != "f32" && o.dtype != "f16")
    fail("--dtype must be f32 or f16");
  if (o.threads == 0)
    o.threads = defaultThreadCount();
  return o;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  const Shape &s = o.shape;
  if (o.variants.empty()) {
    mlir::MLIRContext ctx;
    auto module = frontEnd(ctx, o.file, "");
    for (auto v : module->getOps<mlir::attn::VariantOp>())
      o.variants.push_back(v.getSymName().str());
  }
  openblas_set_num_threads(o.threads);
  std::mt19937 rng(1234);
  DType dt = o.dtype == "f16" ? DType::F16 : DType::F32;
  Buffers buf;
  buf.q = randomArray(dt, {s.B, s.H, s.Lq, s.D}, rng);
  buf.k = randomArray(dt, {s.B, s.Hkv, s.Lkv, s.D}, rng);
  buf.v = randomArray(dt, {s.B, s.Hkv, s.Lkv, s.Dv}, rng);
  buf.o = randomArray(dt, {s.B, s.H, s.Lq, s.Dv}, rng);
  buf.lse = randomArray(DType::F32, {s.B, s.H, s.Lq}, rng);
  if (o.backward) {
    buf.dO = randomArray(dt, {s.B, s.H, s.Lq, s.Dv}, rng);
    buf.dq = randomArray(dt, {s.B, s.H, s.Lq, s.D}, rng);
    buf.dk = randomArray(dt, {s.B, s.Hkv, s.Lkv, s.D}, rng);
    buf.dv = randomArray(dt, {s.B, s.Hkv, s.Lkv, s.Dv}, rng);
  }
  for (const std::string &p : o.params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos)
      fail("--param '" + p + "' must be NAME=VALUE");
    std::string name = p.substr(0, eq), val = p.substr(eq + 1);
    if (val.rfind("docs:", 0) == 0) {
      int64_t n = std::max<int64_t>(std::stoll(val.substr(5)), 1);
      NpyArray a;
      a.dtype = DType::I32;
      a.shape = {s.Lkv};
      a.data.resize(s.Lkv * 4);
      for (int64_t i = 0; i < s.Lkv; ++i) {
        int32_t d = static_cast<int32_t>(i * n / std::max<int64_t>(s.Lkv, 1));
        std::memcpy(&a.data[i * 4], &d, 4);
      }
      buf.params[name] = a;
    } else if (val == "alibi") {
      NpyArray a;
      a.dtype = DType::F32;
      a.shape = {s.H};
      a.data.resize(s.H * 4);
      for (int64_t h = 0; h < s.H; ++h) {
        float x = std::pow(2.0f, -8.0f * float(h + 1) / float(s.H));
        std::memcpy(&a.data[h * 4], &x, 4);
      }
      buf.params[name] = a;
    } else if (val.size() > 4 && val.substr(val.size() - 4) == ".npy") {
      std::string err;
      if (!readNpy(val, buf.params[name], err))
        fail(err);
    } else {
      buf.scalars[name] = {val == "true" ? 1.0
                           : val == "false"
                               ? 0.0
                               : std::strtod(val.c_str(), nullptr)};
    }
  }

  double peak = measurePeak(o.threads);
  llvm::outs() << llvm::format(
      "machine: %d threads, FMA peak %.1f GFLOP/s (f32, register-only loop)\n",
      o.threads, peak);
  llvm::outs() << llvm::format(
      "shape: B=%lld H=%lld Hkv=%lld Lq=%lld Lkv=%lld D=%lld Dv=%lld %s\n",
      (long long)s.B, (long long)s.H, (long long)s.Hkv, (long long)s.Lq,
      (long long)s.Lkv, (long long)s.D, (long long)s.Dv, o.dtype.c_str());

  // The materialised baseline once (it ignores the variant: dense softmax).
  double blasTime = 0;
  int64_t blasMem = 0;
  if (o.blas && dt == DType::F32) {
    materialised(buf, s, o.threads); // warm-up
    std::vector<double> t;
    resetPeak();
    int64_t before = rss().first;
    for (int r = 0; r < std::max(1, o.repeat / 2); ++r) {
      double t0 = now();
      materialised(buf, s, o.threads);
      t.push_back(now() - t0);
    }
    blasMem = rss().second - before;
    blasTime = median(t);
    llvm::outs() << llvm::format("materialised baseline (OpenBLAS, dense): "
                                 "%.2f ms, extra peak %.1f MB\n",
                                 blasTime * 1e3, blasMem / 1e6);
  }

  double blasBwdTime = 0;
  if (o.backward && o.blas && dt == DType::F32 && s.H == s.Hkv) {
    materialisedBackward(buf, s, o.threads); // warm-up
    std::vector<double> t;
    for (int r = 0; r < std::max(1, o.repeat / 2); ++r) {
      double t0 = now();
      materialisedBackward(buf, s, o.threads);
      t.push_back(now() - t0);
    }
    blasBwdTime = median(t);
    llvm::outs() << llvm::format("materialised backward (OpenBLAS, dense): "
                                 "%.2f ms\n",
                                 blasBwdTime * 1e3);
  }

  std::ostringstream json;
  json << "{\n  \"fma_peak_gflops\": " << peak
       << ",\n  \"threads\": " << o.threads << ",\n  \"shape\": {\"B\": " << s.B
       << ", \"H\": " << s.H << ", \"Hkv\": " << s.Hkv << ", \"Lq\": " << s.Lq
       << ", \"Lkv\": " << s.Lkv << ", \"D\": " << s.D << ", \"Dv\": " << s.Dv
       << ", \"dtype\": \"" << o.dtype
       << "\"},\n  \"materialised_ms\": " << blasTime * 1e3
       << ",\n  \"materialised_extra_mb\": " << blasMem / 1e6
       << ",\n  \"materialised_backward_ms\": " << blasBwdTime * 1e3
       << ",\n  \"variants\": [";
  llvm::outs() << llvm::format("%-18s %10s %9s %7s %8s %10s %9s %9s\n",
                               "variant", "median ms", "GFLOP/s", "%peak",
                               "skipped", "extra MB", "x ref", "x blas");
  bool first = true;
  for (const std::string &name : o.variants) {
    // Unmasked entries, for FLOPs that count only useful work.
    auto counter = compile(o, name, /*reference=*/false, /*countOnly=*/true);
    Buffers zero = buf;
    std::fill(zero.q.data.begin(), zero.q.data.end(), 0);
    std::fill(zero.k.data.begin(), zero.k.data.end(), 0);
    std::string err;
    RunArgs ca = makeArgs(zero, counter->signature(), o.threads, true);
    if (!counter->run(ca, err))
      fail(name + ": " + err);
    double entries = 0;
    const float *lse = reinterpret_cast<const float *>(zero.lse.data.data());
    for (int64_t i = 0; i < zero.lse.numel(); ++i)
      if (std::isfinite(lse[i]))
        entries += std::round(std::exp(double(lse[i])));
    double flops = entries * 2.0 * double(s.D + s.Dv);

    auto kernel = compile(o, name, /*reference=*/false, false);
    RunArgs a = makeArgs(buf, kernel->signature(), o.threads, false);
    RunStats stats;
    a.stats = &stats;
    for (int w = 0; w < o.warmup; ++w)
      if (!kernel->run(a, err))
        fail(name + ": " + err);
    std::vector<double> times;
    resetPeak();
    int64_t before = rss().first;
    for (int r = 0; r < o.repeat; ++r) {
      double t0 = now();
      kernel->run(a, err);
      times.push_back(now() - t0);
    }
    int64_t extra = rss().second - before;
    double t = median(times);
    double skipped = stats.tilesTotal
                         ? 1.0 - double(stats.tilesComputed) / stats.tilesTotal
                         : 0;
    double refTime = 0;
    if (o.ref) {
      auto ref = compile(o, name, /*reference=*/true, false);
      RunArgs ra = makeArgs(buf, ref->signature(), 1, false);
      double t0 = now();
      if (!ref->run(ra, err))
        fail(name + " (reference): " + err);
      refTime = now() - t0;
    }
    // The backward pass: from a forward run's O and LSE (row statistics).
    double bwdTime = 0;
    if (o.backward) {
      auto fwdStats = compile(o, name, /*reference=*/false, false);
      RunArgs fa = makeArgs(buf, fwdStats->signature(), o.threads, false);
      const std::string &normName = fwdStats->signature().normalization;
      if (normName == "softmax" || normName == "linear")
        fa.rowStats = TensorView::contiguous(buf.lse.data.data(), DType::F32,
                                             buf.lse.shape);
      if (!fwdStats->run(fa, err))
        fail(name + ": " + err);
      auto bwd = compile(o, name, /*reference=*/false, false, true);
      std::map<std::string, NpyArray> grads;
      BackwardRunArgs ba =
          makeBackwardArgs(buf, bwd->signature(), o.threads, grads);
      for (int w = 0; w < o.warmup; ++w)
        if (bwd->launchBackward(ba, err) != LaunchStatus::Ok)
          fail(name + " (backward): " + err);
      std::vector<double> bt;
      for (int r = 0; r < o.repeat; ++r) {
        double t0 = now();
        bwd->launchBackward(ba, err);
        bt.push_back(now() - t0);
      }
      bwdTime = median(bt);
    }
    double gflops = flops / t / 1e9;
    if (o.backward)
      llvm::outs() << llvm::format(
          "%-18s backward %10.2f ms  %.2fx forward  %s\n", name.c_str(),
          bwdTime * 1e3, bwdTime / t,
          blasBwdTime ? llvm::formatv("{0:f2}x materialised backward speed",
                                      blasBwdTime / bwdTime)
                            .str()
                            .c_str()
                      : "");
    llvm::outs() << llvm::format(
        "%-18s %10.2f %9.1f %6.1f%% %7.1f%% %10.2f %9s %9s\n", name.c_str(),
        t * 1e3, gflops, 100 * gflops / peak, 100 * skipped, extra / 1e6,
        refTime ? llvm::formatv("{0:f1}", refTime / t).str().c_str() : "-",
        blasTime ? llvm::formatv("{0:f2}", blasTime / t).str().c_str() : "-");
    json << (first ? "\n" : ",\n") << "    {\"name\": \"" << name
         << "\", \"median_ms\": " << t * 1e3 << ", \"gflops\": " << gflops
         << ", \"fraction_of_peak\": " << gflops / peak
         << ", \"unmasked_entries\": " << entries
         << ", \"tiles_total\": " << stats.tilesTotal
         << ", \"tiles_in_range\": " << stats.tilesInRange
         << ", \"tiles_computed\": " << stats.tilesComputed
         << ", \"extra_peak_mb\": " << extra / 1e6
         << ", \"reference_ms\": " << refTime * 1e3
         << ", \"speedup_vs_reference\": " << (refTime ? refTime / t : 0)
         << ", \"speedup_vs_materialised\": " << (blasTime ? blasTime / t : 0)
         << ", \"backward_ms\": " << bwdTime * 1e3
         << ", \"backward_over_forward\": " << (bwdTime ? bwdTime / t : 0)
         << ", \"backward_speedup_vs_materialised\": "
         << (bwdTime && blasBwdTime ? blasBwdTime / bwdTime : 0) << "}";
    first = false;
  }
  json << "\n  ]\n}\n";
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << json.str();
    if (!f)
      fail("cannot write '" + o.json + "'");
  }
  return 0;
}
