/*===- main.c - Running ahead-of-time compiled kernels, no compiler -------===*
 *
 * The build made two kernels from examples/alibi.attn with attnc:
 *
 *   attnc alibi.attn --variant alibi --emit=obj --head-dim 32 -o alibi.o
 *   attnc alibi.attn --variant alibi --emit=header --head-dim 32 -o alibi.h
 *   attnc alibi.attn --variant gemma_softcap --emit=obj -o softcap.o
 *   attnc alibi.attn --variant gemma_softcap --emit=header -o softcap.h
 *
 * and links them with the attn_launcher library only: no MLIR, no LLVM, no
 * JIT in this process. The ALiBi kernel is the tiled one (specialised for
 * D = 32, run over a thread pool), the softcap one the reference kernel.
 * Both are checked against a naive float64 implementation; exits 0 when
 * they match, and shows the launcher's shape check on a wrong call.
 *
 *===----------------------------------------------------------------------===*/

#include "alibi.h"
#include "softcap.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { B = 2, H = 4, HKV = 4, L = 70, D = 32 };

static float q[B * H * L * D], k[B * HKV * L * D], v[B * HKV * L * D];
static float o[B * H * L * D], lse[B * H * L], slopes[H];

static float uniform(unsigned *state) {
  *state = *state * 1664525u + 1013904223u;
  return (float)((*state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

/* max |O - ref| for the softmax variant with score(s, h, i, j) and
 * mask(i, j); NaN anywhere counts as infinite. */
static double check(int alibi, double cap, int window) {
  double maxErr = 0, scale = 1.0 / sqrt((double)D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < L; ++i) {
        double s[L], m = -INFINITY, sum = 0;
        int keep[L];
        for (int j = 0; j < L; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += (double)q[((b * H + h) * L + i) * D + d] *
                   (double)k[((b * HKV + h) * L + j) * D + d];
          s[j] = scale * dot;
          if (alibi) {
            s[j] += (double)slopes[h] * (double)(j - i);
            keep[j] = j <= i;
          } else {
            s[j] = cap * tanh(s[j] / cap);
            keep[j] = j <= i && i - j < window;
          }
          if (keep[j] && s[j] > m)
            m = s[j];
        }
        for (int j = 0; j < L; ++j)
          if (keep[j])
            sum += exp(s[j] - m);
        for (int d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j < L; ++j)
            if (keep[j])
              acc += exp(s[j] - m) / sum *
                     (double)v[((b * HKV + h) * L + j) * D + d];
          double err = fabs((double)o[((b * H + h) * L + i) * D + d] - acc);
          if (!(err <= maxErr))
            maxErr = isnan(err) ? INFINITY : err;
        }
        double lerr = fabs((double)lse[(b * H + h) * L + i] - (m + log(sum)));
        if (!(lerr <= maxErr))
          maxErr = isnan(lerr) ? INFINITY : lerr;
      }
  return maxErr;
}

static void poison(void) {
  for (int i = 0; i < B * H * L * D; ++i)
    o[i] = NAN;
  for (int i = 0; i < B * H * L; ++i)
    lse[i] = NAN;
}

int main(void) {
  unsigned state = 11;
  for (int i = 0; i < B * H * L * D; ++i)
    q[i] = uniform(&state);
  for (int i = 0; i < B * HKV * L * D; ++i)
    k[i] = uniform(&state), v[i] = uniform(&state);
  for (int h = 0; h < H; ++h)
    slopes[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)H);

  const int64_t qShape[4] = {B, H, L, D}, kvShape[4] = {B, HKV, L, D};
  const int64_t lseShape[3] = {B, H, L}, slopeShape[1] = {H};
  attn_tensor tq = {q, ATTN_F32, 4, qShape, NULL};
  attn_tensor tk = {k, ATTN_F32, 4, kvShape, NULL};
  attn_tensor tv = {v, ATTN_F32, 4, kvShape, NULL};
  attn_tensor to = {o, ATTN_F32, 4, qShape, NULL};
  attn_tensor tl = {lse, ATTN_F32, 3, lseShape, NULL};
  attn_tensor ts = {slopes, ATTN_F32, 1, slopeShape, NULL};
  char err[256];

  poison();
  if (attn_alibi(&tq, &tk, &tv, &to, &tl, &ts, 0, err, sizeof err) != ATTN_OK) {
    fprintf(stderr, "error: %s\n", err);
    return 1;
  }
  double alibiErr = check(1, 0, 0);

  poison();
  if (attn_gemma_softcap(&tq, &tk, &tv, &to, &tl, 16, 0, err, sizeof err) !=
      ATTN_OK) {
    fprintf(stderr, "error: %s\n", err);
    return 1;
  }
  double softcapErr = check(0, 50.0, 16);
  printf("alibi (tiled): max error %.3g; gemma_softcap (reference, window "
         "16): max error %.3g\n",
         alibiErr, softcapErr);

  /* A wrong call is caught before the kernel runs. */
  const int64_t badSlopes[1] = {H + 1};
  attn_tensor tb = {slopes, ATTN_F32, 1, badSlopes, NULL};
  attn_status s = attn_alibi(&tq, &tk, &tv, &to, NULL, &tb, 0, err, sizeof err);
  printf("wrong slopes shape: %s: %s\n", attn_status_name(s), err);
  if (s != ATTN_ERROR_INVALID_ARGUMENT || !strstr(err, "slopes"))
    return 1;

  if (!(alibiErr < 1e-4 && softcapErr < 1e-4)) {
    fprintf(stderr, "error: the kernels do not match the reference\n");
    return 1;
  }
  printf("ok\n");
  return 0;
}
