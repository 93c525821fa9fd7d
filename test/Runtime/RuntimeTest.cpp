//===- RuntimeTest.cpp - libattn's C++ API and its kernel cache -----------===//
//
// Numerics against a float64 reference (outputs poisoned with NaN first),
// cache keys (same meaning, same key; any change of meaning, another key),
// the memory and disk caches (threads and processes racing on one key
// compile it once; damaged entries are rebuilt; LRU eviction under a size
// cap; a disk hit compiles nothing), and errors with their messages.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

using namespace attn_test;
using attn::Status;

namespace {

const char *kAlibi = R"(
attention alibi {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask  = kv_idx <= q_idx;
}
)";

std::vector<float> alibiSlopes(int64_t H) {
  std::vector<float> s(H);
  for (int64_t h = 0; h < H; ++h)
    s[h] = std::pow(2.0f, -8.0f * float(h + 1) / float(H));
  return s;
}

/// Runs the ALiBi kernel on `p` and returns the max error.
double runAlibi(const attn::Kernel &kernel, Problem &p) {
  std::vector<float> slopes = alibiSlopes(p.H);
  p.poison();
  attn::RunArgs args = p.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {p.H});
  kernel.run(args);
  return p.maxError(
      [&](double s, int64_t, int64_t h, int64_t i, int64_t j) {
        return s + double(slopes[h]) * double(j - i);
      },
      [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; });
}

Status compileStatus(attn::Runtime &rt, const std::string &src,
                     const attn::CompileOptions &opts, std::string &error) {
  attn::Kernel k;
  return rt.compile(src, opts, k, error);
}

std::string keyOf(attn::Runtime &rt, const std::string &src,
                  const attn::CompileOptions &opts = {}) {
  return rt.compile(src, opts).key();
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

//===----------------------------------------------------------------------===//
// Numerics
//===----------------------------------------------------------------------===//

TEST(Numerics, ReferenceKernelMatchesFloat64) {
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts;
  opts.tiling = attn::Tiling::reference();
  attn::Kernel k = rt.compile(kAlibi, opts);
  Problem p(2, 4, 2, 45, 45, 16, 16);
  EXPECT_LT(runAlibi(k, p), 1e-4);
}

TEST(Numerics, TiledKernelMatchesFloat64) {
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts; // auto + head dims: the tiled kernel
  opts.headDim = 32;
  opts.valueDim = 32;
  attn::Kernel k = rt.compile(kAlibi, opts);
  Problem p(1, 4, 1, 130, 130, 32, 32, 3);
  EXPECT_LT(runAlibi(k, p), 1e-4);
  // Another thread count gives the same result.
  std::vector<float> first = p.o;
  std::vector<float> slopes = alibiSlopes(p.H);
  p.poison();
  attn::RunArgs args = p.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {p.H});
  args.threads = 1;
  k.run(args);
  EXPECT_EQ(first, p.o);
}

TEST(Numerics, StridedViewsAndCrossAttention) {
  // Q stored as [B, Lq, H, D] and passed with strides; no mask, Lq != Lkv.
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile("attention plain {}");
  Problem p(2, 2, 2, 19, 31, 8, 12, 5);
  std::vector<float> qt(p.q.size());
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.Lq; ++i)
        for (int64_t d = 0; d < p.D; ++d)
          qt[((b * p.Lq + i) * p.H + h) * p.D + d] =
              p.q[((b * p.H + h) * p.Lq + i) * p.D + d];
  attn::RunArgs args = p.args();
  args.q.data = qt.data();
  args.q.strides = {p.Lq * p.H * p.D, p.D, p.H * p.D, 1};
  k.run(args);
  EXPECT_LT(
      p.maxError([](double s, int64_t, int64_t, int64_t, int64_t) { return s; },
                 [](int64_t, int64_t, int64_t, int64_t) { return true; }),
      1e-4);
}

TEST(Numerics, StridedViewsThroughBothKernels) {
  // Q stored as [B, Lq, H, D], K with a gap after every element (innermost
  // stride 2) and O written as [B, Lq, H, Dv]: the reference and the tiled
  // kernel must read and write through any strides. GQA, Lq != Lkv, odd
  // sizes, a shifted causal mask.
  for (bool tiled : {false, true}) {
    SCOPED_TRACE(tiled ? "tiled kernel" : "reference kernel");
    attn::Runtime rt(memoryOnly());
    attn::CompileOptions opts;
    if (tiled) {
      opts.headDim = 24;
      opts.valueDim = 20;
    } else {
      opts.tiling = attn::Tiling::reference();
    }
    attn::Kernel k =
        rt.compile("attention c { mask = kv_idx <= q_idx + 7; }", opts);
    Problem p(2, 4, 2, 70, 77, 24, 20, 11);
    std::vector<float> qt(p.q.size()), kt(p.k.size() * 2, NAN),
        ot(p.o.size(), NAN);
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.H; ++h)
        for (int64_t i = 0; i < p.Lq; ++i)
          for (int64_t d = 0; d < p.D; ++d)
            qt[((b * p.Lq + i) * p.H + h) * p.D + d] =
                p.q[((b * p.H + h) * p.Lq + i) * p.D + d];
    for (size_t i = 0; i < p.k.size(); ++i)
      kt[2 * i] = p.k[i];
    attn::RunArgs args = p.args();
    args.q.data = qt.data();
    args.q.strides = {p.Lq * p.H * p.D, p.D, p.H * p.D, 1};
    args.k.data = kt.data();
    args.k.strides = {2 * p.Hkv * p.Lkv * p.D, 2 * p.Lkv * p.D, 2 * p.D, 2};
    args.o.data = ot.data();
    args.o.strides = {p.Lq * p.H * p.Dv, p.Dv, p.H * p.Dv, 1};
    k.run(args);
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.H; ++h)
        for (int64_t i = 0; i < p.Lq; ++i)
          for (int64_t c = 0; c < p.Dv; ++c)
            p.o[((b * p.H + h) * p.Lq + i) * p.Dv + c] =
                ot[((b * p.Lq + i) * p.H + h) * p.Dv + c];
    auto score = [](double s, int64_t, int64_t, int64_t, int64_t) { return s; };
    auto mask = [](int64_t, int64_t, int64_t i, int64_t j) {
      return j <= i + 7;
    };
    EXPECT_LT(p.maxError(score, mask, /*checkLse=*/false), 1e-4);
    EXPECT_LT(p.maxError(score, mask), 1e-4);
  }
}

TEST(Numerics, WideHeadsUseTheReferenceKernel) {
  // Tiled kernels keep their tiles on the stack: Auto tiling falls back to
  // the reference kernel for D > kMaxTiledHeadDim and still computes.
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts;
  opts.headDim = 600;
  opts.valueDim = 8;
  attn::Kernel k = rt.compile("attention w { mask = kv_idx <= q_idx; }", opts);
  Problem p(1, 2, 1, 9, 11, 600, 8, 21);
  k.run(p.args());
  EXPECT_LT(
      p.maxError([](double s, int64_t, int64_t, int64_t, int64_t) { return s; },
                 [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; }),
      1e-4);
}

TEST(Errors, TiledKernelsRefuseWhatWouldOverflowTheStack) {
  attn::Runtime rt(memoryOnly());
  std::string error;
  attn::CompileOptions wide;
  wide.headDim = wide.valueDim = 600;
  wide.tiling = attn::Tiling::fixed(64, 64);
  EXPECT_EQ(compileStatus(rt, "attention a {}", wide, error),
            Status::InvalidArgument);
  EXPECT_NE(error.find("head dims up to 512"), std::string::npos) << error;
  attn::CompileOptions huge;
  huge.headDim = huge.valueDim = 64;
  huge.tiling = attn::Tiling::fixed(65536, 64);
  EXPECT_NE(compileStatus(rt, "attention a {}", huge, error), Status::Ok);
  EXPECT_NE(error.find("choose smaller tiles"), std::string::npos) << error;
}

TEST(Numerics, DocumentMaskSummariesAndTheirReuse) {
  // Document ids are summarised per tile by the launcher; with
  // paramsUnchanged the summaries of the previous run are reused (same
  // output), and without it changed ids are honoured.
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts;
  opts.headDim = opts.valueDim = 16;
  attn::Kernel k = rt.compile(
      "attention d { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; }",
      opts);
  Problem p(1, 2, 2, 300, 300, 16, 16, 31);
  std::vector<int32_t> doc(300);
  auto check = [&](bool unchanged) {
    p.poison();
    attn::RunArgs args = p.args();
    args.params["doc"] = attn::Tensor::contiguous(doc.data(), attn::DType::I32,
                                                  {int64_t(doc.size())});
    args.paramsUnchanged = unchanged;
    k.run(args);
    return p.maxError(
        [](double s, int64_t, int64_t, int64_t, int64_t) { return s; },
        [&](int64_t, int64_t, int64_t i, int64_t j) {
          return doc[i] == doc[j];
        });
  };
  for (int64_t i = 0; i < 300; ++i)
    doc[i] = int32_t(i / 37); // documents of 37 tokens
  EXPECT_LT(check(false), 1e-4);
  std::vector<float> first = p.o;
  EXPECT_LT(check(true), 1e-4);
  EXPECT_EQ(first, p.o);
  for (int64_t i = 0; i < 300; ++i)
    doc[i] = int32_t(i / 90); // new contents, same buffer
  EXPECT_LT(check(false), 1e-4);
}

TEST(Numerics, BoolTensorBytesAnyNonZeroIsTrue) {
  // Bool tensors arrive as bytes, and any non-zero byte is true (.npy files
  // are normalised to 0/1, C and C++ buffers are not). A block mask read
  // through a 2-D box holds 0x80 and 0xFF (negative as signed bytes) beside
  // zeros in the same tiles: the tile facts must still see "may be true"
  // and "may be false" wherever the entries are mixed.
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts;
  opts.headDim = opts.valueDim = 16;
  attn::Kernel k = rt.compile("attention blk { param blocks: bool[?, ?]; "
                              "mask = blocks[q_idx / 16, kv_idx / 16]; }",
                              opts);
  const int64_t L = 200, n = (L + 15) / 16;
  Problem p(1, 2, 2, L, L, 16, 16, 5);
  std::vector<uint8_t> blocks(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      blocks[i * n + j] = (i * 7 + j * 3) % 4 == 0 ? 0 : (j % 2 ? 0x80 : 0xFF);
  p.poison();
  attn::RunArgs args = p.args();
  args.params["blocks"] =
      attn::Tensor::contiguous(blocks.data(), attn::DType::Bool, {n, n});
  k.run(args);
  EXPECT_LT(
      p.maxError([](double s, int64_t, int64_t, int64_t, int64_t) { return s; },
                 [&](int64_t, int64_t, int64_t i, int64_t j) {
                   return blocks[(i / 16) * n + j / 16] != 0;
                 }),
      1e-4);
}

TEST(Numerics, RuntimeScalarNeverRecompiles) {
  attn::Runtime rt(memoryOnly());
  const char *src = "attention win { param window: i32 = 4; "
                    "mask = kv_idx <= q_idx && q_idx - kv_idx < window; }";
  attn::Kernel k = rt.compile(src);
  for (int window : {1, 3, 8}) {
    Problem p(1, 2, 2, 20, 20, 8, 8, window);
    attn::RunArgs args = p.args();
    args.params["window"] = double(window);
    k.run(args);
    EXPECT_LT(p.maxError([](double s, int64_t, int64_t, int64_t,
                            int64_t) { return s; },
                         [&](int64_t, int64_t, int64_t i, int64_t j) {
                           return j <= i && i - j < window;
                         }),
              1e-4)
        << "window " << window;
  }
  EXPECT_EQ(rt.stats().compiles, 1u);
}

TEST(Numerics, EmptyRowsGiveZeroAndMinusInfinity) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile("attention none { mask = kv_idx < 0; }");
  Problem p(1, 1, 1, 5, 5, 4, 4);
  k.run(p.args());
  for (float x : p.o)
    EXPECT_EQ(x, 0.0f);
  for (float x : p.lse)
    EXPECT_EQ(x, -INFINITY);
}

//===----------------------------------------------------------------------===//
// Cache keys
//===----------------------------------------------------------------------===//

TEST(CacheKey, SpellingDoesNotMatter) {
  attn::Runtime rt(memoryOnly());
  std::string base = keyOf(rt, kAlibi);
  const char *spellings[] = {
      // whitespace and comments
      "// ALiBi\nattention alibi{param slopes:f32[H];"
      "score=score+slopes[h]*f32(kv_idx-q_idx);  // bias\n"
      "\t\tmask=kv_idx<=q_idx;}",
      // let names
      R"(attention alibi {
           param slopes: f32[H];
           let distance = f32(kv_idx - q_idx);
           let bias = slopes[h] * distance;
           score = score + bias;
           mask = kv_idx <= q_idx;
         })",
      R"(attention alibi {
           param slopes: f32[H];
           let d = f32(kv_idx - q_idx);
           let b0 = slopes[h] * d;
           score = score + b0;
           mask = kv_idx <= q_idx;
         })",
      // a def, and the prelude's causal()
      R"(def distance(x) = f32(x);
         attention alibi {
           param slopes: f32[H];
           score = score + slopes[h] * distance(kv_idx - q_idx);
           mask = causal();
         })",
      // other blocks in the same file
      R"(attention other { mask = kv_idx < q_idx; }
         attention alibi {
           param slopes: f32[H];
           score = score + slopes[h] * f32(kv_idx - q_idx);
           mask = kv_idx <= q_idx;
         })",
  };
  for (const char *src : spellings) {
    attn::CompileOptions opts;
    opts.variant = "alibi";
    EXPECT_EQ(keyOf(rt, src, opts), base) << src;
  }
  // One compilation: every other spelling found it in memory by key.
  EXPECT_EQ(rt.stats().compiles, 1u);
}

TEST(CacheKey, MeaningChangesTheKey) {
  attn::Runtime rt(memoryOnly());
  std::vector<std::string> sources = {
      kAlibi,
      // < instead of <=
      "attention alibi { param slopes: f32[H]; score = score + slopes[h] * "
      "f32(kv_idx - q_idx); mask = kv_idx < q_idx; }",
      // q_idx - kv_idx instead of kv_idx - q_idx
      "attention alibi { param slopes: f32[H]; score = score + slopes[h] * "
      "f32(q_idx - kv_idx); mask = kv_idx <= q_idx; }",
      // another normalisation
      "attention alibi { param slopes: f32[H]; score = score + slopes[h] * "
      "f32(kv_idx - q_idx); mask = kv_idx <= q_idx; normalize sigmoid; }",
      // another name
      "attention alibi2 { param slopes: f32[H]; score = score + slopes[h] * "
      "f32(kv_idx - q_idx); mask = kv_idx <= q_idx; }",
      // another param type
      "attention alibi { param slopes: f32[Hkv]; score = score + slopes[h] * "
      "f32(kv_idx - q_idx); mask = kv_idx <= q_idx; }",
      // another scale
      "attention alibi { param slopes: f32[H]; scale = 0.5; score = score + "
      "slopes[h] * f32(kv_idx - q_idx); mask = kv_idx <= q_idx; }",
      // another default of a runtime scalar
      "attention w { param window: i32 = 4; mask = q_idx - kv_idx < window; }",
      "attention w { param window: i32 = 5; mask = q_idx - kv_idx < window; }",
  };
  std::set<std::string> keys;
  for (const std::string &src : sources)
    keys.insert(keyOf(rt, src));
  EXPECT_EQ(keys.size(), sources.size());
  // Options are part of the key too.
  attn::CompileOptions f16;
  f16.dtype = attn::DType::F16;
  EXPECT_TRUE(keys.insert(keyOf(rt, kAlibi, f16)).second);
  attn::CompileOptions tiled;
  tiled.headDim = tiled.valueDim = 32;
  EXPECT_TRUE(keys.insert(keyOf(rt, kAlibi, tiled)).second);
  tiled.valueDim = 16;
  EXPECT_TRUE(keys.insert(keyOf(rt, kAlibi, tiled)).second);
}

TEST(CacheKey, ConstOverridesAreTheKernelsIdentity) {
  attn::Runtime rt(memoryOnly());
  const char *src = "attention soft { const param cap: f32 = 50.0; "
                    "score = cap * tanh(score / cap); }";
  std::string k50 = keyOf(rt, src);
  attn::CompileOptions cap30;
  cap30.consts["cap"] = 30.0;
  std::string k30 = keyOf(rt, src, cap30);
  EXPECT_NE(k30, k50);
  // Overriding with the value it has is the same kernel, and so is the
  // source that says 30 itself.
  attn::CompileOptions cap50;
  cap50.consts["cap"] = 50.0;
  EXPECT_EQ(keyOf(rt, src, cap50), k50);
  EXPECT_EQ(keyOf(rt, "attention soft { const param cap: f32 = 30.0; "
                      "score = cap * tanh(score / cap); }"),
            k30);

  // And the override is what runs.
  attn::Kernel k = rt.compile(src, cap30);
  Problem p(1, 2, 2, 16, 16, 8, 8, 9);
  for (float &x : p.q)
    x *= 8; // large scores, so that the cap matters
  k.run(p.args());
  EXPECT_LT(p.maxError([](double s, int64_t, int64_t, int64_t,
                          int64_t) { return 30.0 * std::tanh(s / 30.0); },
                       [](int64_t, int64_t, int64_t, int64_t) { return true; }),
            1e-4);
}

TEST(CacheKey, BadConstOverrides) {
  attn::Runtime rt(memoryOnly());
  const char *src = "attention c { const param n: i32 = 4; param w: f32 = 1.0;"
                    " mask = q_idx - kv_idx < n; }";
  std::string error;
  attn::CompileOptions opts;
  opts.consts["nope"] = 1;
  EXPECT_EQ(compileStatus(rt, src, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("no param 'nope'"), std::string::npos) << error;
  EXPECT_NE(error.find("its const params: n"), std::string::npos) << error;
  opts.consts.clear();
  opts.consts["w"] = 2;
  EXPECT_EQ(compileStatus(rt, src, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("not const"), std::string::npos) << error;
  opts.consts.clear();
  opts.consts["n"] = 1.5;
  EXPECT_EQ(compileStatus(rt, src, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("i32 and cannot take the value 1.5"), std::string::npos)
      << error;
}

//===----------------------------------------------------------------------===//
// GPU kernels: one compile path with the CPU's (single-flight, memory by
// key, disk entries with the plan), compiled for a given arch without a
// device; the kernel follows the options, not the environment.
//===----------------------------------------------------------------------===//

const char *kDocuments = R"(
attention documents {
  param doc: i32[Lkv];
  mask = doc[q_idx] == doc[kv_idx];
}
)";

/// nvptx options for `arch` ("": device 0's), f16, D = Dv = `dim`.
attn::CompileOptions gpuOptions(const std::string &arch, int64_t dim = 64) {
  attn::CompileOptions o;
  o.target = attn::Target::NVPTX;
  o.dtype = attn::DType::F16;
  o.headDim = o.valueDim = dim;
  o.gpu.arch = arch;
  return o;
}

/// Whether this process can load GPU kernels (a CUDA driver and a device).
bool haveGpu() {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k;
  std::string error;
  return rt.compile("attention a {}", gpuOptions(""), k, error) !=
         Status::Unavailable;
}

/// Compiles `src` with `opts` from two threads at once on `rt`; both
/// kernels must come back with one key.
void compileFromTwoThreads(attn::Runtime &rt, const std::string &src,
                           const attn::CompileOptions &opts) {
  std::vector<attn::Kernel> kernels(2);
  std::vector<std::string> errors(2);
  std::vector<Status> statuses(2, Status::Internal);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      ++ready;
      while (ready < 2)
        std::this_thread::yield();
      statuses[t] = rt.compile(src, opts, kernels[t], errors[t]);
    });
  for (std::thread &t : threads)
    t.join();
  for (int t = 0; t < 2; ++t)
    ASSERT_EQ(statuses[t], Status::Ok) << errors[t];
  EXPECT_EQ(kernels[0].key(), kernels[1].key());
  EXPECT_EQ(kernels[0].signature().target, attn::Target::NVPTX);
}

TEST(GpuCompile, TwoThreadsCompileOnce) {
  // For sm_80, with or without a device: PTX needs no CUDA driver.
  attn::Runtime rt(memoryOnly());
  compileFromTwoThreads(rt, kAlibi, gpuOptions("sm_80"));
  attn::CacheStats s = rt.stats();
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.memoryHits, 1u);
  // Without a device the kernel is kept but cannot run.
  if (haveGpu())
    return;
  attn::Kernel k = rt.compile(kAlibi, gpuOptions("sm_80"));
  EXPECT_EQ(rt.stats().compiles, 1u);
  EXPECT_NE(k.plan().find("kernel            mma"), std::string::npos)
      << k.plan();
  Problem p(1, 2, 2, 16, 16, 64, 64);
  std::vector<float> slopes = alibiSlopes(2);
  attn::RunArgs args = p.args(false);
  for (attn::Tensor *t : {&args.q, &args.k, &args.v, &args.o})
    t->dtype = attn::DType::F16;
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {2});
  std::string error;
  EXPECT_EQ(k.run(args, error), Status::Unavailable);
  EXPECT_NE(error.find("CUDA driver"), std::string::npos) << error;
}

TEST(GpuCompile, TwoThreadsCompileOnceOnTheDevice) {
  // Device 0's arch: needs a CUDA driver and a device (lit's `cuda`
  // feature runs it: e2e-gpu-single-flight.test).
  if (!haveGpu())
    GTEST_SKIP() << "no CUDA device";
  attn::Runtime rt(memoryOnly());
  compileFromTwoThreads(rt, kDocuments, gpuOptions("", 128));
  EXPECT_EQ(rt.stats().compiles, 1u);
  EXPECT_EQ(rt.stats().memoryHits, 1u);
}

TEST(GpuCompile, KernelFollowsTheOptionsNotTheEnvironment) {
  // The variables that once chose the kernel, set to the opposite of the
  // options: they change nothing.
  ::setenv("ATTN_GPU_KERNEL", "simt", 1);
  ::setenv("ATTN_GPU_PERSISTENT", "1", 1);
  ::setenv("ATTN_GPU_MARK_KERNEL", "0", 1);
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts = gpuOptions("sm_90", 128);
  attn::Kernel k = rt.compile(kDocuments, opts);
  const std::string &plan = k.plan();
  EXPECT_NE(plan.find("kernel            wgmma"), std::string::npos) << plan;
  EXPECT_NE(plan.find("PTX target        sm_90a"), std::string::npos) << plan;
  EXPECT_NE(plan.find("persistent        no"), std::string::npos) << plan;
  EXPECT_NE(plan.find("mark kernel       yes"), std::string::npos) << plan;
  // Each option: another kernel, another key.
  std::set<std::string> keys = {k.key()};
  opts.gpu.kernel = attn::GpuOptions::Kernel::Simt;
  attn::Kernel simt = rt.compile(kDocuments, opts);
  EXPECT_NE(simt.plan().find("kernel            simt"), std::string::npos);
  keys.insert(simt.key());
  opts.gpu.kernel = attn::GpuOptions::Kernel::Auto;
  opts.gpu.persistent = true;
  attn::Kernel persistent = rt.compile(kDocuments, opts);
  EXPECT_NE(persistent.plan().find("persistent        yes"), std::string::npos);
  EXPECT_NE(persistent.plan().find("mark kernel       no"), std::string::npos);
  keys.insert(persistent.key());
  opts.gpu.persistent = false;
  opts.gpu.markKernel = false;
  attn::Kernel noMarks = rt.compile(kDocuments, opts);
  EXPECT_NE(noMarks.plan().find("mark kernel       no"), std::string::npos);
  keys.insert(noMarks.key());
  EXPECT_EQ(keys.size(), 4u);
  EXPECT_EQ(rt.stats().compiles, 4u);
  ::unsetenv("ATTN_GPU_KERNEL");
  ::unsetenv("ATTN_GPU_PERSISTENT");
  ::unsetenv("ATTN_GPU_MARK_KERNEL");
}

TEST(GpuCompile, BadOptions) {
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts = gpuOptions("sm_70");
  std::string error;
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("sm_80 or later"), std::string::npos) << error;
  opts = gpuOptions("sm_80", 128);
  opts.gpu.kernel = attn::GpuOptions::Kernel::Wgmma;
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("needs sm_90"), std::string::npos) << error;
  opts = gpuOptions("sm_80", 72);
  opts.gpu.kernel = attn::GpuOptions::Kernel::Mma;
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("multiples of 16"), std::string::npos) << error;
  EXPECT_EQ(rt.stats().compiles, 0u);
}

TEST(GpuCompile, DiskEntryHoldsThePlan) {
  ScratchDir dir;
  std::string key, plan;
  {
    attn::Runtime rt(diskCacheAt(dir.path));
    attn::Kernel k = rt.compile(kDocuments, gpuOptions("sm_90", 128));
    key = k.key();
    plan = k.plan();
    EXPECT_EQ(rt.stats().compiles, 1u);
    EXPECT_EQ(rt.stats().diskWrites, 1u);
    std::string base = rt.cacheFolder() + "/" + key;
    EXPECT_EQ(
        readFile(base + ".plan").rfind("attn-gpu-plan 1\nkind wgmma\n", 0), 0u);
    EXPECT_NE(readFile(base + ".o").find(".target sm_90a"), std::string::npos);
    EXPECT_NE(readFile(base + ".manifest").find("\nplan "), std::string::npos);
  }
  {
    // Another runtime: the entry, no compile, the same plan.
    attn::Runtime rt(diskCacheAt(dir.path));
    attn::Kernel k = rt.compile(kDocuments, gpuOptions("sm_90", 128));
    EXPECT_EQ(k.key(), key);
    EXPECT_EQ(k.plan(), plan);
    EXPECT_EQ(rt.stats().diskHits, 1u);
    EXPECT_EQ(rt.stats().compiles, 0u);
    // A damaged plan: the entry is dropped and rebuilt.
    std::string base = rt.cacheFolder() + "/" + key;
    std::string text = readFile(base + ".plan");
    text[text.find("kind wgmma") + 5] = 'x';
    writeFile(base + ".plan", text);
  }
  attn::Runtime rt(diskCacheAt(dir.path));
  attn::Kernel k = rt.compile(kDocuments, gpuOptions("sm_90", 128));
  EXPECT_EQ(k.plan(), plan);
  EXPECT_EQ(rt.stats().corruptEntries, 1u);
  EXPECT_EQ(rt.stats().compiles, 1u);
}

//===----------------------------------------------------------------------===//
// Memory cache and threads
//===----------------------------------------------------------------------===//

TEST(MemoryCache, SecondRequestIsAHit) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel a = rt.compile(kAlibi);
  attn::Kernel b = rt.compile(kAlibi);
  EXPECT_EQ(a.key(), b.key());
  attn::CacheStats s = rt.stats();
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.memoryHits, 1u);
  EXPECT_EQ(s.diskHits + s.diskWrites, 0u);
}

TEST(MemoryCache, EightThreadsCompileOnce) {
  ScratchDir dir;
  attn::Runtime rt(diskCacheAt(dir.path));
  std::vector<std::thread> threads;
  std::vector<std::string> keys(8);
  std::vector<double> errors(8, INFINITY);
  std::atomic<int> ready{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      ++ready;
      while (ready < 8)
        std::this_thread::yield();
      attn::CompileOptions opts;
      opts.headDim = opts.valueDim = 16;
      attn::Kernel k = rt.compile(kAlibi, opts);
      keys[t] = k.key();
      Problem p(1, 2, 2, 33, 33, 16, 16, t);
      errors[t] = runAlibi(k, p);
    });
  for (std::thread &t : threads)
    t.join();
  for (int t = 0; t < 8; ++t) {
    EXPECT_EQ(keys[t], keys[0]);
    EXPECT_LT(errors[t], 1e-4) << "thread " << t;
  }
  attn::CacheStats s = rt.stats();
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.diskWrites, 1u);
  EXPECT_EQ(s.memoryHits, 7u);
}

TEST(MemoryCache, ThreadsCompilingDifferentKernels) {
  // Four kernels (two reference, two tiled), each wanted by two threads at
  // once: MLIR contexts and LLVM code generators work side by side.
  attn::Runtime rt(memoryOnly());
  std::vector<std::thread> threads;
  std::vector<double> errors(8, INFINITY);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      double factor = 1.5 + t % 4;
      std::string src = "attention s { score = score * " +
                        std::to_string(factor) + "; mask = kv_idx <= q_idx; }";
      attn::CompileOptions opts;
      if (t % 2)
        opts.headDim = opts.valueDim = 8;
      attn::Kernel k = rt.compile(src, opts);
      Problem p(1, 2, 1, 19, 19, 8, 8, t);
      k.run(p.args());
      errors[t] = p.maxError(
          [&](double s, int64_t, int64_t, int64_t, int64_t) {
            return s * factor;
          },
          [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; });
    });
  for (std::thread &t : threads)
    t.join();
  for (int t = 0; t < 8; ++t)
    EXPECT_LT(errors[t], 1e-4) << "thread " << t;
  EXPECT_EQ(rt.stats().compiles, 4u);
}

//===----------------------------------------------------------------------===//
// Disk cache
//===----------------------------------------------------------------------===//

TEST(DiskCache, AHitCompilesNothing) {
  ScratchDir dir;
  std::string key;
  {
    attn::Runtime first(diskCacheAt(dir.path));
    key = first.compile(kAlibi).key();
    EXPECT_EQ(first.stats().compiles, 1u);
    EXPECT_EQ(first.stats().diskWrites, 1u);
  }
  attn::Runtime second(diskCacheAt(dir.path)); // a new process, in effect
  attn::Kernel k = second.compile(kAlibi);
  EXPECT_EQ(k.key(), key);
  attn::CacheStats s = second.stats();
  EXPECT_EQ(s.compiles, 0u);
  EXPECT_EQ(s.diskHits, 1u);
  Problem p(1, 2, 1, 21, 21, 8, 8);
  EXPECT_LT(runAlibi(k, p), 1e-4);
  // The folder's totals add up both runtimes.
  attn::CacheStats total = second.diskStats();
  EXPECT_EQ(total.compiles, 1u);
  EXPECT_EQ(total.diskHits, 1u);
  EXPECT_EQ(total.diskWrites, 1u);
}

TEST(DiskCache, EntryLayout) {
  ScratchDir dir;
  attn::Runtime rt(diskCacheAt(dir.path));
  std::string key = rt.compile(kAlibi).key();
  std::string base = rt.cacheFolder() + "/" + key;
  std::string manifest = readFile(base + ".manifest");
  EXPECT_EQ(manifest.rfind("attn-cache-manifest 1\nkey " + key, 0), 0u);
  EXPECT_NE(manifest.find("\nchecksum "), std::string::npos);
  EXPECT_EQ(readFile(base + ".o")
                .rfind("\x7f"
                       "ELF",
                       0),
            0u);
  EXPECT_EQ(readFile(base + ".sig").rfind("attn-signature 1\nname alibi\n", 0),
            0u);
  std::vector<attn::CacheEntry> entries = rt.diskEntries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].key, key);
  EXPECT_EQ(entries[0].variant, "alibi");
  EXPECT_EQ(entries[0].options, "dtype=f32 lowering=reference");
}

/// Damages one file of the entry and checks that the next runtime notices,
/// rebuilds it and still computes the right thing, and the one after that
/// hits the rebuilt entry.
void expectRebuilt(const std::function<void(const std::string &base)> &damage) {
  ScratchDir dir;
  std::string key;
  {
    attn::Runtime rt(diskCacheAt(dir.path));
    key = rt.compile(kAlibi).key();
    damage(rt.cacheFolder() + "/" + key);
  }
  {
    attn::Runtime rt(diskCacheAt(dir.path));
    attn::Kernel k = rt.compile(kAlibi);
    attn::CacheStats s = rt.stats();
    EXPECT_EQ(s.corruptEntries, 1u);
    EXPECT_EQ(s.diskHits, 0u);
    EXPECT_EQ(s.compiles, 1u);
    EXPECT_EQ(s.diskWrites, 1u);
    Problem p(1, 2, 2, 17, 17, 8, 8);
    EXPECT_LT(runAlibi(k, p), 1e-4);
  }
  attn::Runtime rt(diskCacheAt(dir.path));
  rt.compile(kAlibi);
  EXPECT_EQ(rt.stats().diskHits, 1u);
  EXPECT_EQ(rt.stats().compiles, 0u);
  EXPECT_EQ(rt.diskStats().corruptEntries, 1u);
}

TEST(DiskCache, FlippedObjectByteIsRebuilt) {
  expectRebuilt([](const std::string &base) {
    std::string o = readFile(base + ".o");
    o[o.size() / 2] ^= 0x40;
    writeFile(base + ".o", o);
  });
}

TEST(DiskCache, TruncatedObjectIsRebuilt) {
  expectRebuilt([](const std::string &base) {
    std::string o = readFile(base + ".o");
    writeFile(base + ".o", o.substr(0, o.size() / 3));
  });
}

TEST(DiskCache, MissingObjectIsRebuilt) {
  expectRebuilt(
      [](const std::string &base) { ::unlink((base + ".o").c_str()); });
}

TEST(DiskCache, FlippedSignatureByteIsRebuilt) {
  expectRebuilt([](const std::string &base) {
    std::string s = readFile(base + ".sig");
    s[20] ^= 0x01;
    writeFile(base + ".sig", s);
  });
}

TEST(DiskCache, TruncatedManifestIsRebuilt) {
  expectRebuilt([](const std::string &base) {
    std::string m = readFile(base + ".manifest");
    writeFile(base + ".manifest", m.substr(0, m.size() - 30));
  });
}

TEST(DiskCache, EditedManifestIsRebuilt) {
  expectRebuilt([](const std::string &base) {
    std::string m = readFile(base + ".manifest");
    size_t at = m.find("variant alibi");
    m[at + 8] = 'A';
    writeFile(base + ".manifest", m);
  });
}

/// Three variants of one shape (so entries have about one size).
std::string scaled(int i) {
  return "attention s { score = score * " + std::to_string(i + 2) + ".5; }";
}

TEST(DiskCache, EvictsTheLeastRecentlyUsedOverTheCap) {
  ScratchDir dir;
  uint64_t entryBytes;
  std::string keyA, keyB, keyC;
  {
    attn::Runtime rt(diskCacheAt(dir.path));
    keyA = rt.compile(scaled(1)).key();
    keyB = rt.compile(scaled(2)).key();
    entryBytes = 0;
    for (const attn::CacheEntry &e : rt.diskEntries())
      entryBytes = std::max(entryBytes, e.bytes);
  }
  ASSERT_GT(entryBytes, 0u);
  // Room for two entries and a half. Using A makes B the least recent.
  uint64_t cap = entryBytes * 5 / 2;
  {
    attn::Runtime rt(diskCacheAt(dir.path, cap));
    rt.compile(scaled(1));
    EXPECT_EQ(rt.stats().diskHits, 1u);
    keyC = rt.compile(scaled(3)).key();
    EXPECT_EQ(rt.stats().evictions, 1u);
    std::set<std::string> left;
    for (const attn::CacheEntry &e : rt.diskEntries())
      left.insert(e.key);
    EXPECT_EQ(left, (std::set<std::string>{keyA, keyC}));
  }
  // A cap below one entry keeps only the newest.
  attn::Runtime tiny(diskCacheAt(dir.path, 1));
  std::string keyD = tiny.compile(scaled(4)).key();
  EXPECT_EQ(tiny.stats().evictions, 2u);
  ASSERT_EQ(tiny.diskEntries().size(), 1u);
  EXPECT_EQ(tiny.diskEntries()[0].key, keyD);
  EXPECT_EQ(tiny.diskStats().evictions, 3u);
}

TEST(DiskCache, ClearRemovesEverything) {
  ScratchDir dir;
  attn::Runtime rt(diskCacheAt(dir.path));
  rt.compile(scaled(1));
  rt.compile(scaled(2));
  EXPECT_EQ(rt.diskEntries().size(), 2u);
  rt.clearCache();
  EXPECT_EQ(rt.diskEntries().size(), 0u);
  EXPECT_EQ(rt.diskStats().compiles, 0u);
  rt.compile(scaled(1));
  EXPECT_EQ(rt.stats().compiles, 3u); // not in memory any more either
}

TEST(DiskCache, UnusableFolderFallsBackToMemory) {
  ScratchDir dir;
  std::string file = dir.path + "/not-a-folder";
  writeFile(file, "x");
  attn::Runtime rt(diskCacheAt(file));
  attn::Kernel k = rt.compile(kAlibi);
  Problem p(1, 1, 1, 9, 9, 4, 4);
  EXPECT_LT(runAlibi(k, p), 1e-4);
  EXPECT_EQ(rt.stats().diskWrites, 0u);
}

TEST(DiskCache, EnvironmentConfiguration) {
  ::setenv("ATTN_CACHE_DIR", "/some/where", 1);
  ::setenv("ATTN_CACHE_MAX_BYTES", "64M", 1);
  ::setenv("ATTN_CACHE", "1", 1);
  attn::CacheConfig c = attn::CacheConfig::fromEnvironment();
  EXPECT_TRUE(c.diskCache);
  EXPECT_EQ(c.dir, "/some/where");
  EXPECT_EQ(c.maxBytes, uint64_t(64) << 20);
  ::setenv("ATTN_CACHE", "0", 1);
  EXPECT_FALSE(attn::CacheConfig::fromEnvironment().diskCache);
  ::unsetenv("ATTN_CACHE_DIR");
  ::unsetenv("ATTN_CACHE_MAX_BYTES");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  attn::Runtime rt(attn::CacheConfig::fromEnvironment());
  EXPECT_EQ(rt.cacheConfig().dir, "/xdg/attnc");
  EXPECT_EQ(rt.cacheConfig().maxBytes, uint64_t(1) << 30);
  EXPECT_EQ(rt.cacheFolder(), ""); // ATTN_CACHE=0
  ::unsetenv("XDG_CACHE_HOME");
}

//===----------------------------------------------------------------------===//
// Processes racing on one key
//===----------------------------------------------------------------------===//

const char *kChildEnv = "ATTN_RUNTIME_TEST_CHILD_CACHE";

/// Run by the processes that MultiProcess.FourProcessesCompileOnce starts;
/// skipped otherwise.
TEST(MultiProcess, Child) {
  const char *dir = std::getenv(kChildEnv);
  if (!dir)
    GTEST_SKIP() << "started by MultiProcess.FourProcessesCompileOnce";
  attn::Runtime rt(diskCacheAt(dir));
  attn::CompileOptions opts;
  opts.headDim = opts.valueDim = 32;
  attn::Kernel k = rt.compile(kAlibi, opts);
  Problem p(1, 2, 2, 40, 40, 32, 32, ::getpid());
  EXPECT_LT(runAlibi(k, p), 1e-4);
}

TEST(MultiProcess, FourProcessesCompileOnce) {
  ScratchDir dir;
  std::string envVar = std::string(kChildEnv) + "=" + dir.path;
  std::vector<char *> env;
  for (char **e = environ; *e; ++e)
    if (std::strncmp(*e, kChildEnv, std::strlen(kChildEnv)) != 0)
      env.push_back(*e);
  env.push_back(envVar.data());
  env.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string filter = "--gtest_filter=MultiProcess.Child";
  char *argv[] = {self.data(), filter.data(), nullptr};
  std::vector<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    pid_t pid;
    ASSERT_EQ(::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv,
                            env.data()),
              0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child " << pid << " failed";
  }
  attn::Runtime rt(diskCacheAt(dir.path));
  attn::CacheStats total = rt.diskStats();
  EXPECT_EQ(total.compiles, 1u);
  EXPECT_EQ(total.diskWrites, 1u);
  EXPECT_EQ(total.diskHits, 3u);
  EXPECT_EQ(rt.diskEntries().size(), 1u);
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(Errors, BadSourceHasLocatedDiagnostics) {
  attn::Runtime rt(memoryOnly());
  try {
    rt.compile("attention a {\n  mask = q_idx <= ;\n}\n");
    FAIL() << "no error";
  } catch (const attn::Error &e) {
    EXPECT_EQ(e.status(), Status::CompileError);
    std::string msg = e.what();
    EXPECT_NE(msg.find("<source>:2:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("error:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mask = q_idx <= ;"), std::string::npos) << msg;
    EXPECT_NE(msg.find("^"), std::string::npos) << msg;
  }
  std::string error;
  EXPECT_EQ(compileStatus(rt, "attention a { score = scroe; }", {}, error),
            Status::CompileError);
  EXPECT_NE(error.find("scroe"), std::string::npos) << error;
  EXPECT_EQ(rt.stats().compiles, 0u);
}

TEST(Errors, ChoosingTheVariant) {
  attn::Runtime rt(memoryOnly());
  const char *two = "attention a {} attention b {}";
  std::string error;
  EXPECT_EQ(compileStatus(rt, two, {}, error), Status::InvalidArgument);
  EXPECT_NE(error.find("holds 2 attention blocks (a, b)"), std::string::npos)
      << error;
  attn::CompileOptions opts;
  opts.variant = "c";
  EXPECT_EQ(compileStatus(rt, two, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("no attention block named 'c'"), std::string::npos)
      << error;
  EXPECT_EQ(compileStatus(rt, "// nothing\n", {}, error),
            Status::InvalidArgument);
  opts.variant = "b";
  EXPECT_EQ(compileStatus(rt, two, opts, error), Status::Ok) << error;
}

TEST(Errors, Files) {
  attn::Runtime rt(memoryOnly());
  try {
    rt.compileFile("/no/such/file.attn");
    FAIL() << "no error";
  } catch (const attn::Error &e) {
    EXPECT_EQ(e.status(), Status::IOError);
    EXPECT_NE(std::string(e.what()).find("/no/such/file.attn"),
              std::string::npos);
  }
  ScratchDir dir;
  writeFile(dir.path + "/bad.attn", "attention a { mask = 1; }\n");
  try {
    rt.compileFile(dir.path + "/bad.attn");
    FAIL() << "no error";
  } catch (const attn::Error &e) {
    EXPECT_EQ(e.status(), Status::CompileError);
    EXPECT_NE(std::string(e.what()).find("bad.attn:1:"), std::string::npos)
        << e.what();
  }
}

TEST(Errors, Targets) {
  attn::Runtime rt(memoryOnly());
  attn::CompileOptions opts;
  opts.target = attn::Target::NVPTX;
  std::string error;
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::Unavailable);
  EXPECT_TRUE(error.find("no CUDA driver found") != std::string::npos ||
              error.find("nvptx target is not available") != std::string::npos)
      << error;
  opts = {};
  opts.dtype = attn::DType::I32;
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
  opts = {};
  opts.tiling = attn::Tiling::fixed(32, 32);
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
  EXPECT_NE(error.find("headDim"), std::string::npos) << error;
  opts.tiling = attn::Tiling::fixed(0, 32);
  EXPECT_EQ(compileStatus(rt, kAlibi, opts, error), Status::InvalidArgument);
}

/// Runs the ALiBi kernel with `edit` applied to good arguments and expects
/// `status` with `text` in the message.
void expectRunError(const std::function<void(attn::RunArgs &)> &edit,
                    Status status, const std::string &text,
                    const attn::CompileOptions &opts = {}) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile(kAlibi, opts);
  Problem p(1, 4, 2, 12, 12, 8, 8);
  std::vector<float> slopes = alibiSlopes(4);
  attn::RunArgs args = p.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {4});
  edit(args);
  std::string error;
  EXPECT_EQ(k.run(args, error), status) << error;
  EXPECT_NE(error.find(text), std::string::npos) << error;
  try {
    k.run(args);
    ADD_FAILURE() << "no exception";
  } catch (const attn::Error &e) {
    EXPECT_EQ(e.what(), error);
  }
}

// A tensor without elements may have a null data pointer (PyTorch gives
// empty tensors one); a tensor with elements may not.
TEST(Errors, NullDataOnlyForEmptyTensors) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile(kAlibi);
  std::vector<float> slopes = alibiSlopes(4);
  std::string error;
  // No queries: Q, O and LSE are empty.
  Problem noRows(1, 4, 2, 0, 12, 8, 8);
  attn::RunArgs args = noRows.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {4});
  args.q.data = nullptr;
  args.o.data = nullptr;
  args.lse->data = nullptr;
  EXPECT_EQ(k.run(args, error), Status::Ok) << error;
  // No keys: K and V are empty, every row is empty (O = 0, LSE = -inf).
  Problem noKeys(1, 4, 2, 12, 0, 8, 8);
  args = noKeys.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {4});
  args.k.data = nullptr;
  args.v.data = nullptr;
  EXPECT_EQ(k.run(args, error), Status::Ok) << error;
  for (float x : noKeys.o)
    EXPECT_EQ(x, 0.0f);
  for (float x : noKeys.lse)
    EXPECT_EQ(x, -INFINITY);
  // One key, and K's null pointer is an error again.
  Problem oneKey(1, 4, 2, 12, 1, 8, 8);
  args = oneKey.args();
  args.params["slopes"] =
      attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {4});
  args.k.data = nullptr;
  EXPECT_EQ(k.run(args, error), Status::InvalidArgument);
  EXPECT_EQ(error, "K has a null data pointer");
}

TEST(Errors, RunArguments) {
  expectRunError([](attn::RunArgs &a) { a.q.data = nullptr; },
                 Status::InvalidArgument, "Q has a null data pointer");
  expectRunError([](attn::RunArgs &a) { a.k.shape[3] = 4; },
                 Status::InvalidArgument,
                 "Q and K must have the same head dimension D");
  expectRunError([](attn::RunArgs &a) { a.o.shape[2] = 11; },
                 Status::InvalidArgument, "O must have shape (1, 4, 12, 8)");
  expectRunError([](attn::RunArgs &a) { a.q.shape.pop_back(); },
                 Status::InvalidArgument, "Q must have rank 4");
  expectRunError([](attn::RunArgs &a) { a.v.strides = {1, 2}; },
                 Status::InvalidArgument,
                 "V has 2 strides for a shape of rank 4");
  expectRunError([](attn::RunArgs &a) { a.params["nosuch"] = 1.0; },
                 Status::InvalidArgument,
                 "unknown param 'nosuch' for variant 'alibi' (its params: "
                 "slopes)");
  expectRunError([](attn::RunArgs &a) { a.params.clear(); },
                 Status::InvalidArgument, "missing tensor param 'slopes'");
  expectRunError([](attn::RunArgs &a) { a.params["slopes"] = 2.0; },
                 Status::InvalidArgument, "is a tensor (f32[H])");
  expectRunError(
      [](attn::RunArgs &a) {
        std::get<attn::Tensor>(a.params["slopes"]).shape = {3};
      },
      Status::InvalidArgument, "param 'slopes' must have shape f32[H]");
  expectRunError([](attn::RunArgs &a) { a.stream = &a; },
                 Status::InvalidArgument, "CUDA stream");
  expectRunError([](attn::RunArgs &a) { a.threads = -2; },
                 Status::InvalidArgument, "thread count");
  attn::CompileOptions f16;
  f16.dtype = attn::DType::F16;
  expectRunError([](attn::RunArgs &) {}, Status::InvalidArgument,
                 "this kernel was compiled for float16 tensors", f16);
  attn::CompileOptions tiled;
  tiled.headDim = tiled.valueDim = 16;
  expectRunError([](attn::RunArgs &) {}, Status::InvalidArgument,
                 "compiled for head dimensions D = 16", tiled);
}

TEST(Errors, LseOfSigmoid) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile("attention s { normalize sigmoid; }");
  EXPECT_FALSE(k.signature().definesLSE);
  Problem p(1, 1, 1, 4, 4, 4, 4);
  std::string error;
  EXPECT_EQ(k.run(p.args(/*withLse=*/true), error), Status::InvalidArgument);
  EXPECT_NE(error.find("LSE is not defined for 'normalize sigmoid'"),
            std::string::npos)
      << error;
}

TEST(Errors, KernelReportsOutOfRange) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile("attention t { param bias: f32[4]; "
                              "score = score + bias[q_idx]; }");
  Problem p(1, 1, 1, 6, 6, 4, 4);
  std::vector<float> bias(4, 0.0f);
  attn::RunArgs args = p.args();
  args.params["bias"] =
      attn::Tensor::contiguous(bias.data(), attn::DType::F32, {4});
  std::string error;
  EXPECT_EQ(k.run(args, error), Status::KernelError);
  EXPECT_NE(error.find("read param 'bias' out of range: index "),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("in dimension 0 of size 4"), std::string::npos) << error;
}

TEST(Errors, EmptyKernelHandle) {
  attn::Kernel k;
  EXPECT_FALSE(k);
  attn::RunArgs args;
  std::string error;
  EXPECT_EQ(k.run(args, error), Status::InvalidArgument);
  EXPECT_EQ(k.synchronize(error), Status::InvalidArgument);
  EXPECT_NE(error.find("empty"), std::string::npos) << error;
  EXPECT_THROW(k.synchronize(), attn::Error);
  EXPECT_THROW(k.signature(), attn::Error);
}

TEST(Signature, DescribesParams) {
  attn::Runtime rt(memoryOnly());
  attn::Kernel k = rt.compile(
      "attention g { const param cap: f32 = 50.0; param window: i32 = 64; "
      "param doc: i32[Lkv]; param blocks: bool[?, 4]; "
      "score = cap * tanh(score / cap); "
      "mask = q_idx - kv_idx < window && doc[kv_idx] == doc[q_idx] && "
      "blocks[q_idx, 0]; }");
  const attn::Signature &sig = k.signature();
  EXPECT_EQ(sig.name, "g");
  EXPECT_EQ(sig.normalization, "softmax");
  EXPECT_TRUE(sig.definesLSE);
  ASSERT_EQ(sig.params.size(), 4u);
  EXPECT_TRUE(sig.params[0].isConst);
  EXPECT_EQ(sig.params[0].value, 50.0);
  EXPECT_EQ(sig.params[1].declaredType, "i32");
  EXPECT_EQ(sig.params[1].value, 64.0);
  EXPECT_EQ(sig.params[2].declaredType, "i32[Lkv]");
  ASSERT_EQ(sig.params[2].dims.size(), 1u);
  EXPECT_EQ(sig.params[2].dims[0].kind, attn::Dim::Kind::Size);
  EXPECT_EQ(sig.params[2].dims[0].size, "Lkv");
  EXPECT_EQ(sig.params[3].declaredType, "bool[?, 4]");
  EXPECT_EQ(sig.params[3].dtype, attn::DType::Bool);
  EXPECT_EQ(sig.params[3].dims[0].kind, attn::Dim::Kind::Dynamic);
  EXPECT_EQ(sig.params[3].dims[1].kind, attn::Dim::Kind::Literal);
  EXPECT_EQ(sig.params[3].dims[1].value, 4);
  EXPECT_EQ(sig.param("window"), &sig.params[1]);
  EXPECT_EQ(sig.param("nope"), nullptr);
}

} // namespace
