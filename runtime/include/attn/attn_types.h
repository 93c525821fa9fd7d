/*===- attn/attn_types.h - Types shared by libattn's C APIs ---------------===*
 *
 * Status codes, element types and tensor views, shared by the JIT API
 * (attn.h) and the ahead-of-time launcher (attn_launch.h). Plain C99.
 *
 *===----------------------------------------------------------------------===*/
#ifndef ATTN_ATTN_TYPES_H
#define ATTN_ATTN_TYPES_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ATTN_API __attribute__((visibility("default")))
#else
#define ATTN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What every libattn C function returns. On failure a one-line message says
 * what went wrong (attn_last_error() for attn.h, the err buffer for
 * attn_launch.h). */
typedef enum attn_status {
  ATTN_OK = 0,
  /* Bad shapes, dtypes, params, options or pointers, unknown variant. */
  ATTN_ERROR_INVALID_ARGUMENT = 1,
  /* The source has errors; the message holds the located diagnostics. */
  ATTN_ERROR_COMPILE = 2,
  /* The target or feature is not available here (e.g. nvptx, no GPU). */
  ATTN_ERROR_UNAVAILABLE = 3,
  /* The kernel stopped with an error (a tensor param indexed out of range,
   * an integer division by zero); the outputs are unspecified. */
  ATTN_ERROR_KERNEL = 4,
  /* A file could not be read. */
  ATTN_ERROR_IO = 5,
  /* A bug in attnc; please report it with the message. */
  ATTN_ERROR_INTERNAL = 6,
  /* Memory needed on the caller's behalf (the tiled kernel's working copies
   * of K and V, sized before they are allocated) is more than the machine
   * can allocate; the message says how much. */
  ATTN_ERROR_OUT_OF_MEMORY = 7
} attn_status;

/* "ok", "invalid argument", ... (never NULL). */
ATTN_API const char *attn_status_name(attn_status status);

/* Element types. Q, K, V and O are F32 or F16 (and BF16 on the nvptx
 * target); LSE is F32; params are F32, I32 or BOOL (one byte per element,
 * 0 or 1). */
typedef enum attn_dtype {
  ATTN_F32 = 0,
  ATTN_F16 = 1,
  ATTN_I32 = 2,
  ATTN_BOOL = 3,
  ATTN_BF16 = 4
} attn_dtype;

/* A strided view of a tensor in host memory. The caller owns every array;
 * libattn copies the descriptor, never the data. */
typedef struct attn_tensor {
  void *data;
  attn_dtype dtype;
  int32_t rank;
  const int64_t *shape; /* rank entries */
  /* rank entries, in elements (0 broadcasts, negative ones walk backwards);
   * NULL: C-contiguous. Checked before a run: a view spans at most 2^48
   * bytes, does not wrap around the address space, and an output has no
   * stride 0 along a dimension of size > 1. */
  const int64_t *strides;
} attn_tensor;

/* A runtime param by name: a tensor, or a scalar (f32, i32 or bool as
 * 0/1) when `tensor` is NULL. */
typedef struct attn_param_arg {
  const char *name;
  const attn_tensor *tensor;
  double scalar;
} attn_param_arg;

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_TYPES_H */
