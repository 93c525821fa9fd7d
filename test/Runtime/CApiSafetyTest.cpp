//===- CApiSafetyTest.cpp - libattn's C API on hostile input --------------===//
//
// What a careless or hostile caller can hand the C API, each answered with
// a status and a message that names the culprit, never a crash or an
// abort: tilings that no kernel can take, strides that overflow the
// address arithmetic, problems whose working buffers cannot be allocated,
// and handles used after they were released.
//
//===----------------------------------------------------------------------===//

#include "attn/attn.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attn_test;

namespace {

std::string lastError() { return attn_last_error(); }

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

struct CApiSafetyTest : ::testing::Test {
  attn_runtime *rt = nullptr;
  void SetUp() override {
    ASSERT_EQ(attn_runtime_create_with_cache(nullptr, 0, 0, &rt), ATTN_OK);
  }
  void TearDown() override { attn_runtime_destroy(rt); }
};

// Tilings that no tiled kernel takes are the caller's mistake on every
// host (whatever its vector width), reported as such before any lowering.
TEST_F(CApiSafetyTest, BadFixedTilingIsInvalidArgument) {
  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_head_dims(o, 64, 64), ATTN_OK);
  const int64_t bad[][2] = {{64, 24},  {64, 8},         {30, 64},
                            {3, 64},   {64, 100},       {1 << 20, 64},
                            {64, -16}, {INT64_MAX, 64}, {64, INT64_MAX - 15}};
  for (const auto &t : bad) {
    ASSERT_EQ(attn_compile_options_set_tiling(o, ATTN_TILING_FIXED, t[0], t[1]),
              ATTN_OK);
    attn_kernel *k = nullptr;
    EXPECT_EQ(attn_compile(rt, "attention a { mask = causal(); }", o, &k),
              ATTN_ERROR_INVALID_ARGUMENT)
        << t[0] << " x " << t[1] << ": " << lastError();
    EXPECT_EQ(k, nullptr);
    EXPECT_TRUE(contains(lastError(), "tiles of") ||
                contains(lastError(), "tiling needs positive"))
        << lastError();
    attn_kernel_release(k);
  }
  // A valid one on every host.
  ASSERT_EQ(attn_compile_options_set_tiling(o, ATTN_TILING_FIXED, 32, 16),
            ATTN_OK);
  attn_kernel *k = nullptr;
  EXPECT_EQ(attn_compile(rt, "attention a { mask = causal(); }", o, &k),
            ATTN_OK)
      << lastError();
  attn_kernel_release(k);
  attn_compile_options_destroy(o);
}

// A scalar f32 param or const override must be a finite f32: 1e39 is as
// wrong as inf (both would make every score inf or NaN), and both are
// rejected, naming the param.
TEST_F(CApiSafetyTest, F32ParamsOutOfRangeAreRejected) {
  Problem p(1, 1, 1, 8, 8, 4, 4);
  int64_t shape[4] = {1, 1, 8, 4};
  attn_tensor tq = {p.q.data(), ATTN_F32, 4, shape, nullptr};
  attn_tensor tk = {p.k.data(), ATTN_F32, 4, shape, nullptr};
  attn_tensor tv = {p.v.data(), ATTN_F32, 4, shape, nullptr};
  attn_tensor to = {p.o.data(), ATTN_F32, 4, shape, nullptr};
  attn_kernel *k = nullptr;
  ASSERT_EQ(attn_compile(rt, "attention a { param t: f32; score = score * t; }",
                         nullptr, &k),
            ATTN_OK)
      << lastError();
  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, nullptr),
            ATTN_OK);
  for (double bad : {1e39, -1e39, 3.5e38, double(INFINITY), -double(INFINITY),
                     double(NAN)}) {
    ASSERT_EQ(attn_run_args_set_scalar(args, "t", bad), ATTN_OK);
    EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT) << bad;
    EXPECT_TRUE(contains(lastError(), "param 't' is f32 and cannot take"))
        << lastError();
  }
  ASSERT_EQ(attn_run_args_set_scalar(args, "t", 3.4e38), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_OK) << lastError();
  attn_run_args_destroy(args);
  attn_kernel_release(k);

  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  for (double bad : {1e39, double(INFINITY), double(NAN)}) {
    ASSERT_EQ(attn_compile_options_set_const(o, "c", bad), ATTN_OK);
    EXPECT_EQ(attn_compile(rt,
                           "attention a { const param c: f32 = 1.0; "
                           "score = score * c; }",
                           o, &k),
              ATTN_ERROR_INVALID_ARGUMENT)
        << bad;
    EXPECT_TRUE(contains(lastError(), "const param 'c' is f32")) << lastError();
  }
  attn_compile_options_destroy(o);
}

// The compile error's message has the source line and a caret even when
// the line holds bytes that are not UTF-8.
TEST_F(CApiSafetyTest, CompileErrorOnNonUtf8LineHasCaret) {
  attn_kernel *k = nullptr;
  EXPECT_EQ(attn_compile(rt, "attention a {\n  score = score \xff 1.0;\n}",
                         nullptr, &k),
            ATTN_ERROR_COMPILE);
  EXPECT_EQ(lastError(), "<source>:2:17: error: unexpected character '\\xff' "
                         "(not UTF-8)\n  score = score <FF> 1.0;\n"
                         "                ^");
}

// Clearing a cache that cannot be emptied says so (ATTN_ERROR_IO, naming
// what is left and why) instead of claiming success; what can be removed
// is removed.
TEST_F(CApiSafetyTest, ClearCacheReportsWhatItCannotRemove) {
  ScratchDir dir;
  attn_runtime *disk = nullptr;
  ASSERT_EQ(attn_runtime_create_with_cache(dir.path.c_str(), 1, 0, &disk),
            ATTN_OK);
  attn_kernel *k = nullptr;
  ASSERT_EQ(attn_compile(disk, "attention a {}", nullptr, &k), ATTN_OK)
      << lastError();
  attn_kernel_release(k);
  std::string v1 = dir.path + "/v1", key;
  if (DIR *d = ::opendir(v1.c_str())) {
    while (struct dirent *e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > 9 && name.substr(name.size() - 9) == ".manifest")
        key = name.substr(0, name.size() - 9);
    }
    ::closedir(d);
  }
  ASSERT_EQ(key.size(), 64u);

  // An entry another process is using (its lock held): left, reported.
  int fd = ::open((v1 + "/" + key + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_EQ(attn_runtime_clear_cache(disk), ATTN_ERROR_IO);
  EXPECT_TRUE(contains(lastError(), "entry " + key + ": in use"))
      << lastError();
  ::close(fd);
  struct stat st;
  EXPECT_EQ(::stat((v1 + "/" + key + ".o").c_str(), &st), 0);

  // A file that cannot be unlinked (a directory in its place).
  std::string object = v1 + "/" + key + ".o";
  ASSERT_EQ(::unlink(object.c_str()), 0);
  ASSERT_EQ(::mkdir(object.c_str(), 0755), 0);
  ASSERT_EQ(::close(::open((object + "/x").c_str(), O_WRONLY | O_CREAT, 0644)),
            0);
  EXPECT_EQ(attn_runtime_clear_cache(disk), ATTN_ERROR_IO);
  EXPECT_TRUE(contains(lastError(), "cannot remove '" + object + "'"))
      << lastError();
  EXPECT_EQ(::stat(object.c_str(), &st), 0);

  ASSERT_EQ(::unlink((object + "/x").c_str()), 0);
  ASSERT_EQ(::rmdir(object.c_str()), 0);
  EXPECT_EQ(attn_runtime_clear_cache(disk), ATTN_OK) << lastError();
  EXPECT_NE(::stat((v1 + "/" + key + ".sig").c_str(), &st), 0);
  attn_runtime_destroy(disk);
}

/// A problem with C views of its tensors; strides may be replaced.
struct Views {
  Problem p;
  int64_t qShape[4], kvShape[4], lseShape[3];
  int64_t qStrides[4], kStrides[4], vStrides[4], oStrides[4], lStrides[3];
  attn_tensor q, k, v, o, lse;
  explicit Views(unsigned salt) : p(1, 4, 2, 23, 23, 16, 16, salt) {
    int64_t qs[4] = {p.B, p.H, p.Lq, p.D}, kvs[4] = {p.B, p.Hkv, p.Lkv, p.D};
    int64_t ls[3] = {p.B, p.H, p.Lq};
    std::copy(qs, qs + 4, qShape);
    std::copy(kvs, kvs + 4, kvShape);
    std::copy(ls, ls + 3, lseShape);
    auto contiguous = [](const int64_t *shape, int rank, int64_t *strides) {
      int64_t n = 1;
      for (int i = rank - 1; i >= 0; --i) {
        strides[i] = n;
        n *= shape[i];
      }
    };
    contiguous(qShape, 4, qStrides);
    contiguous(kvShape, 4, kStrides);
    contiguous(kvShape, 4, vStrides);
    contiguous(qShape, 4, oStrides);
    contiguous(lseShape, 3, lStrides);
    q = {p.q.data(), ATTN_F32, 4, qShape, qStrides};
    k = {p.k.data(), ATTN_F32, 4, kvShape, kStrides};
    v = {p.v.data(), ATTN_F32, 4, kvShape, vStrides};
    o = {p.o.data(), ATTN_F32, 4, qShape, oStrides};
    lse = {p.lse.data(), ATTN_F32, 3, lseShape, lStrides};
  }
  attn_status run(attn_kernel *kernel) {
    attn_run_args *args = nullptr;
    EXPECT_EQ(attn_run_args_create(&args), ATTN_OK);
    attn_status s = attn_run_args_set_tensors(args, &q, &k, &v, &o, &lse);
    EXPECT_EQ(s, ATTN_OK) << lastError();
    s = attn_kernel_run(kernel, args);
    attn_run_args_destroy(args);
    return s;
  }
};

// Strides that make the kernels' address arithmetic overflow (or reach
// beyond any memory) are rejected before the run, naming the tensor and
// the dimension, for the reference and the tiled kernel alike; outputs
// may not have overlapping elements; sensible strides (broadcast inputs,
// negative strides) still run and give the right result.
TEST_F(CApiSafetyTest, StridesAreValidated) {
  attn_compile_options *tiled = nullptr;
  ASSERT_EQ(attn_compile_options_create(&tiled), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_head_dims(tiled, 16, 16), ATTN_OK);
  const char *src = "attention a { mask = causal(); }";
  for (const attn_compile_options *opts :
       {(attn_compile_options *)nullptr, (attn_compile_options *)tiled}) {
    attn_kernel *kernel = nullptr;
    ASSERT_EQ(attn_compile(rt, src, opts, &kernel), ATTN_OK) << lastError();
    const int64_t huge = int64_t(1) << 61;
    struct Bad {
      const char *name;
      std::function<void(Views &)> edit;
      const char *message;
    };
    std::vector<Bad> bad = {
        {"issue",
         [&](Views &w) { std::fill(w.qStrides, w.qStrides + 4, huge); },
         "Q dimension 1 (size 4, stride 2305843009213693952) reaches beyond "
         "2^63 bytes"},
        {"int64 min", [](Views &w) { w.kStrides[2] = INT64_MIN; },
         "K dimension 2 (size 23, stride -9223372036854775808)"},
        {"beyond 2^48",
         [](Views &w) { w.vStrides[0] = 0, w.vStrides[1] = int64_t(1) << 46; },
         "V dimension 1 (size 2, stride 70368744177664) reaches "
         "281474976710656 "
         "bytes from the data pointer; a tensor may span at most 2^48 bytes"},
        {"sum beyond 2^48",
         [](Views &w) {
           // Each below the bound, together beyond it.
           w.kStrides[1] = (int64_t(1) << 45) + (int64_t(1) << 44);
           w.kStrides[2] = int64_t(1) << 41;
         },
         "K spans"},
        {"wraps up",
         [](Views &w) {
           w.q.data = reinterpret_cast<void *>(UINTPTR_MAX - 64);
         },
         "Q with shape (1, 4, 23, 16) and strides (1472, 368, 16, 1) wraps "
         "around the address space"},
        {"wraps down",
         [](Views &w) {
           w.v.data = reinterpret_cast<void *>(uintptr_t(64));
           w.vStrides[2] = -16;
         },
         "V with shape (1, 2, 23, 16) and strides (736, 368, -16, 1) wraps"},
        {"O overlaps", [](Views &w) { w.oStrides[2] = 0; },
         "O dimension 2 (size 23, stride 0) has stride 0: its elements would "
         "overlap"},
        {"LSE overlaps", [](Views &w) { w.lStrides[1] = 0; },
         "LSE dimension 1 (size 4, stride 0) has stride 0"},
    };
    for (Bad &b : bad) {
      Views w(3);
      b.edit(w);
      EXPECT_EQ(w.run(kernel), ATTN_ERROR_INVALID_ARGUMENT) << b.name;
      EXPECT_TRUE(contains(lastError(), b.message))
          << b.name << ": " << lastError();
    }

    auto causal = [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; };
    auto plain = [](double s, int64_t, int64_t, int64_t, int64_t) { return s; };
    {
      // V reversed along Lkv through a negative stride: the same tensor.
      Views w(4);
      std::vector<float> reversed(w.p.v.size());
      int64_t rows = w.p.B * w.p.Hkv * w.p.Lkv;
      for (int64_t r = 0; r < rows; ++r) {
        int64_t head = r / w.p.Lkv, j = r % w.p.Lkv;
        std::copy_n(&w.p.v[r * w.p.Dv], w.p.Dv,
                    &reversed[(head * w.p.Lkv + w.p.Lkv - 1 - j) * w.p.Dv]);
      }
      w.v.data = &reversed[(w.p.Lkv - 1) * w.p.Dv];
      w.vStrides[2] = -w.p.Dv;
      ASSERT_EQ(w.run(kernel), ATTN_OK) << lastError();
      EXPECT_LT(w.p.maxError(plain, causal), 1e-4);
    }
    {
      // K broadcast along its heads (stride 0): every KV head is head 0.
      Views w(5);
      for (int64_t h = 1; h < w.p.Hkv; ++h)
        std::copy_n(&w.p.k[0], w.p.Lkv * w.p.D, &w.p.k[h * w.p.Lkv * w.p.D]);
      w.kStrides[1] = 0;
      ASSERT_EQ(w.run(kernel), ATTN_OK) << lastError();
      EXPECT_LT(w.p.maxError(plain, causal), 1e-4);
    }
    attn_kernel_release(kernel);
  }
  attn_compile_options_destroy(tiled);
}

// Memory the library allocates on the caller's behalf is sized before it
// is allocated: broadcast K and V far larger than the memory behind them
// make the tiled kernel's working copies too large for any machine, which
// is ATTN_ERROR_OUT_OF_MEMORY with a message, not an abort. An output
// larger than any view may span is refused before that.
TEST_F(CApiSafetyTest, WorkingMemoryIsSizedBeforeAllocating) {
  attn_compile_options *tiled = nullptr;
  ASSERT_EQ(attn_compile_options_create(&tiled), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_head_dims(tiled, 3, 3), ATTN_OK);
  attn_kernel *kernel = nullptr;
  ASSERT_EQ(attn_compile(rt, "attention a {}", tiled, &kernel), ATTN_OK)
      << lastError();
  float one[3] = {1, 2, 3};
  const int64_t big = INT32_MAX;
  // B = H = Hkv = Lkv = 2^31 - 1 through stride 0; no query rows.
  int64_t qShape[4] = {big, big, 0, 3}, kvShape[4] = {big, big, big, 3};
  int64_t broadcast[4] = {0, 0, 0, 1};
  attn_tensor q = {nullptr, ATTN_F32, 4, qShape, nullptr};
  attn_tensor kv = {one, ATTN_F32, 4, kvShape, broadcast};
  attn_tensor o = {nullptr, ATTN_F32, 4, qShape, nullptr};
  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &q, &kv, &kv, &o, nullptr),
            ATTN_OK);
  EXPECT_EQ(attn_kernel_run(kernel, args), ATTN_ERROR_OUT_OF_MEMORY);
  EXPECT_TRUE(contains(lastError(),
                       "the tiled kernel needs more than 2^64 bytes of "
                       "working memory for K and V of shapes "
                       "(2147483647, 2147483647, 2147483647, 3)"))
      << lastError();

  // O of 2^31 x 2^31 x 1 x 3 elements through overlapping strides.
  int64_t bigO[4] = {big, big, 1, 3}, small[4] = {1, 1, 1, 3};
  int64_t overlap[4] = {1, 1, 1, 1};
  std::vector<float> buffer(8, 0.0f);
  attn_tensor q1 = {buffer.data(), ATTN_F32, 4, bigO, overlap};
  attn_tensor kv1 = {one, ATTN_F32, 4, small, nullptr};
  int64_t bigKV[4] = {big, big, 1, 3};
  kv1.shape = bigKV;
  kv1.strides = broadcast;
  attn_tensor o1 = {buffer.data(), ATTN_F32, 4, bigO, overlap};
  ASSERT_EQ(attn_run_args_set_tensors(args, &q1, &kv1, &kv1, &o1, nullptr),
            ATTN_OK);
  EXPECT_EQ(attn_kernel_run(kernel, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(lastError(), "O of shape (2147483647, 2147483647, 1, "
                                    "3) has more than 2^48 bytes of elements"))
      << lastError();
  attn_run_args_destroy(args);
  attn_kernel_release(kernel);
  attn_compile_options_destroy(tiled);
}

// Handles used after release, released twice, or of another type are
// invalid arguments, not crashes (nor use after free under ASan).
TEST_F(CApiSafetyTest, StaleHandlesAreInvalidArguments) {
  auto stale = [](const char *function) {
    std::string m = lastError();
    return contains(m, function) && contains(m, "is not a live handle");
  };
  Views w(7);
  attn_kernel *kernel = nullptr;
  ASSERT_EQ(attn_compile(rt, "attention a {}", nullptr, &kernel), ATTN_OK);
  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &w.q, &w.k, &w.v, &w.o, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_kernel_run(kernel, args), ATTN_OK) << lastError();

  // A released kernel: run, query, release again.
  attn_kernel_release(kernel);
  EXPECT_EQ(attn_kernel_run(kernel, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_kernel_run: kernel")) << lastError();
  EXPECT_EQ(attn_kernel_synchronize(kernel), ATTN_ERROR_INVALID_ARGUMENT);
  attn_param_info info;
  EXPECT_EQ(attn_kernel_param(kernel, 0, &info), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_kernel_name(kernel), nullptr);
  EXPECT_EQ(attn_kernel_key(kernel), nullptr);
  EXPECT_EQ(attn_kernel_plan(kernel), nullptr);
  EXPECT_EQ(attn_kernel_num_params(kernel), 0u);
  attn_kernel_release(kernel);
  EXPECT_TRUE(stale("attn_kernel_release")) << lastError();

  // Destroyed args.
  ASSERT_EQ(attn_compile(rt, "attention a {}", nullptr, &kernel), ATTN_OK);
  attn_run_args_destroy(args);
  EXPECT_EQ(attn_kernel_run(kernel, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_kernel_run: args")) << lastError();
  EXPECT_EQ(attn_run_args_set_threads(args, 2), ATTN_ERROR_INVALID_ARGUMENT);
  attn_run_args_destroy(args);
  EXPECT_TRUE(stale("attn_run_args_destroy")) << lastError();

  // A destroyed runtime and destroyed options.
  attn_runtime *other = nullptr;
  ASSERT_EQ(attn_runtime_create_with_cache(nullptr, 0, 0, &other), ATTN_OK);
  attn_runtime_destroy(other);
  attn_kernel *k2 = nullptr;
  EXPECT_EQ(attn_compile(other, "attention a {}", nullptr, &k2),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_compile: runtime")) << lastError();
  EXPECT_EQ(k2, nullptr);
  attn_cache_stats stats;
  EXPECT_EQ(attn_runtime_stats(other, &stats), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_runtime_clear_cache(other), ATTN_ERROR_INVALID_ARGUMENT);
  attn_runtime_destroy(other);
  EXPECT_TRUE(stale("attn_runtime_destroy")) << lastError();
  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  attn_compile_options_destroy(o);
  EXPECT_EQ(attn_compile(rt, "attention a {}", o, &k2),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_compile: options")) << lastError();
  EXPECT_EQ(attn_compile_options_set_head_dims(o, 8, 8),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_gpu_kernel(o, ATTN_GPU_KERNEL_MMA),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_compile_options_set_gpu_kernel: options"))
      << lastError();
  EXPECT_EQ(attn_compile_options_set_gpu_persistent(o, 1),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_gpu_mark_kernel(o, 0),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_gpu_arch(o, "sm_90"),
            ATTN_ERROR_INVALID_ARGUMENT);

  // One handle type for another.
  attn_run_args *live = nullptr;
  ASSERT_EQ(attn_run_args_create(&live), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(reinterpret_cast<attn_kernel *>(live), live),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(stale("attn_kernel_run: kernel")) << lastError();
  EXPECT_EQ(attn_kernel_run(kernel, reinterpret_cast<attn_run_args *>(kernel)),
            ATTN_ERROR_INVALID_ARGUMENT);

  // Still caught after many other handles came and went (fewer than the
  // quarantine holds).
  attn_run_args_destroy(live);
  for (int i = 0; i < 500; ++i) {
    attn_run_args *a = nullptr;
    ASSERT_EQ(attn_run_args_create(&a), ATTN_OK);
    attn_run_args_destroy(a);
  }
  EXPECT_EQ(attn_run_args_clear_params(live), ATTN_ERROR_INVALID_ARGUMENT);
  attn_kernel_release(kernel);
}

} // namespace
