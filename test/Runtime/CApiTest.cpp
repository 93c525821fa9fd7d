//===- CApiTest.cpp - libattn's C API -------------------------------------===//
//
// A full compile-and-run through attn.h checked against the float64
// reference, the signature description, and every class of error: each
// returns its status with a message in attn_last_error(), never a crash.
//
//===----------------------------------------------------------------------===//

#include "attn/attn.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

using namespace attn_test;

namespace {

const char *kAlibi = "attention alibi { param slopes: f32[H]; "
                     "score = score + slopes[h] * f32(kv_idx - q_idx); "
                     "mask = kv_idx <= q_idx; }";

std::string lastError() { return attn_last_error(); }

/// A memory-only runtime and C views of a Problem.
struct CApiTest : ::testing::Test {
  attn_runtime *rt = nullptr;
  Problem p{1, 4, 2, 23, 23, 8, 8};
  int64_t qShape[4], kvShape[4], lseShape[3], slopeShape[1] = {4};
  std::vector<float> slopes{0.5f, 0.25f, 0.125f, 0.0625f};
  attn_tensor tq, tk, tv, to, tl, ts;

  void SetUp() override {
    ASSERT_EQ(attn_runtime_create_with_cache(nullptr, 0, 0, &rt), ATTN_OK);
    int64_t q[4] = {p.B, p.H, p.Lq, p.D}, kv[4] = {p.B, p.Hkv, p.Lkv, p.D},
            l[3] = {p.B, p.H, p.Lq};
    std::copy(q, q + 4, qShape);
    std::copy(kv, kv + 4, kvShape);
    std::copy(l, l + 3, lseShape);
    tq = {p.q.data(), ATTN_F32, 4, qShape, nullptr};
    tk = {p.k.data(), ATTN_F32, 4, kvShape, nullptr};
    tv = {p.v.data(), ATTN_F32, 4, kvShape, nullptr};
    to = {p.o.data(), ATTN_F32, 4, qShape, nullptr};
    tl = {p.lse.data(), ATTN_F32, 3, lseShape, nullptr};
    ts = {slopes.data(), ATTN_F32, 1, slopeShape, nullptr};
  }
  void TearDown() override { attn_runtime_destroy(rt); }

  attn_kernel *compile(const char *src,
                       const attn_compile_options *o = nullptr) {
    attn_kernel *k = nullptr;
    EXPECT_EQ(attn_compile(rt, src, o, &k), ATTN_OK) << lastError();
    return k;
  }
};

TEST_F(CApiTest, CompileAndRunMatchesFloat64) {
  attn_kernel *k = compile(kAlibi);
  ASSERT_NE(k, nullptr);
  EXPECT_STREQ(attn_kernel_name(k), "alibi");
  EXPECT_STREQ(attn_kernel_normalization(k), "softmax");
  EXPECT_EQ(std::string(attn_kernel_key(k)).size(), 64u);
  EXPECT_EQ(attn_kernel_dtype(k), ATTN_F32);
  EXPECT_EQ(attn_kernel_defines_lse(k), 1);

  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, &tl), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensor(args, "slopes", &ts), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_threads(args, 2), ATTN_OK);
  ASSERT_EQ(attn_kernel_run(k, args), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");
  EXPECT_LT(p.maxError(
                [&](double s, int64_t, int64_t h, int64_t i, int64_t j) {
                  return s + double(slopes[h]) * double(j - i);
                },
                [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; }),
            1e-4);
  attn_run_args_destroy(args);
  attn_kernel_release(k);

  attn_cache_stats stats;
  ASSERT_EQ(attn_runtime_stats(rt, &stats), ATTN_OK);
  EXPECT_EQ(stats.compiles, 1u);
}

TEST_F(CApiTest, BackwardRunMatchesFloat64) {
  // The forward saves the LSE as row statistics, the backward kernel reads
  // them; dQ, dK, dV and dslopes against the float64 reference.
  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_head_dims(o, 8, 8), ATTN_OK);
  attn_kernel *fwd = compile(kAlibi, o);
  ASSERT_EQ(attn_compile_options_set_backward(o, 1), ATTN_OK);
  attn_kernel *bwd = compile(kAlibi, o);
  ASSERT_NE(fwd, nullptr);
  ASSERT_NE(bwd, nullptr);
  EXPECT_EQ(attn_kernel_is_backward(fwd), 0);
  EXPECT_EQ(attn_kernel_is_backward(bwd), 1);
  EXPECT_EQ(attn_kernel_has_row_stats(bwd), 1);

  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_run_args_set_row_stats(args, &tl), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensor(args, "slopes", &ts), ATTN_OK);
  ASSERT_EQ(attn_kernel_run(fwd, args), ATTN_OK) << lastError();

  std::vector<float> dO(p.o.size()), dq(p.q.size(), NAN), dk(p.k.size(), NAN),
      dv(p.v.size(), NAN), ds(4, NAN);
  std::mt19937 rng(baseSeed() + 5);
  std::normal_distribution<float> normal;
  for (float &x : dO)
    x = normal(rng);
  attn_tensor tdo = {dO.data(), ATTN_F32, 4, qShape, nullptr};
  attn_tensor tdq = {dq.data(), ATTN_F32, 4, qShape, nullptr};
  attn_tensor tdk = {dk.data(), ATTN_F32, 4, kvShape, nullptr};
  attn_tensor tdv = {dv.data(), ATTN_F32, 4, kvShape, nullptr};
  attn_tensor tds = {ds.data(), ATTN_F32, 1, slopeShape, nullptr};
  attn_backward_args *b = nullptr;
  ASSERT_EQ(attn_backward_args_create(&b), ATTN_OK);
  ASSERT_EQ(attn_backward_args_set_tensors(b, &tq, &tk, &tv, &to, &tdo, &tl),
            ATTN_OK);
  ASSERT_EQ(attn_backward_args_set_grads(b, &tdq, &tdk, &tdv), ATTN_OK);
  ASSERT_EQ(attn_backward_args_set_tensor(b, "slopes", &ts), ATTN_OK);
  ASSERT_EQ(attn_backward_args_set_param_grad(b, "slopes", &tds), ATTN_OK);
  ASSERT_EQ(attn_backward_args_set_threads(b, 2), ATTN_OK);
  ASSERT_EQ(attn_kernel_run_backward(bwd, b), ATTN_OK) << lastError();
  BackwardReference ref(
      p, dO, slopes,
      [](int64_t, int64_t i, int64_t j) { return double(j - i); },
      [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; });
  EXPECT_LT(BackwardReference::relError(dq, ref.dq), 1e-4);
  EXPECT_LT(BackwardReference::relError(dk, ref.dk), 1e-4);
  EXPECT_LT(BackwardReference::relError(dv, ref.dv), 1e-4);
  EXPECT_LT(BackwardReference::relError(ds, ref.dw), 1e-4);

  // Errors: a dO not of O's shape, a forward kernel, null pointers.
  attn_tensor bad = tdo;
  bad.shape = kvShape;
  bad.rank = 3;
  ASSERT_EQ(attn_backward_args_set_tensors(b, &tq, &tk, &tv, &to, &bad, &tl),
            ATTN_OK);
  EXPECT_EQ(attn_kernel_run_backward(bwd, b), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("dO"), std::string::npos) << lastError();
  ASSERT_EQ(attn_backward_args_set_tensors(b, &tq, &tk, &tv, &to, &tdo, &tl),
            ATTN_OK);
  EXPECT_EQ(attn_kernel_run_backward(fwd, b), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("forward"), std::string::npos) << lastError();
  EXPECT_EQ(attn_kernel_run_backward(nullptr, b), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_kernel_run_backward(bwd, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_backward_args_set_grads(b, nullptr, &tdk, &tdv),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_backward_args_set_threads(b, -1), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_backward(nullptr, 1),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_backward_args_create(nullptr), ATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(attn_backward_args_clear_params(b), ATTN_OK);
  EXPECT_EQ(attn_kernel_run_backward(bwd, b), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("slopes"), std::string::npos) << lastError();

  attn_backward_args_destroy(b);
  attn_run_args_destroy(args);
  attn_compile_options_destroy(o);
  attn_kernel_release(fwd);
  attn_kernel_release(bwd);
}

TEST_F(CApiTest, OptionsAndTiledKernel) {
  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_variant(o, "b"), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_head_dims(o, 8, 8), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_tiling(o, ATTN_TILING_FIXED, 16, 16),
            ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_const(o, "c", 2.0), ATTN_OK);
  attn_kernel *k =
      compile("attention a {} attention b { const param c: f32 = 1.0; "
              "score = score * c; mask = kv_idx <= q_idx; }",
              o);
  ASSERT_NE(k, nullptr);
  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, &tl), ATTN_OK);
  ASSERT_EQ(attn_kernel_run(k, args), ATTN_OK) << lastError();
  EXPECT_LT(
      p.maxError(
          [](double s, int64_t, int64_t, int64_t, int64_t) { return 2 * s; },
          [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; }),
      1e-4);
  // A kernel specialised for D = 8 refuses D = 4.
  int64_t smallQ[4] = {1, 4, 23, 4}, smallKV[4] = {1, 2, 23, 4};
  attn_tensor sq = {p.q.data(), ATTN_F32, 4, smallQ, nullptr};
  attn_tensor sk = {p.k.data(), ATTN_F32, 4, smallKV, nullptr};
  ASSERT_EQ(attn_run_args_set_tensors(args, &sq, &sk, &tv, &to, nullptr),
            ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT);
  attn_run_args_destroy(args);
  attn_kernel_release(k);
  attn_compile_options_destroy(o);
}

TEST_F(CApiTest, ParamInfo) {
  attn_kernel *k = compile("attention g { const param cap: f32 = 50.0; "
                           "param slopes: f32[H]; param w: i32 = 3; "
                           "score = cap * tanh(score / cap) + slopes[h]; "
                           "mask = q_idx - kv_idx < w; }");
  ASSERT_EQ(attn_kernel_num_params(k), 3u);
  attn_param_info info;
  ASSERT_EQ(attn_kernel_param(k, 0, &info), ATTN_OK);
  EXPECT_STREQ(info.name, "cap");
  EXPECT_EQ(info.is_const, 1);
  EXPECT_EQ(info.has_value, 1);
  EXPECT_EQ(info.value, 50.0);
  ASSERT_EQ(attn_kernel_param(k, 1, &info), ATTN_OK);
  EXPECT_STREQ(info.name, "slopes");
  EXPECT_EQ(info.is_tensor, 1);
  EXPECT_EQ(info.rank, 1);
  EXPECT_EQ(info.dims[0].kind, ATTN_DIM_SIZE);
  EXPECT_EQ(info.dims[0].value, ATTN_SIZE_H);
  EXPECT_STREQ(info.declared_type, "f32[H]");
  ASSERT_EQ(attn_kernel_param(k, 2, &info), ATTN_OK);
  EXPECT_EQ(info.dtype, ATTN_I32);
  EXPECT_EQ(info.value, 3.0);
  EXPECT_EQ(attn_kernel_param(k, 3, &info), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("index 3 is out of range"), std::string::npos);
  attn_kernel_release(k);
}

TEST_F(CApiTest, NullPointers) {
  attn_kernel *k = nullptr;
  EXPECT_EQ(attn_compile(rt, nullptr, nullptr, &k),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(lastError(), "attn_compile: source is null");
  EXPECT_EQ(attn_compile(rt, kAlibi, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_file(rt, nullptr, nullptr, &k),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_kernel_run(nullptr, nullptr), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(lastError(), "attn_kernel_run: kernel is null");
  EXPECT_EQ(attn_runtime_stats(rt, nullptr), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_dtype(nullptr, ATTN_F32),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_kernel_name(nullptr), nullptr);
  EXPECT_EQ(attn_kernel_num_params(nullptr), 0u);
  attn_kernel_release(nullptr);
  attn_run_args_destroy(nullptr);
  attn_compile_options_destroy(nullptr);
  attn_runtime_destroy(nullptr);

  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  EXPECT_EQ(attn_run_args_set_tensors(args, &tq, nullptr, &tv, &to, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(lastError(), "attn_run_args_set_tensors: K is null");
  EXPECT_EQ(attn_run_args_set_scalar(args, nullptr, 1.0),
            ATTN_ERROR_INVALID_ARGUMENT);
  attn_tensor noShape = {p.q.data(), ATTN_F32, 4, nullptr, nullptr};
  EXPECT_EQ(attn_run_args_set_tensors(args, &noShape, &tk, &tv, &to, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("null shape"), std::string::npos);
  attn_tensor badType = tq;
  badType.dtype = static_cast<attn_dtype>(42);
  EXPECT_EQ(attn_run_args_set_tensors(args, &badType, &tk, &tv, &to, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("unknown dtype code 42"), std::string::npos);

  // A null data pointer is caught by the run.
  attn_kernel *kernel = compile(kAlibi);
  attn_tensor nullData = tq;
  nullData.data = nullptr;
  ASSERT_EQ(attn_run_args_set_tensors(args, &nullData, &tk, &tv, &to, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensor(args, "slopes", &ts), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(kernel, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(lastError(), "Q has a null data pointer");
  attn_kernel_release(kernel);
  attn_run_args_destroy(args);
}

TEST_F(CApiTest, CompileErrors) {
  attn_kernel *k = nullptr;
  EXPECT_EQ(
      attn_compile(rt, "attention a {\n  score = score + ;\n}", nullptr, &k),
      ATTN_ERROR_COMPILE);
  EXPECT_EQ(k, nullptr);
  std::string msg = lastError();
  EXPECT_NE(msg.find("<source>:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("error:"), std::string::npos) << msg;

  EXPECT_EQ(attn_compile_file(rt, "/no/such.attn", nullptr, &k), ATTN_ERROR_IO);
  EXPECT_NE(lastError().find("cannot read '/no/such.attn'"), std::string::npos);

  attn_compile_options *o = nullptr;
  ASSERT_EQ(attn_compile_options_create(&o), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_target(o, ATTN_TARGET_NVPTX), ATTN_OK);
  EXPECT_EQ(attn_compile(rt, kAlibi, o, &k), ATTN_ERROR_UNAVAILABLE);
  msg = lastError();
  EXPECT_TRUE(msg.find("no CUDA driver found") != std::string::npos ||
              msg.find("nvptx target is not available") != std::string::npos)
      << msg;
  EXPECT_EQ(attn_compile_options_set_target(o, static_cast<attn_target>(9)),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_compile_options_set_dtype(o, ATTN_I32),
            ATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(attn_compile_options_set_target(o, ATTN_TARGET_CPU), ATTN_OK);
  ASSERT_EQ(attn_compile_options_set_variant(o, "nope"), ATTN_OK);
  EXPECT_EQ(attn_compile(rt, kAlibi, o, &k), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("no attention block named 'nope'"),
            std::string::npos);
  attn_compile_options_destroy(o);
  EXPECT_STREQ(attn_status_name(ATTN_ERROR_UNAVAILABLE), "unavailable");
}

TEST_F(CApiTest, RunErrors) {
  attn_kernel *k = compile(kAlibi);
  attn_run_args *args = nullptr;
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  // Wrong shapes: K's head dim.
  int64_t badKV[4] = {1, 2, 23, 4};
  attn_tensor bk = {p.k.data(), ATTN_F32, 4, badKV, nullptr};
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &bk, &tv, &to, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensor(args, "slopes", &ts), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("Q and K must have the same head dimension D"),
            std::string::npos)
      << lastError();
  // Unknown param.
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_run_args_set_scalar(args, "slope", 1.0), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("unknown param 'slope'"), std::string::npos);
  ASSERT_EQ(attn_run_args_clear_params(args), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("missing tensor param 'slopes'"),
            std::string::npos);
  // A CUDA stream for a CPU kernel; a negative thread count.
  ASSERT_EQ(attn_run_args_set_tensor(args, "slopes", &ts), ATTN_OK);
  ASSERT_EQ(attn_run_args_set_stream(args, &args), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(attn_run_args_set_threads(args, -1), ATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(attn_run_args_set_stream(args, nullptr), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(k, args), ATTN_OK) << lastError();
  attn_run_args_destroy(args);
  attn_kernel_release(k);

  // An error the kernel reports.
  attn_kernel *t = compile("attention t { param bias: f32[2]; "
                           "score = score + bias[kv_idx]; }");
  ASSERT_EQ(attn_run_args_create(&args), ATTN_OK);
  int64_t two[1] = {2};
  attn_tensor tb = {slopes.data(), ATTN_F32, 1, two, nullptr};
  ASSERT_EQ(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, nullptr),
            ATTN_OK);
  ASSERT_EQ(attn_run_args_set_tensor(args, "bias", &tb), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(t, args), ATTN_ERROR_KERNEL);
  EXPECT_NE(lastError().find("read param 'bias' out of range"),
            std::string::npos)
      << lastError();
  // CPU kernels ignore async: the run still finishes and reports the error
  // itself, and there is nothing left for synchronize to report.
  EXPECT_EQ(attn_run_args_set_async(nullptr, 1), ATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(attn_run_args_set_async(args, 1), ATTN_OK);
  EXPECT_EQ(attn_kernel_run(t, args), ATTN_ERROR_KERNEL);
  EXPECT_NE(lastError().find("read param 'bias' out of range"),
            std::string::npos)
      << lastError();
  EXPECT_EQ(attn_kernel_synchronize(t), ATTN_OK) << lastError();
  EXPECT_EQ(attn_kernel_synchronize(nullptr), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("attn_kernel_synchronize"), std::string::npos)
      << lastError();
  attn_run_args_destroy(args);
  attn_kernel_release(t);
}

TEST_F(CApiTest, GlobalRuntimeAndVersion) {
  // ATTN_CACHE=0 in the tests' environment: the global runtime is memory-only.
  attn_kernel *k = nullptr;
  ASSERT_EQ(attn_compile(nullptr, kAlibi, nullptr, &k), ATTN_OK) << lastError();
  attn_kernel_release(k);
  EXPECT_EQ(std::string(attn_version()).rfind("attnc ", 0), 0u);
}

} // namespace
