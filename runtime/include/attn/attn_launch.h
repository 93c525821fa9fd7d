/*===- attn/attn_launch.h - Running ahead-of-time compiled kernels --------===*
 *
 * The launcher behind the headers that `attnc --emit=header` generates. A
 * program links the object from `attnc --emit=obj`, the generated header's
 * typed entry point and the static attn_launcher library (no compiler, no
 * MLIR, no LLVM): the launcher checks every tensor and param against the
 * kernel's signature, packs the arguments and decodes the kernel's status,
 * exactly as the JIT does. Plain C99; thread-safe.
 *
 *===----------------------------------------------------------------------===*/
#ifndef ATTN_ATTN_LAUNCH_H
#define ATTN_ATTN_LAUNCH_H

#include "attn/attn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The packed entry point of a compiled kernel: `void _mlir_<name>(void **)`. */
typedef void (*attn_packed_fn)(void **args);

/* Checks and runs a kernel. `signature` is the signature text the generated
 * header embeds; `kernel` says how the kernel was built: "reference", or
 * "tiled abi=A tile_q=N d=D dv=DV" for a tiled kernel (A: the calling
 * convention; one from another attnc is refused; run over a thread pool,
 * `threads` workers, 0 for the default); `dtype` is the element type it was
 * compiled for and `entry` its packed entry point. `lse` may be NULL (and
 * must be for non-softmax variants). Returns ATTN_OK, or a status with a
 * one-line message copied into `err` (NUL-terminated, cut to `errlen`
 * bytes; `err` may be NULL). */
ATTN_API attn_status attn_launch(const char *signature, const char *kernel,
                                 int threads, attn_dtype dtype,
                                 attn_packed_fn entry, const attn_tensor *q,
                                 const attn_tensor *k, const attn_tensor *v,
                                 const attn_tensor *o, const attn_tensor *lse,
                                 const attn_param_arg *params,
                                 size_t num_params, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_LAUNCH_H */
