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

#include <dirent.h>
#include <fcntl.h>
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

} // namespace
