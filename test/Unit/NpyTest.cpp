//===- NpyTest.cpp - Tests of the .npy reader and writer ------------------===//
//
// Round trips of every dtype and shape class through a real file, NumPy's own
// header spellings (versions 1.0-3.0, Python 2 longs, odd whitespace), and one
// test per error class of the reader, checking the one-line message.
//
//===----------------------------------------------------------------------===//

#include "attnc/Support/Npy.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>

using namespace attnc;

namespace {

/// A per-test scratch directory under $TMPDIR, removed afterwards.
class NpyFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    const char *tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/npytest.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    dir = buf.data();
  }
  void TearDown() override {
    for (const std::string &f : files)
      std::remove(f.c_str());
    rmdir(dir.c_str());
  }
  std::string path(const std::string &name) {
    files.push_back(dir + "/" + name);
    return files.back();
  }
  std::string dir;
  std::vector<std::string> files;
};

NpyArray makeArray(DType dtype, std::vector<int64_t> shape, unsigned seed) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.data.resize(static_cast<size_t>(a.numel() * dtypeSize(dtype)));
  std::mt19937 rng(seed);
  for (uint8_t &b : a.data)
    b = dtype == DType::Bool ? rng() & 1 : static_cast<uint8_t>(rng());
  return a;
}

/// A .npy image with the given version and header dict text, padded like
/// NumPy does, followed by `data`.
std::vector<uint8_t> image(const std::string &dict, const std::string &data,
                           int major = 1) {
  std::string h = dict + "\n";
  std::string s = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  int lenBytes = major == 1 ? 2 : 4;
  for (int i = 0; i < lenBytes; ++i)
    s += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  s += h + data;
  return {s.begin(), s.end()};
}

std::string parseError(const std::vector<uint8_t> &bytes) {
  NpyArray a;
  std::string error;
  EXPECT_FALSE(parseNpy("Q.npy", bytes.data(), bytes.size(), a, error));
  return error;
}

TEST(Npy, DTypeNames) {
  EXPECT_STREQ(dtypeName(DType::F32), "float32");
  EXPECT_STREQ(dtypeName(DType::F16), "float16");
  EXPECT_STREQ(dtypeName(DType::I32), "int32");
  EXPECT_STREQ(dtypeName(DType::Bool), "bool");
  EXPECT_EQ(formatShape({}), "()");
  EXPECT_EQ(formatShape({3}), "(3,)");
  EXPECT_EQ(formatShape({2, 0, 4}), "(2, 0, 4)");
}

TEST_F(NpyFileTest, RoundTripEveryDTypeAndShape) {
  const std::vector<std::vector<int64_t>> shapes = {
      {}, {0}, {1}, {7}, {2, 3}, {2, 0, 5}, {1, 4, 3, 5}};
  unsigned seed = 0;
  for (DType dt : {DType::F32, DType::F16, DType::I32, DType::Bool}) {
    for (const auto &shape : shapes) {
      NpyArray a = makeArray(dt, shape, ++seed), b;
      std::string p = path("a" + std::to_string(seed) + ".npy"), error;
      ASSERT_TRUE(writeNpy(p, a, error)) << error;
      ASSERT_TRUE(readNpy(p, b, error)) << error;
      EXPECT_EQ(b.dtype, a.dtype);
      EXPECT_EQ(b.shape, a.shape);
      EXPECT_EQ(b.data, a.data);
      EXPECT_EQ(b.numel(), a.numel());
    }
  }
}

TEST(Npy, WriterHeaderIsNumPyStyleAndAligned) {
  NpyArray a = makeArray(DType::F32, {2, 3}, 1);
  std::vector<uint8_t> bytes;
  std::string error;
  ASSERT_TRUE(serializeNpy(a, bytes, error)) << error;
  ASSERT_GE(bytes.size(), 64u);
  EXPECT_EQ(std::memcmp(bytes.data(), "\x93NUMPY\x01\x00", 8), 0);
  size_t hlen = bytes[8] | (bytes[9] << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_EQ(bytes[10 + hlen - 1], '\n');
  std::string dict(bytes.begin() + 10, bytes.begin() + 10 + hlen);
  EXPECT_EQ(dict.rfind("{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (2, 3), }",
                       0),
            0u);
  EXPECT_EQ(bytes.size(), 10 + hlen + 24);

  NpyArray bad = a;
  bad.data.pop_back();
  EXPECT_FALSE(serializeNpy(bad, bytes, error));
  EXPECT_NE(error.find("needs 24 bytes of data, has 23"), std::string::npos);
}

TEST(Npy, AcceptsNumPyHeaderVariants) {
  NpyArray a;
  std::string error, data(12, '\0');
  for (int major : {1, 2, 3}) {
    auto img = image("{'descr': '<i4', 'fortran_order': False, 'shape': "
                     "(3,), }",
                     data, major);
    ASSERT_TRUE(parseNpy("x", img.data(), img.size(), a, error)) << error;
    EXPECT_EQ(a.dtype, DType::I32);
    EXPECT_EQ(a.shape, std::vector<int64_t>{3});
  }
  // Key order, double quotes, no trailing comma, Python 2 longs, '=' order.
  auto img = image("{\"shape\": (1L, 3L), \"fortran_order\": False,"
                   "\"descr\": \"=f4\"}",
                   data);
  ASSERT_TRUE(parseNpy("x", img.data(), img.size(), a, error)) << error;
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 3}));
  // Fortran order is harmless when at most one extent exceeds 1.
  img =
      image("{'descr': '<f2', 'fortran_order': True, 'shape': (1, 6), }", data);
  ASSERT_TRUE(parseNpy("x", img.data(), img.size(), a, error)) << error;
  // Bool bytes are normalised to 0/1.
  img = image("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }",
              std::string("\x00\x07", 2));
  ASSERT_TRUE(parseNpy("x", img.data(), img.size(), a, error)) << error;
  EXPECT_EQ(a.data, (std::vector<uint8_t>{0, 1}));
}

TEST(Npy, BadMagic) {
  EXPECT_EQ(parseError({'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}),
            "Q.npy: not a .npy file (bad magic)");
  EXPECT_EQ(parseError({}), "Q.npy: not a .npy file (bad magic)");
}

TEST(Npy, UnsupportedVersion) {
  auto img = image("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                   "abcd", 4);
  EXPECT_EQ(parseError(img), "Q.npy: unsupported .npy format version 4.0 "
                             "(expected 1.0, 2.0 or 3.0)");
}

TEST(Npy, TruncatedHeader) {
  auto img =
      image("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", "abcd");
  for (size_t n : {9u, 20u, 60u}) {
    std::vector<uint8_t> cut(img.begin(), img.begin() + n);
    EXPECT_EQ(parseError(cut), "Q.npy: file is truncated (incomplete header)");
  }
}

TEST(Npy, TruncatedDataAndTrailingBytes) {
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 32), }";
  EXPECT_EQ(parseError(image(dict, std::string(100, 'x'))),
            "Q.npy: file is truncated (expected 4096 bytes of data, found "
            "100)");
  EXPECT_EQ(parseError(image(dict, std::string(4099, 'x'))),
            "Q.npy: unexpected 3 bytes after the array data (shape (32, 32) "
            "of float32)");
}

TEST(Npy, FortranOrder) {
  EXPECT_EQ(parseError(image("{'descr': '<f4', 'fortran_order': True, "
                             "'shape': (2, 3), }",
                             std::string(24, '\0'))),
            "Q.npy: Fortran-order arrays are not supported");
}

TEST(Npy, UnsupportedDTypes) {
  auto withDescr = [](const std::string &descr) {
    return parseError(image("{'descr': '" + descr +
                                "', 'fortran_order': False, 'shape': (), }",
                            std::string(8, '\0')));
  };
  EXPECT_EQ(withDescr("<f8"), "Q.npy: unsupported dtype '<f8' (expected "
                              "float32, float16, int32 or bool)");
  EXPECT_EQ(withDescr("|u1"), "Q.npy: unsupported dtype '|u1' (expected "
                              "float32, float16, int32 or bool)");
  EXPECT_EQ(withDescr("<i8"), "Q.npy: unsupported dtype '<i8' (expected "
                              "float32, float16, int32 or bool)");
  EXPECT_EQ(withDescr(""), "Q.npy: unsupported dtype '' (expected "
                           "float32, float16, int32 or bool)");
  EXPECT_EQ(withDescr(">f4"),
            "Q.npy: big-endian arrays are not supported ('>f4')");
  EXPECT_EQ(parseError(image("{'descr': [('a', '<f4')], 'fortran_order': "
                             "False, 'shape': (), }",
                             "abcd")),
            "Q.npy: structured dtypes are not supported");
}

TEST(Npy, MalformedDicts) {
  const char *dicts[] = {
      "",
      "{",
      "[]",
      "{'descr': '<f4', 'fortran_order': False}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}",
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [3]}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, x)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4",
      "{'descr': '<f4', 'fortran_order': False, 'shape': ()} junk",
      "{'descr: '<f4', 'fortran_order': False, 'shape': ()}",
      "{'descr' '<f4', 'fortran_order': False, 'shape': ()}",
      "{'descr': '<f4' 'fortran_order': False, 'shape': ()}",
      "{'descr': '<\\f4', 'fortran_order': False, 'shape': ()}",
  };
  for (const char *dict : dicts) {
    std::string error = parseError(image(dict, "abcd"));
    EXPECT_EQ(error.rfind("Q.npy: malformed .npy header: ", 0), 0u)
        << dict << " -> " << error;
  }
}

TEST(Npy, AbsurdShapes) {
  auto withShape = [](const std::string &shape) {
    return parseError(image("{'descr': '<f4', 'fortran_order': False, "
                            "'shape': " +
                                shape + ", }",
                            "abcd"));
  };
  EXPECT_EQ(withShape("(99999999999999999999,)"),
            "Q.npy: dimension in shape is too large");
  EXPECT_EQ(withShape("(4611686018427387904,)"),
            "Q.npy: shape (4611686018427387904,) of float32 is too large");
  EXPECT_EQ(withShape("(3037000500, 3037000500)"),
            "Q.npy: shape (3037000500, 3037000500) of float32 is too large");
  // A zero extent does not excuse an absurd one.
  EXPECT_EQ(withShape("(0, 4611686018427387904)"),
            "Q.npy: shape (0, 4611686018427387904) of float32 is too large");
  EXPECT_EQ(withShape("(-1,)"), "Q.npy: negative dimension in shape");
  std::string many = "(";
  for (int i = 0; i < 65; ++i)
    many += "1,";
  EXPECT_EQ(withShape(many + ")"), "Q.npy: shape has more than 64 dimensions");
  // Large but representable: reported as truncation, never allocated.
  EXPECT_EQ(withShape("(1000000000000,)"),
            "Q.npy: file is truncated (expected 4000000000000 bytes of "
            "data, found 4)");
}

TEST(Npy, NeverReadsOutOfBounds) {
  // Every prefix and every single-byte corruption of a valid image is either
  // accepted or rejected with a message; never a crash (run under ASan).
  NpyArray a = makeArray(DType::I32, {2, 3}, 7);
  std::vector<uint8_t> good;
  std::string error;
  ASSERT_TRUE(serializeNpy(a, good, error));
  for (size_t n = 0; n <= good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    NpyArray b;
    bool ok = parseNpy("x", cut.data(), cut.size(), b, error);
    EXPECT_EQ(ok, n == good.size());
    if (!ok) {
      EXPECT_EQ(error.rfind("x: ", 0), 0u);
    }
  }
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bad = good;
    bad[rng() % 80] = static_cast<uint8_t>(rng());
    NpyArray b;
    if (!parseNpy("x", bad.data(), bad.size(), b, error)) {
      EXPECT_FALSE(error.empty());
    } else {
      EXPECT_EQ(b.data.size(),
                static_cast<size_t>(b.numel()) * dtypeSize(b.dtype));
    }
  }
}

TEST_F(NpyFileTest, FileErrors) {
  NpyArray a;
  std::string error;
  std::string missing = dir + "/missing.npy";
  EXPECT_FALSE(readNpy(missing, a, error));
  EXPECT_EQ(error, missing + ": cannot open: No such file or directory");
  EXPECT_FALSE(readNpy(dir, a, error));
  EXPECT_EQ(error, dir + ": cannot open: Is a directory");
  EXPECT_FALSE(
      writeNpy(dir + "/no/such/dir.npy", makeArray(DType::F32, {1}, 1), error));
  EXPECT_EQ(error,
            dir + "/no/such/dir.npy: cannot create: No such file or directory");

  // Truncated data in a real file.
  NpyArray big = makeArray(DType::F16, {4, 8}, 3);
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(serializeNpy(big, bytes, error));
  std::string p = path("cut.npy");
  {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size() - 10));
  }
  EXPECT_FALSE(readNpy(p, a, error));
  EXPECT_EQ(error, p + ": file is truncated (expected 64 bytes of data, "
                       "found 54)");
  {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char *>(bytes.data()), 30);
  }
  EXPECT_FALSE(readNpy(p, a, error));
  EXPECT_EQ(error, p + ": file is truncated (incomplete header)");
}

} // namespace
