//===- CApiFuzzer.cpp - libFuzzer target for libattn's C API --------------===//
//
// Reads the input as a program of C API calls and runs it against the CPU
// target: runtimes (memory-only, on a scratch disk cache, the global one),
// compile options with any values, compiles of a few sources (valid,
// broken, with params), argument builders with random shapes, strides,
// dtypes and params, runs, and handles used after release, released twice
// or passed as another type. Every call must return a status (never
// crash, hang or trip a sanitizer); the tensors it passes are either
// inside buffers this file owns (so a kernel that runs only touches them)
// or out of what libattn accepts (span beyond 2^48 bytes, wrap-around,
// overlapping outputs), which the run must then refuse. Kernels are
// compiled by one runtime kept for the whole run, so each source and
// option set compiles once. Handles left at the end of an input are
// released.
//
//===----------------------------------------------------------------------===//
#include "attn/attn.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

/// The input, read a byte or a value at a time (zeros once it runs out).
struct Input {
  const uint8_t *data;
  size_t size, pos = 0;
  bool done() const { return pos >= size; }
  uint8_t byte() { return pos < size ? data[pos++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v = v << 8 | byte();
    return v;
  }
  int64_t pick(int64_t n) { return n > 0 ? byte() % n : 0; }
};

const char *const kSources[] = {
    "attention dense {}",
    "attention c { mask = causal(); }",
    "attention w { param w: i32 = 8; mask = sliding_window(w); "
    "normalize relu; }",
    "attention alibi { param slopes: f32[H]; score = score + slopes[h] * "
    "f32(kv_idx - q_idx); mask = kv_idx <= q_idx; }",
    "attention d { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; "
    "normalize sigmoid; }",
    "attention k { const param c: f32 = 2.0; param on: bool = true; "
    "score = score * c; mask = !on || causal(); normalize softmax(sink = "
    "0.5); }",
    "attention a {} attention b { mask = causal(); }",
    "attention broken { score = score + ; }",
    "attention t { param t: f32[4]; score = score + t[kv_idx]; }",
    "attention lin { score = 1.0 + score * score; normalize linear; }",
    "",
    "\xff\xfe attention",
};
constexpr int kNumSources = sizeof(kSources) / sizeof(kSources[0]);

const char *const kNames[] = {"w", "slopes", "doc", "on", "c",
                              "t", "nope",   "",    "b",  "a"};

/// Buffers every tensor the fuzzer passes points into.
constexpr size_t kArena = 1 << 16; // elements (of 4 bytes) per buffer
struct Arena {
  std::vector<float> buffers[8];
  Arena() {
    for (auto &b : buffers)
      b.assign(kArena, 0.5f);
  }
};
Arena &arena() {
  static Arena *a = new Arena();
  return *a;
}

/// A tensor description that outlives the call that sets it.
struct TensorSpec {
  int64_t shape[6] = {}, strides[6] = {};
  attn_tensor t = {};
  bool outOfBounds = false; // addresses memory libattn must refuse
};

int64_t elementSize(attn_dtype d) {
  return d == ATTN_F16 || d == ATTN_BF16 ? 2 : d == ATTN_BOOL ? 1 : 4;
}

/// Shape and strides from the input. Strides are either chosen to fit the
/// arena (the usual case) or deliberately beyond what libattn accepts.
void makeTensor(Input &in, TensorSpec &spec, int32_t rank,
                const int64_t *wanted, attn_dtype dtype, int buffer,
                bool output) {
  // `wanted` holds `rank` sizes (the rank may change below).
  int32_t wantedRank = rank;
  spec = TensorSpec();
  uint8_t how = in.byte();
  if (how % 16 == 0)
    rank = static_cast<int32_t>(in.pick(7)) - 1; // a wrong (or bad) rank
  for (int i = 0; i < std::max(rank, 0) && i < 6; ++i) {
    spec.shape[i] = wanted && i < wantedRank ? wanted[i] : in.pick(5);
    if (how % 8 == 1 && in.pick(4) == 0)
      spec.shape[i] = in.pick(70); // another size
  }
  spec.t.dtype = how % 32 == 2 ? static_cast<attn_dtype>(in.pick(7)) : dtype;
  spec.t.rank = rank;
  spec.t.shape = spec.shape;
  int64_t elem = elementSize(spec.t.dtype);
  int n = std::min(std::max(rank, 0), 6);
  uint8_t kind = in.byte() % 8;
  if (kind < 3) { // contiguous (NULL strides)
    spec.t.strides = nullptr;
  } else {
    // Contiguous, then edited: broadcast (0), negative, or huge.
    int64_t s = 1;
    for (int i = n - 1; i >= 0; --i) {
      spec.strides[i] = s;
      s *= std::max<int64_t>(spec.shape[i], 1);
    }
    int dim = n ? static_cast<int>(in.pick(n)) : 0;
    if (n && kind == 3)
      spec.strides[dim] = 0;
    else if (n && kind == 4)
      spec.strides[dim] = -spec.strides[dim];
    else if (n && kind == 5) {
      static const int64_t huge[] = {int64_t(1) << 61, INT64_MIN, INT64_MAX,
                                     int64_t(1) << 47, -(int64_t(1) << 50)};
      spec.strides[dim] = huge[in.pick(5)];
    } else if (n && kind == 6) {
      spec.strides[dim] = static_cast<int64_t>(in.u32() % 100000) - 50000;
    }
    spec.t.strides = spec.strides;
  }
  // Where the view reaches, in bytes from its pointer (exactly).
  __int128 up = 0, down = 0, bytes = elem;
  bool empty = false;
  for (int i = 0; i < n; ++i) {
    empty |= spec.shape[i] == 0;
    bytes *= spec.shape[i];
    int64_t st = spec.t.strides ? spec.strides[i] : 0;
    if (!spec.t.strides) {
      st = 1;
      for (int j = i + 1; j < n; ++j)
        st *= spec.shape[j];
    }
    __int128 reach =
        __int128(std::max<int64_t>(spec.shape[i] - 1, 0)) * st * elem;
    (reach < 0 ? down : up) += reach < 0 ? -reach : reach;
  }
  char *base = reinterpret_cast<char *>(arena().buffers[buffer].data());
  __int128 room = __int128(kArena) * 4;
  if (empty) {
    spec.t.data = in.pick(2) ? nullptr : base;
  } else if (down + up + elem <= room) {
    spec.t.data = base + static_cast<int64_t>(down);
  } else {
    // Too big for the arena: valid only if libattn refuses it.
    __int128 limit = __int128(1) << 48;
    bool overlaps = false;
    if (output)
      for (int i = 0; i < n; ++i)
        overlaps |= spec.t.strides && spec.strides[i] == 0 && spec.shape[i] > 1;
    bool refused =
        up + down + elem > limit || overlaps || (output && bytes > limit);
    for (int i = 0; i < n && !refused; ++i) {
      int64_t st = spec.t.strides ? spec.strides[i] : 1;
      __int128 reach =
          __int128(std::max<int64_t>(spec.shape[i] - 1, 0)) * st * elem;
      refused = (reach < 0 ? -reach : reach) + elem > limit;
    }
    if (refused) {
      spec.t.data = base;
      spec.outOfBounds = true;
    } else { // shrink to something that fits
      for (int i = 0; i < n; ++i)
        spec.shape[i] = std::min<int64_t>(spec.shape[i], 1);
      spec.t.data = base;
    }
  }
  if (how % 64 == 3)
    spec.t.shape = nullptr; // a null shape (invalid for rank > 0)
}

struct State {
  std::vector<attn_runtime *> runtimes;
  std::vector<attn_compile_options *> options;
  std::vector<attn_kernel *> kernels;
  std::vector<attn_run_args *> args;
  // Released handles, kept to be used again.
  std::vector<void *> stale;
  TensorSpec q, k, v, o, lse, param;
  bool argsOutOfBounds = false;
  int compiles = 0;
};

template <typename T> T *choose(Input &in, std::vector<T *> &live, State &st) {
  uint8_t c = in.byte();
  if (c % 16 == 0)
    return nullptr;
  if (c % 16 == 1 && !st.stale.empty())
    return static_cast<T *>(st.stale[in.pick(st.stale.size())]);
  if (live.empty())
    return nullptr;
  return live[in.pick(live.size())];
}

template <typename T> void forget(std::vector<T *> &live, T *h, State &st) {
  auto it = std::find(live.begin(), live.end(), h);
  if (it != live.end()) {
    live.erase(it);
    st.stale.push_back(h);
  }
}

attn_runtime *compileRuntime() {
  static attn_runtime *rt = [] {
    attn_runtime *r = nullptr;
    if (attn_runtime_create_with_cache(nullptr, 0, 0, &r) != ATTN_OK)
      std::abort();
    return r;
  }();
  return rt;
}

/// A disk cache folder for this run, under $TMPDIR.
const std::string &scratchCache() {
  static const std::string dir = [] {
    const char *tmp = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp && *tmp ? tmp : "/tmp") + "/attn-capi-fuzz.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char *d = ::mkdtemp(buf.data());
    return std::string(d ? d : "/tmp/attn-capi-fuzz");
  }();
  return dir;
}

/// ATTN_CAPI_FUZZ_TRACE=1 prints every compile, set_tensors and run with
/// its status (to see what an input does).
void trace(const char *call, attn_status s) {
  static const bool on = std::getenv("ATTN_CAPI_FUZZ_TRACE") != nullptr;
  if (on)
    std::fprintf(stderr, "%s -> %s: %s\n", call, attn_status_name(s),
                 attn_last_error());
}

void check(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "C API fuzzer: %s (last error: %s)\n", what,
                 attn_last_error());
    std::abort();
  }
}

void step(Input &in, State &st) {
  switch (in.byte() % 20) {
  case 0: { // a runtime
    if (st.runtimes.size() >= 3)
      break;
    attn_runtime *r = nullptr;
    attn_status s =
        in.pick(2) ? attn_runtime_create_with_cache(scratchCache().c_str(), 1,
                                                    in.pick(3) * 65536, &r)
                   : attn_runtime_create_with_cache(nullptr, 0, 0, &r);
    check(s == ATTN_OK && r, "runtime_create failed");
    st.runtimes.push_back(r);
    break;
  }
  case 1: { // destroy a runtime (maybe a stale one)
    attn_runtime *r = choose(in, st.runtimes, st);
    attn_runtime_destroy(r);
    forget(st.runtimes, r, st);
    break;
  }
  case 2: { // options
    if (st.options.size() >= 4)
      break;
    attn_compile_options *o = nullptr;
    check(attn_compile_options_create(&o) == ATTN_OK, "options_create");
    st.options.push_back(o);
    break;
  }
  case 3: { // set an option to anything
    attn_compile_options *o = choose(in, st.options, st);
    switch (in.pick(8)) {
    case 6: {
      static const char *const arches[] = {"sm_80", "sm_90", "", "sm_9x"};
      switch (in.pick(4)) {
      case 0:
        (void)attn_compile_options_set_gpu_kernel(
            o, static_cast<attn_gpu_kernel>(in.pick(5)));
        break;
      case 1:
        (void)attn_compile_options_set_gpu_persistent(o, in.pick(2));
        break;
      case 2:
        (void)attn_compile_options_set_gpu_mark_kernel(o, in.pick(2));
        break;
      default:
        (void)attn_compile_options_set_gpu_arch(
            o, in.pick(4) ? arches[in.pick(4)] : nullptr);
        break;
      }
      break;
    }
    case 0:
      (void)attn_compile_options_set_target(
          o, static_cast<attn_target>(in.pick(3)));
      break;
    case 1:
      (void)attn_compile_options_set_dtype(o,
                                           static_cast<attn_dtype>(in.pick(6)));
      break;
    case 2:
      (void)attn_compile_options_set_variant(o, in.pick(8) ? kNames[in.pick(10)]
                                                           : nullptr);
      break;
    case 3: {
      static const double values[] = {0.0, 1.5,      -2.0, 1e39,
                                      NAN, INFINITY, 3.0,  1e-50};
      (void)attn_compile_options_set_const(
          o, in.pick(8) ? kNames[in.pick(10)] : nullptr, values[in.pick(8)]);
      break;
    }
    case 4: {
      static const int64_t tiles[] = {0, 4, 16, 32, 64, 24, -16, 1 << 30};
      (void)attn_compile_options_set_tiling(
          o, static_cast<attn_tiling>(in.pick(4)), tiles[in.pick(8)],
          tiles[in.pick(8)]);
      break;
    }
    default: {
      static const int64_t dims[] = {0, 8, 16, 3, -1, 513};
      (void)attn_compile_options_set_head_dims(o, dims[in.pick(6)],
                                               dims[in.pick(6)]);
      break;
    }
    }
    break;
  }
  case 4: { // destroy options
    attn_compile_options *o = choose(in, st.options, st);
    attn_compile_options_destroy(o);
    forget(st.options, o, st);
    break;
  }
  case 5:
  case 6: { // compile (a few per input: a new kernel takes a while)
    if (st.kernels.size() >= 6 || ++st.compiles > 8)
      break;
    // Mostly on the long-lived runtime (each kernel compiles once); on
    // the input's own runtimes (the disk cache: loads) or the global one.
    uint8_t which = in.byte();
    attn_runtime *rt = compileRuntime();
    if (which % 8 == 1)
      rt = nullptr;
    else if (which % 8 == 2)
      rt = choose(in, st.runtimes, st);
    attn_compile_options *o = choose(in, st.options, st);
    const char *src = kSources[in.pick(kNumSources)];
    attn_kernel *k = nullptr;
    attn_status s = in.pick(16) == 0
                        ? attn_compile_file(rt, "/no/such/file.attn", o, &k)
                        : attn_compile(rt, in.pick(32) ? src : nullptr, o, &k);
    trace("compile", s);
    check((s == ATTN_OK) == (k != nullptr), "compile status vs kernel");
    if (k)
      st.kernels.push_back(k);
    break;
  }
  case 7: { // release a kernel
    attn_kernel *k = choose(in, st.kernels, st);
    attn_kernel_release(k);
    forget(st.kernels, k, st);
    break;
  }
  case 8: { // describe a kernel
    attn_kernel *k = choose(in, st.kernels, st);
    const char *name = attn_kernel_name(k);
    (void)attn_kernel_normalization(k);
    (void)attn_kernel_key(k);
    if (const char *plan = attn_kernel_plan(k))
      (void)std::strlen(plan);
    (void)attn_kernel_dtype(k);
    (void)attn_kernel_defines_lse(k);
    size_t n = attn_kernel_num_params(k);
    attn_param_info info;
    attn_status s = attn_kernel_param(k, in.pick(static_cast<int64_t>(n) + 2),
                                      in.pick(8) ? &info : nullptr);
    if (s == ATTN_OK)
      for (int32_t i = 0; i < info.rank; ++i)
        (void)info.dims[i].value;
    if (name)
      (void)std::strlen(name);
    break;
  }
  case 9: { // args
    if (st.args.size() >= 3)
      break;
    attn_run_args *a = nullptr;
    check(attn_run_args_create(&a) == ATTN_OK, "args_create");
    st.args.push_back(a);
    break;
  }
  case 10: { // destroy args
    attn_run_args *a = choose(in, st.args, st);
    attn_run_args_destroy(a);
    forget(st.args, a, st);
    break;
  }
  case 11:
  case 12: { // tensors: consistent sizes, then perhaps spoiled
    attn_run_args *a = choose(in, st.args, st);
    int64_t B = 1 + in.pick(2), Hkv = 1 + in.pick(2),
            H = Hkv * (1 + in.pick(2)), Lq = in.pick(40), Lkv = in.pick(40);
    static const int64_t dims[] = {8, 16, 3, 1};
    int64_t D = dims[in.pick(4)], Dv = dims[in.pick(4)];
    attn_dtype dt = in.pick(3) ? ATTN_F32 : ATTN_F16;
    const int64_t qs[4] = {B, H, Lq, D}, ks[4] = {B, Hkv, Lkv, D},
                  vs[4] = {B, Hkv, Lkv, Dv}, os[4] = {B, H, Lq, Dv},
                  ls[4] = {B, H, Lq, 0};
    makeTensor(in, st.q, 4, qs, dt, 0, false);
    makeTensor(in, st.k, 4, ks, dt, 1, false);
    makeTensor(in, st.v, 4, vs, dt, 2, false);
    makeTensor(in, st.o, 4, os, dt, 3, true);
    makeTensor(in, st.lse, 3, ls, ATTN_F32, 4, true);
    bool withLse = in.pick(2);
    attn_status s = attn_run_args_set_tensors(
        a, in.pick(32) ? &st.q.t : nullptr, &st.k.t, &st.v.t, &st.o.t,
        withLse ? &st.lse.t : nullptr);
    trace("set_tensors", s);
    if (s == ATTN_OK)
      st.argsOutOfBounds = st.q.outOfBounds || st.k.outOfBounds ||
                           st.v.outOfBounds || st.o.outOfBounds ||
                           (withLse && st.lse.outOfBounds);
    break;
  }
  case 13: { // a scalar param
    attn_run_args *a = choose(in, st.args, st);
    static const double values[] = {0,   1,        -1,           8,   0.5, 1e39,
                                    NAN, INFINITY, 2147483648.0, -7.5};
    (void)attn_run_args_set_scalar(
        a, in.pick(8) ? kNames[in.pick(10)] : nullptr, values[in.pick(10)]);
    break;
  }
  case 14: { // a tensor param
    attn_run_args *a = choose(in, st.args, st);
    int64_t len[1] = {in.pick(40)};
    static const attn_dtype types[] = {ATTN_F32, ATTN_I32, ATTN_BOOL};
    makeTensor(in, st.param, 1, len, types[in.pick(3)], 5, false);
    // int32 ids within a small range (documents), bools 0/1.
    int32_t *ids = reinterpret_cast<int32_t *>(arena().buffers[5].data());
    for (size_t i = 0; i < 4096; ++i)
      ids[i] = static_cast<int32_t>(i / 7 % 5);
    attn_status s =
        attn_run_args_set_tensor(a, in.pick(8) ? kNames[in.pick(10)] : nullptr,
                                 in.pick(16) ? &st.param.t : nullptr);
    if (s == ATTN_OK && st.param.outOfBounds)
      st.argsOutOfBounds = true;
    break;
  }
  case 15: { // threads, stream, async, clear params
    attn_run_args *a = choose(in, st.args, st);
    switch (in.pick(4)) {
    case 0:
      (void)attn_run_args_set_threads(a, static_cast<int>(in.pick(6)) - 1);
      break;
    case 1:
      (void)attn_run_args_set_stream(a, in.pick(2) ? &st : nullptr);
      break;
    case 2:
      (void)attn_run_args_set_async(a, static_cast<int>(in.pick(3)));
      break;
    default:
      (void)attn_run_args_clear_params(a);
      break;
    }
    break;
  }
  case 16:
  case 17: { // run
    attn_kernel *k = choose(in, st.kernels, st);
    attn_run_args *a = choose(in, st.args, st);
    attn_status s = attn_kernel_run(k, a);
    trace("run", s);
    // A view beyond what libattn accepts must never run.
    if (st.argsOutOfBounds &&
        std::find(st.args.begin(), st.args.end(), a) != st.args.end())
      check(s != ATTN_OK, "a run accepted a view it must refuse");
    (void)attn_kernel_synchronize(k);
    break;
  }
  case 18: { // stats, clear
    attn_runtime *r = choose(in, st.runtimes, st);
    attn_cache_stats stats;
    (void)attn_runtime_stats(r, in.pick(8) ? &stats : nullptr);
    if (r && in.pick(4) == 0)
      (void)attn_runtime_clear_cache(r);
    break;
  }
  default: { // one handle type for another
    void *h = nullptr;
    switch (in.pick(3)) {
    case 0:
      h = st.args.empty() ? nullptr : st.args[0];
      break;
    case 1:
      h = st.options.empty() ? nullptr : st.options[0];
      break;
    default:
      h = st.runtimes.empty() ? nullptr : st.runtimes[0];
      break;
    }
    if (!h)
      break;
    check(attn_kernel_run(static_cast<attn_kernel *>(h),
                          static_cast<attn_run_args *>(h)) ==
              ATTN_ERROR_INVALID_ARGUMENT,
          "a handle of another type was accepted");
    (void)attn_compile_options_set_head_dims(
        static_cast<attn_compile_options *>(
            st.kernels.empty() ? h : static_cast<void *>(st.kernels[0])),
        8, 8);
    break;
  }
  }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // The global runtime (a NULL runtime) keeps kernels in memory only.
  ::setenv("ATTN_CACHE", "0", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Input in{data, size};
  State st;
  for (int steps = 0; steps < 64 && !in.done(); ++steps)
    step(in, st);
  for (attn_kernel *k : st.kernels)
    attn_kernel_release(k);
  for (attn_run_args *a : st.args)
    attn_run_args_destroy(a);
  for (attn_compile_options *o : st.options)
    attn_compile_options_destroy(o);
  for (attn_runtime *r : st.runtimes)
    attn_runtime_destroy(r);
  return 0;
}
