//===- LaunchTest.cpp - Signature text and the AOT launcher ---------------===//
//
// The MLIR-free pieces that cache entries and ahead-of-time programs rely
// on: the signature text and the GPU kernel plan's round-trip exactly and
// reject damaged text with a line number; attn_launch refuses bad descriptions
// and arguments with a status and a message, calling the kernel only when
// everything checks.
//
//===----------------------------------------------------------------------===//

#include "attn/attn_launch.h"

#include "attnc/ABI/GpuKernelPlan.h"
#include "attnc/Target/KernelLaunch.h"
#include "attnc/Target/Signature.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

using namespace attnc;

namespace {

KernelSignature sample() {
  KernelSignature sig;
  sig.name = "g";
  sig.normalization = "softmax";
  sig.hasSink = true;
  SignatureParam cap;
  cap.name = "cap";
  cap.isConst = true;
  cap.value = 0.1; // not exact in decimal: the text must keep every bit
  SignatureParam win;
  win.name = "window";
  win.type = ParamType::I32;
  win.value = -4096;
  SignatureParam blocks;
  blocks.name = "blocks";
  blocks.type = ParamType::Bool;
  blocks.isTensor = true;
  SignatureDim d0, d1, d2;
  d0.kind = SignatureDim::Kind::Dynamic;
  d1.kind = SignatureDim::Kind::Literal;
  d1.value = 64;
  d2.kind = SignatureDim::Kind::Size;
  d2.size = 4; // Lkv
  blocks.dims = {d0, d1, d2};
  sig.params = {cap, win, blocks};
  return sig;
}

TEST(SignatureText, RoundTrips) {
  KernelSignature sig = sample();
  std::string text = sig.toText();
  KernelSignature back;
  std::string error;
  ASSERT_TRUE(KernelSignature::fromText(text, back, error)) << error;
  EXPECT_EQ(back.toText(), text);
  EXPECT_EQ(back.name, "g");
  EXPECT_TRUE(back.hasSink);
  ASSERT_EQ(back.params.size(), 3u);
  EXPECT_EQ(*back.params[0].value, 0.1);
  EXPECT_TRUE(back.params[0].isConst);
  EXPECT_EQ(*back.params[1].value, -4096.0);
  EXPECT_EQ(declaredType(back.params[2]), "bool[?, 64, Lkv]");
  EXPECT_FALSE(back.params[2].value.has_value());
}

TEST(SignatureText, RejectsDamage) {
  std::string text = sample().toText();
  struct Case {
    std::string text, message;
  } cases[] = {
      {"", "empty text"},
      {"attn-signature 2\n", "line 1: expected 'attn-signature 1'"},
      {text.substr(0, text.size() - 4), "truncated"},
      {text + "name h\n", "text after 'end'"},
      {"attn-signature 1\nname 9x\n", "line 2: unexpected 'name'"},
      {"attn-signature 1\nname a\nnormalization soft\n",
       "line 3: unexpected 'normalization'"},
      {"attn-signature 1\nparam p f64 runtime scalar 0 none\n",
       "unknown param type 'f64'"},
      {"attn-signature 1\nparam p f32 runtime tensor 2 H none\n",
       "bad rank or dimension count"},
      {"attn-signature 1\nparam p f32 runtime tensor 1 Q none\n",
       "unknown dimension 'Q'"},
      {"attn-signature 1\nparam p f32 runtime scalar 0 12\n", "bad value '12'"},
      {"attn-signature 1\nparam p f32 runtime scalar 0 none\n"
       "param p f32 runtime scalar 0 none\n",
       "param 'p' appears twice"},
  };
  for (const Case &c : cases) {
    KernelSignature out;
    std::string error;
    EXPECT_FALSE(KernelSignature::fromText(c.text, out, error)) << c.text;
    EXPECT_NE(error.find(c.message), std::string::npos)
        << "got: " << error << "\nwanted: " << c.message;
    EXPECT_EQ(error.rfind("malformed kernel signature, line ", 0), 0u);
  }
}

GpuKernelPlan samplePlan() {
  GpuKernelPlan p;
  p.kind = GpuKernelKind::Wgmma;
  p.elementType = DType::BF16;
  p.headDim = 128;
  p.valueDim = 64;
  p.chip = "sm_90a";
  p.rowsPerBlock = 128;
  p.threadsPerBlock = 256;
  p.warps = 8;
  p.mTiles = 1;
  p.tileKV = 128;
  p.kvStages = 2;
  p.summaryTables = 1;
  p.sharedBytes = 165000;
  p.marks.present = true;
  p.marks.perHead = true;
  p.marks.words = 34;
  p.marks.sharedBytes = 4232;
  p.dependentLaunch = true;
  p.whyKind = "auto: Hopper";
  p.whyPersistent = "not asked";
  p.whyMarks = "a data-dependent mask";
  return p;
}

TEST(GpuKernelPlanText, RoundTrips) {
  GpuKernelPlan plan = samplePlan();
  std::string text = plan.toText();
  EXPECT_EQ(text.rfind("attn-gpu-plan 1\nkind wgmma\nelement bf16\n", 0), 0u)
      << text;
  GpuKernelPlan back;
  std::string error;
  ASSERT_TRUE(GpuKernelPlan::fromText(text, back, error)) << error;
  EXPECT_EQ(back.toText(), text);
  EXPECT_EQ(back.kind, GpuKernelKind::Wgmma);
  EXPECT_EQ(back.elementType, DType::BF16);
  EXPECT_EQ(back.valueDim, 64);
  EXPECT_EQ(back.chip, "sm_90a");
  EXPECT_EQ(back.sharedBytes, 165000);
  EXPECT_TRUE(back.marks.present && back.marks.perHead && !back.marks.perBatch);
  EXPECT_EQ(back.marks.sharedBytes, 4232);
  EXPECT_TRUE(back.dependentLaunch);
  EXPECT_EQ(back.whyMarks, "a data-dependent mask");
  EXPECT_NE(back.describe().find("mark kernel       yes"), std::string::npos);
}

TEST(GpuKernelPlanText, RejectsDamage) {
  std::string text = samplePlan().toText();
  auto replaced = [&](const std::string &from, const std::string &to) {
    std::string t = text;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  struct Case {
    std::string text, message;
  } cases[] = {
      {"", "not a GPU kernel plan of this version"},
      {replaced("attn-gpu-plan 1", "attn-gpu-plan 2"),
       "not a GPU kernel plan of this version"},
      {text.substr(0, text.size() - 4), "lines, expected"},
      {replaced("kind wgmma", "kind tensor"), "line 2 "},
      {replaced("element bf16", "element f64"), "line 3 "},
      {replaced("head-dims 128 64", "head-dims 128"), "line 4 "},
      {replaced("block 128 256", "block 128 4096"), "line 6 "},
      {replaced("shared-bytes 165000", "shared-bytes 999999"), "line 10 "},
      {replaced("persistent 0", "persistent 2"), "line 11 "},
      {replaced("persistent 0", "persistent 1"), "with a persistent kernel"},
      {replaced("marks 1 0 1 34", "marks 1 0 1 34 x"), "line 12 "},
      {replaced("dependent-launch 1", "launch 1"),
       "expected 'dependent-launch"},
  };
  for (const Case &c : cases) {
    GpuKernelPlan out;
    std::string error;
    EXPECT_FALSE(GpuKernelPlan::fromText(c.text, out, error)) << c.text;
    EXPECT_NE(error.find(c.message), std::string::npos)
        << "got: " << error << "\nwanted: " << c.message;
  }
}

// The flag word of a packed call (the argument before the status memref's
// five: two pointers, offset, size, stride). B = 1, H = 2, L = 2, D = 16.
int32_t packedFlags(const TensorView &o, bool withLse) {
  KernelSignature sig;
  sig.name = "k";
  sig.normalization = "softmax";
  alignas(16) static uint16_t qkv[2 * 2 * 16];
  alignas(16) static float lse[2 * 2];
  RunArgs a;
  a.q = a.k = a.v = TensorView::contiguous(qkv, DType::F16, {1, 2, 2, 16});
  a.o = o;
  if (withLse)
    a.lse = TensorView::contiguous(lse, DType::F32, {1, 2, 2});
  PackedKernelArgs packed;
  std::string error;
  EXPECT_TRUE(packKernelArgs(sig, DType::F16, a, packed, error)) << error;
  // The ABI position and the pointer the launchers use agree.
  EXPECT_EQ(packed.flags, packed.args[packed.args.size() - 6]);
  return *packed.flags;
}

// kFlagVectorO is set exactly when O can be written in aligned 16-byte
// vectors: unit inner stride, 16-byte aligned data, every stride that is
// ever stepped a multiple of 16 bytes. The tensor-core GPU kernel relies on
// it.
TEST(Launcher, VectorOFlag) {
  alignas(16) static uint16_t o[2 * 2 * 2 * 16];
  TensorView view = TensorView::contiguous(o, DType::F16, {1, 2, 2, 16});
  EXPECT_EQ(packedFlags(view, false), kFlagVectorO);
  EXPECT_EQ(packedFlags(view, true), kFlagVectorO | kFlagWriteLSE);
  // [B, L, H, D] memory seen as [B, H, L, D]: strides of whole 16 bytes.
  TensorView permuted = view;
  permuted.strides = {64, 16, 32, 1};
  EXPECT_EQ(packedFlags(permuted, false), kFlagVectorO);
  // B = 1: its stride is never stepped, whatever it is.
  TensorView oneBatch = view;
  oneBatch.strides = {3, 32, 16, 1};
  EXPECT_EQ(packedFlags(oneBatch, false), kFlagVectorO);
  TensorView shifted = view;
  shifted.data = o + 1; // 2-byte aligned only
  EXPECT_EQ(packedFlags(shifted, true), kFlagWriteLSE);
  TensorView oddRows = view;
  oddRows.strides = {68, 34, 17, 1}; // rows 34 bytes apart
  EXPECT_EQ(packedFlags(oddRows, false), 0);
  TensorView oddHeads = view;
  oddHeads.strides = {72, 36, 16, 1}; // heads 72 bytes apart
  EXPECT_EQ(packedFlags(oddHeads, false), 0);
  TensorView columns = view;
  columns.strides = {64, 32, 1, 2}; // inner stride 2
  EXPECT_EQ(packedFlags(columns, false), 0);
}

int calls = 0;
void fakeKernel(void **) { ++calls; }

TEST(Launcher, ChecksBeforeCalling) {
  KernelSignature sig;
  sig.name = "k";
  sig.normalization = "softmax";
  std::string text = sig.toText();
  float q[2 * 4] = {}, o[2 * 4] = {};
  const int64_t shape[4] = {1, 1, 2, 4};
  attn_tensor tq = {q, ATTN_F32, 4, shape, nullptr};
  attn_tensor to = {o, ATTN_F32, 4, shape, nullptr};
  char err[128];

  calls = 0;
  EXPECT_EQ(attn_launch(text.c_str(), "reference", 0, ATTN_F32, fakeKernel, &tq,
                        &tq, &tq, &to, nullptr, nullptr, 0, err, sizeof err),
            ATTN_OK);
  EXPECT_EQ(calls, 1);
  EXPECT_STREQ(err, "");

  EXPECT_EQ(attn_launch(text.c_str(), "tiled tile_q=0", 0, ATTN_F32, fakeKernel,
                        &tq, &tq, &tq, &to, nullptr, nullptr, 0, err,
                        sizeof err),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(err, "malformed kernel description"), nullptr);
  // A description without abi= (an older attnc) or with another one is
  // refused before the kernel is called.
  int before = calls;
  for (const char *spec :
       {"tiled tile_q=64 d=4 dv=4", "tiled abi=1 tile_q=64 d=4 dv=4",
        "tiled abi=99 tile_q=64 d=4 dv=4"}) {
    EXPECT_EQ(attn_launch(text.c_str(), spec, 0, ATTN_F32, fakeKernel, &tq, &tq,
                          &tq, &to, nullptr, nullptr, 0, err, sizeof err),
              ATTN_ERROR_INVALID_ARGUMENT)
        << spec;
    EXPECT_NE(std::strstr(err, "built by another attnc"), nullptr) << err;
  }
  EXPECT_EQ(calls, before);
  EXPECT_EQ(attn_launch("garbage", "reference", 0, ATTN_F32, fakeKernel, &tq,
                        &tq, &tq, &to, nullptr, nullptr, 0, err, sizeof err),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(err, "malformed kernel signature"), nullptr);
  EXPECT_EQ(attn_launch(text.c_str(), "reference", 0, ATTN_F32, fakeKernel, &tq,
                        nullptr, &tq, &to, nullptr, nullptr, 0, err,
                        sizeof err),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(err, "K is a null tensor pointer");
  attn_param_arg extra = {"nope", nullptr, 1.0};
  EXPECT_EQ(attn_launch(text.c_str(), "reference", 0, ATTN_F32, fakeKernel, &tq,
                        &tq, &tq, &to, nullptr, &extra, 1, err, sizeof err),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(err, "unknown param 'nope'"), nullptr);
  // F16 kernel, F32 tensors; a tiny error buffer is cut, not overrun.
  char tiny[8];
  std::memset(tiny, 'x', sizeof tiny);
  EXPECT_EQ(attn_launch(text.c_str(), "reference", 0, ATTN_F16, fakeKernel, &tq,
                        &tq, &tq, &to, nullptr, nullptr, 0, tiny, sizeof tiny),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(tiny, "this ke");
  EXPECT_EQ(attn_launch(text.c_str(), "reference", 0, ATTN_F16, fakeKernel, &tq,
                        &tq, &tq, &to, nullptr, nullptr, 0, nullptr, 0),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(calls, 1); // never called on a failed check
}

} // namespace
