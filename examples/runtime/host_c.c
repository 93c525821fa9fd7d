/*===- host_c.c - Compile and run a variant from C with libattn -----------===*
 *
 * JIT-compiles causal ALiBi attention from a string through the C API, runs
 * it on this program's own buffers (random data, grouped-query heads) and
 * checks O and LSE against a naive float64 implementation. Exits 0 when
 * they match.
 *
 *   cc -std=c99 host_c.c -Iruntime/include -Lbuild/lib -lattn -lm
 *
 *===----------------------------------------------------------------------===*/

#include "attn/attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *kSource =
    "attention alibi_causal {\n"
    "  param slopes: f32[H];\n"
    "  score = score + slopes[h] * f32(kv_idx - q_idx);\n"
    "  mask  = kv_idx <= q_idx;\n"
    "}\n";

enum { B = 1, H = 4, HKV = 2, L = 53, D = 16 };

static float uniform(unsigned *state) {
  *state = *state * 1664525u + 1013904223u;
  return (float)((*state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

#define CHECK(call)                                                            \
  do {                                                                         \
    attn_status s_ = (call);                                                   \
    if (s_ != ATTN_OK) {                                                       \
      fprintf(stderr, "error: %s: %s\n", attn_status_name(s_),                 \
              attn_last_error());                                              \
      return 1;                                                                \
    }                                                                          \
  } while (0)

int main(void) {
  static float q[B * H * L * D], k[B * HKV * L * D], v[B * HKV * L * D];
  static float o[B * H * L * D], lse[B * H * L], slopes[H];
  unsigned state = 7;
  for (int i = 0; i < B * H * L * D; ++i)
    q[i] = uniform(&state), o[i] = NAN; /* poisoned output */
  for (int i = 0; i < B * HKV * L * D; ++i)
    k[i] = uniform(&state), v[i] = uniform(&state);
  for (int i = 0; i < B * H * L; ++i)
    lse[i] = NAN;
  for (int h = 0; h < H; ++h)
    slopes[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)H);

  attn_kernel *kernel = NULL;
  CHECK(attn_compile(NULL, kSource, NULL, &kernel));
  printf("compiled '%s' (%zu param)\n", attn_kernel_name(kernel),
         attn_kernel_num_params(kernel));

  const int64_t qShape[4] = {B, H, L, D}, kvShape[4] = {B, HKV, L, D};
  const int64_t lseShape[3] = {B, H, L}, slopeShape[1] = {H};
  attn_tensor tq = {q, ATTN_F32, 4, qShape, NULL};
  attn_tensor tk = {k, ATTN_F32, 4, kvShape, NULL};
  attn_tensor tv = {v, ATTN_F32, 4, kvShape, NULL};
  attn_tensor to = {o, ATTN_F32, 4, qShape, NULL};
  attn_tensor tl = {lse, ATTN_F32, 3, lseShape, NULL};
  attn_tensor ts = {slopes, ATTN_F32, 1, slopeShape, NULL};

  attn_run_args *args = NULL;
  CHECK(attn_run_args_create(&args));
  CHECK(attn_run_args_set_tensors(args, &tq, &tk, &tv, &to, &tl));
  CHECK(attn_run_args_set_tensor(args, "slopes", &ts));
  CHECK(attn_kernel_run(kernel, args));
  attn_run_args_destroy(args);
  attn_kernel_release(kernel);

  /* The naive float64 reference. */
  double maxErr = 0, maxLseErr = 0, scale = 1.0 / sqrt((double)D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      int hkv = h / (H / HKV);
      for (int i = 0; i < L; ++i) {
        double s[L], m = -INFINITY, sum = 0;
        for (int j = 0; j <= i; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += (double)q[((b * H + h) * L + i) * D + d] *
                   (double)k[((b * HKV + hkv) * L + j) * D + d];
          s[j] = scale * dot + (double)slopes[h] * (double)(j - i);
          if (s[j] > m)
            m = s[j];
        }
        for (int j = 0; j <= i; ++j)
          sum += exp(s[j] - m);
        for (int d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j <= i; ++j)
            acc += exp(s[j] - m) / sum *
                   (double)v[((b * HKV + hkv) * L + j) * D + d];
          double err = fabs((double)o[((b * H + h) * L + i) * D + d] - acc);
          if (!(err <= maxErr)) /* NaN counts as a mismatch */
            maxErr = isnan(err) ? INFINITY : err;
        }
        double lerr = fabs((double)lse[(b * H + h) * L + i] - (m + log(sum)));
        if (!(lerr <= maxLseErr))
          maxLseErr = isnan(lerr) ? INFINITY : lerr;
      }
    }
  printf("max |O - ref| = %.3g, max |LSE - ref| = %.3g\n", maxErr, maxLseErr);
  if (!(maxErr < 1e-4 && maxLseErr < 1e-4)) {
    fprintf(stderr, "error: the kernel does not match the reference\n");
    return 1;
  }
  printf("ok\n");
  return 0;
}
