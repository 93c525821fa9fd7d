/*===- attn/attn.h - libattn's C API: compile and run attention variants --===*
 *
 * Compile an attention variant written in the .attn language into a kernel
 * for the host CPU (in process, through a kernel cache on disk and in
 * memory) and run it on your own buffers. Plain C99; no exception or
 * signal ever crosses it.
 *
 *   attn_kernel *k;
 *   if (attn_compile(NULL, source, NULL, &k) != ATTN_OK)
 *     fprintf(stderr, "%s\n", attn_last_error());
 *
 * Errors: every function that can fail returns an attn_status; the message
 * is then attn_last_error(), kept per thread until that thread's next
 * libattn call. Handles are opaque. Kernels and runtimes may be used from
 * any number of threads at once; option and argument builders belong to
 * one thread at a time. Passing NULL where a handle is expected is an
 * ATTN_ERROR_INVALID_ARGUMENT, never a crash.
 *
 * Handles are checked: a handle already released or destroyed (running a
 * released kernel, releasing it twice, compiling on a destroyed runtime,
 * running with destroyed args) or a handle of another type is an
 * ATTN_ERROR_INVALID_ARGUMENT ("... is not a live handle"); the functions
 * without a status ignore it (destroy and release set attn_last_error(),
 * the kernel accessors return NULL or 0). Destroyed handles are emptied and
 * kept (a few dozen bytes each), and their memory is reused only after
 * 1024 later destroys of the same type. Still undefined: using a handle
 * after that many later destroys (it may then name a new handle), passing
 * a pointer that never was a handle, and destroying a handle while another
 * thread is using it.
 *
 *===----------------------------------------------------------------------===*/
#ifndef ATTN_ATTN_H
#define ATTN_ATTN_H

#include "attn/attn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attn_runtime attn_runtime;
typedef struct attn_kernel attn_kernel;
typedef struct attn_compile_options attn_compile_options;
typedef struct attn_run_args attn_run_args;
typedef struct attn_backward_args attn_backward_args;

/* The message of the calling thread's last failure ("" if none). */
ATTN_API const char *attn_last_error(void);

/* "attnc 0.1 (build 3f2a..., LLVM 22.1.x)". */
ATTN_API const char *attn_version(void);

/*===-- Runtimes: a kernel cache and its settings -------------------------===*/

/* A NULL runtime in any function below means the process-wide runtime,
 * configured from the environment on first use: ATTN_CACHE=0 turns the
 * disk cache off, ATTN_CACHE_DIR sets its folder (default
 * $XDG_CACHE_HOME/attnc, else ~/.cache/attnc), ATTN_CACHE_MAX_BYTES its
 * size cap (default 1 GiB; suffixes K, M, G allowed). */
ATTN_API attn_status attn_runtime_create(attn_runtime **out);

/* A runtime with explicit settings: `cache_dir` NULL or "" for the default
 * folder, `disk_cache` 0 to keep kernels in memory only, `max_bytes` 0 for
 * the default cap. */
ATTN_API attn_status attn_runtime_create_with_cache(const char *cache_dir,
                                                    int disk_cache,
                                                    uint64_t max_bytes,
                                                    attn_runtime **out);

/* Kernels compiled by a runtime stay valid after it is destroyed. */
ATTN_API void attn_runtime_destroy(attn_runtime *runtime);

/* What a runtime did so far. */
typedef struct attn_cache_stats {
  uint64_t compiles;        /* MLIR pipelines + LLVM code generation runs */
  uint64_t memory_hits;     /* kernels found in memory */
  uint64_t disk_hits;       /* kernels loaded from the disk cache */
  uint64_t disk_writes;     /* entries written to the disk cache */
  uint64_t evictions;       /* entries evicted to respect the size cap */
  uint64_t corrupt_entries; /* damaged entries found, removed and rebuilt */
} attn_cache_stats;

ATTN_API attn_status attn_runtime_stats(const attn_runtime *runtime,
                                        attn_cache_stats *out);

/* Removes every entry of the runtime's disk cache and forgets the kernels it
 * holds in memory (kernels already handed out stay valid). ATTN_ERROR_IO
 * when something could not be removed (a read-only folder, an entry in use
 * by another process): the message names it; the rest is removed. */
ATTN_API attn_status attn_runtime_clear_cache(attn_runtime *runtime);

/*===-- Compile options ---------------------------------------------------===*/

typedef enum attn_target {
  ATTN_TARGET_CPU = 0,
  ATTN_TARGET_NVPTX = 1
} attn_target;

/* The reference kernel is single-threaded and takes any head dims; the
 * tiled kernel (vectorised, multi-threaded) is specialised for the head dims
 * set with attn_compile_options_set_head_dims. AUTO picks the tiled kernel
 * (64 x 64 tiles) when they are set and the reference kernel otherwise. */
typedef enum attn_tiling {
  ATTN_TILING_AUTO = 0,      /* the compiler chooses */
  ATTN_TILING_REFERENCE = 1, /* the reference loop kernel */
  ATTN_TILING_FIXED = 2      /* the tiled kernel with explicit tile sizes */
} attn_tiling;

/* Defaults: CPU, float32, the source's only variant, no overrides, auto. */
ATTN_API attn_status attn_compile_options_create(attn_compile_options **out);
ATTN_API void attn_compile_options_destroy(attn_compile_options *options);
ATTN_API attn_status attn_compile_options_set_target(
    attn_compile_options *options, attn_target target);
/* ATTN_F32 or ATTN_F16 (or ATTN_BF16 for the nvptx target): the element
 * type of Q, K, V and O. */
ATTN_API attn_status
attn_compile_options_set_dtype(attn_compile_options *options, attn_dtype dtype);
/* The attention block to compile; needed when the source has several. */
ATTN_API attn_status attn_compile_options_set_variant(
    attn_compile_options *options, const char *name);
/* Overrides the value of `const param NAME` (part of the kernel's identity:
 * another value is another kernel). Checked when compiling. */
ATTN_API attn_status attn_compile_options_set_const(
    attn_compile_options *options, const char *name, double value);
/* block_q and block_kv are used with ATTN_TILING_FIXED only: on the CPU,
 * block_q a multiple of 4 and block_kv a multiple of 16 whose tiles fit the
 * worker threads' stacks (others are ATTN_ERROR_INVALID_ARGUMENT when
 * compiling, on every host). */
ATTN_API attn_status attn_compile_options_set_tiling(
    attn_compile_options *options, attn_tiling tiling, int64_t block_q,
    int64_t block_kv);
/* The head dims D and Dv the kernel is specialised for (0, 0: unknown). */
ATTN_API attn_status attn_compile_options_set_head_dims(
    attn_compile_options *options, int64_t head_dim, int64_t value_dim);

/* Non-zero compiles the backward pass that the compiler derives from the
 * variant (CPU target): run the kernel with attn_kernel_run_backward. */
ATTN_API attn_status
attn_compile_options_set_backward(attn_compile_options *options, int backward);
/* nvptx kernels (see attn::GpuOptions in attn.hpp); like every option,
 * part of the kernel's identity. AUTO: wgmma on Hopper for head dims 64,
 * 128, 192 and 256, else MMA for float16 and bfloat16 where it applies
 * (head dims multiples of 16 up to 256), else SIMT. */
typedef enum attn_gpu_kernel {
  ATTN_GPU_KERNEL_AUTO = 0,
  ATTN_GPU_KERNEL_MMA = 1,   /* tensor cores through mma.sync (sm_80+) */
  ATTN_GPU_KERNEL_WGMMA = 2, /* Hopper's warpgroup MMA (sm_90) */
  ATTN_GPU_KERNEL_SIMT = 3   /* one thread per query row */
} attn_gpu_kernel;
ATTN_API attn_status attn_compile_options_set_gpu_kernel(
    attn_compile_options *options, attn_gpu_kernel kernel);
/* Non-zero: data-dependent masks on Hopper get a persistent wgmma kernel
 * where its shared memory fits (default 0: measured slower). */
ATTN_API attn_status attn_compile_options_set_gpu_persistent(
    attn_compile_options *options, int persistent);
/* Zero: data-dependent masks get no mark kernel; every block of the
 * attention kernel works out its live kv-tiles itself (default 1). */
ATTN_API attn_status attn_compile_options_set_gpu_mark_kernel(
    attn_compile_options *options, int mark_kernel);
/* The GPU to compile for ("sm_80", "sm_90", ...); NULL or "": device 0's
 * (which needs a CUDA driver to compile). A kernel for a given arch needs
 * no driver until it runs: it loads at its first run, and a run without a
 * driver is ATTN_ERROR_UNAVAILABLE. */
ATTN_API attn_status attn_compile_options_set_gpu_arch(
    attn_compile_options *options, const char *arch);

/*===-- Compiling ---------------------------------------------------------===*/

/* Compiles `source` (.attn text; diagnostics call it "<source>"), or the
 * file at `path`. `options` may be NULL. The kernel is released with
 * attn_kernel_release. */
ATTN_API attn_status attn_compile(attn_runtime *runtime, const char *source,
                                  const attn_compile_options *options,
                                  attn_kernel **out);
ATTN_API attn_status attn_compile_file(attn_runtime *runtime, const char *path,
                                       const attn_compile_options *options,
                                       attn_kernel **out);
ATTN_API void attn_kernel_release(attn_kernel *kernel);

/*===-- What a kernel takes -----------------------------------------------===*/

/* The variant's name, its normalisation ("softmax", "sigmoid", "relu",
 * "linear") and its cache key (64 hex digits); NULL for a NULL kernel. */
ATTN_API const char *attn_kernel_name(const attn_kernel *kernel);
ATTN_API const char *attn_kernel_normalization(const attn_kernel *kernel);
ATTN_API const char *attn_kernel_key(const attn_kernel *kernel);
/* What the compiler chose and why, for people (several lines): an nvptx
 * kernel's plan, a CPU kernel's lowering and tiles; NULL for a NULL
 * kernel. Valid as long as the kernel handle. */
ATTN_API const char *attn_kernel_plan(const attn_kernel *kernel);
/* The element type of Q, K, V and O. */
ATTN_API attn_dtype attn_kernel_dtype(const attn_kernel *kernel);
/* 1 when an LSE output may be requested (softmax variants). */
ATTN_API int attn_kernel_defines_lse(const attn_kernel *kernel);
/* 1 for a kernel compiled for the backward pass. */
ATTN_API int attn_kernel_is_backward(const attn_kernel *kernel);
/* 1 when a forward run can save the row statistics a backward run needs
 * (softmax: the LSE; linear: the row sums of the scores). */
ATTN_API int attn_kernel_has_row_stats(const attn_kernel *kernel);
/* Params in declaration order, const ones included. */
ATTN_API size_t attn_kernel_num_params(const attn_kernel *kernel);

/* The problem's named sizes, the order of ATTN_DIM_SIZE values. */
typedef enum attn_size {
  ATTN_SIZE_B = 0,
  ATTN_SIZE_H = 1,
  ATTN_SIZE_HKV = 2,
  ATTN_SIZE_LQ = 3,
  ATTN_SIZE_LKV = 4,
  ATTN_SIZE_D = 5,
  ATTN_SIZE_DV = 6
} attn_size;

typedef enum attn_dim_kind {
  ATTN_DIM_SIZE = 0,    /* value is an attn_size */
  ATTN_DIM_LITERAL = 1, /* value is the extent */
  ATTN_DIM_DYNAMIC = 2  /* `?`: any extent */
} attn_dim_kind;

typedef struct attn_dim {
  attn_dim_kind kind;
  int64_t value;
} attn_dim;

/* Valid as long as the kernel handle. */
typedef struct attn_param_info {
  const char *name;
  attn_dtype dtype; /* ATTN_F32, ATTN_I32 or ATTN_BOOL */
  int is_const;     /* baked into the kernel; not passed at run */
  int is_tensor;
  int32_t rank;         /* 0 for scalars */
  const attn_dim *dims; /* rank entries */
  int has_value;        /* a runtime scalar's default, a const's value */
  double value;
  const char *declared_type; /* as written: "f32[H]", "i32" */
} attn_param_info;

ATTN_API attn_status attn_kernel_param(const attn_kernel *kernel, size_t index,
                                       attn_param_info *out);

/*===-- Running -----------------------------------------------------------===*/

ATTN_API attn_status attn_run_args_create(attn_run_args **out);
ATTN_API void attn_run_args_destroy(attn_run_args *args);
/* Q [B, H, Lq, D], K [B, Hkv, Lkv, D], V [B, Hkv, Lkv, Dv], O [B, H, Lq, Dv]
 * of the kernel's dtype; LSE [B, H, Lq] float32, or NULL for none. The
 * descriptors are copied; the data must stay valid until the run. */
ATTN_API attn_status attn_run_args_set_tensors(
    attn_run_args *args, const attn_tensor *q, const attn_tensor *k,
    const attn_tensor *v, const attn_tensor *o, const attn_tensor *lse);
/* CPU kernels: [B, H, Lq] float32 that the run fills with the row
 * statistics a backward run needs (attn_kernel_has_row_stats): the LSE for
 * softmax (give it as LSE or as row statistics, not both), the row sums of
 * the scores for linear. NULL: none (the default). */
ATTN_API attn_status attn_run_args_set_row_stats(attn_run_args *args,
                                                 const attn_tensor *stats);
/* Binds a runtime param (setting one twice keeps the last value). */
ATTN_API attn_status attn_run_args_set_scalar(attn_run_args *args,
                                              const char *name, double value);
ATTN_API attn_status attn_run_args_set_tensor(attn_run_args *args,
                                              const char *name,
                                              const attn_tensor *tensor);
ATTN_API attn_status attn_run_args_clear_params(attn_run_args *args);
/* CPU worker threads; 0 (the default) lets the kernel choose. */
ATTN_API attn_status attn_run_args_set_threads(attn_run_args *args,
                                               int threads);
/* The CUDA stream (a CUstream) for nvptx kernels; CPU kernels reject it. */
ATTN_API attn_status attn_run_args_set_stream(attn_run_args *args,
                                              void *stream);

/* nvptx kernels: non-zero makes a run return once the launch is queued on
 * the stream instead of waiting for it (default 0). Errors the kernel finds
 * in the data (an out-of-range param read, an integer division by zero)
 * are then reported once, by attn_kernel_synchronize or by the kernel's
 * next synchronous run that passes its argument checks (which then does
 * not run). A queued run on another stream than the pending ones first
 * waits for them the same way. The error state belongs to the compiled
 * kernel, shared by every handle of it (one runtime compiles a source
 * once). The tensors must stay valid until the stream has run the kernel.
 * CPU kernels ignore it. */
ATTN_API attn_status attn_run_args_set_async(attn_run_args *args, int async);

/* Checks every tensor and param against the kernel's signature, then runs
 * it. On ATTN_ERROR_KERNEL the outputs are unspecified. */
ATTN_API attn_status attn_kernel_run(const attn_kernel *kernel,
                                     const attn_run_args *args);
/* After asynchronous runs: waits for the device and returns
 * ATTN_ERROR_KERNEL with an error the kernel found in them since the last
 * report (the last one written, if several). ATTN_OK at once when none are
 * pending, and for CPU kernels. */
ATTN_API attn_status attn_kernel_synchronize(const attn_kernel *kernel);

/*===-- The backward pass -------------------------------------------------===*/

/* Given dO = dL/dO of a loss L, a backward kernel writes dQ, dK, dV (the
 * shapes and dtype of Q, K, V) and the gradients requested of f32 params
 * (float32, the param's shape; rank 0 or [1] for a scalar). i32, bool and
 * const params have no gradient: asking for one is an error. */
ATTN_API attn_status attn_backward_args_create(attn_backward_args **out);
ATTN_API void attn_backward_args_destroy(attn_backward_args *args);
/* The forward's Q, K, V and O, dO of O's shape, and the row statistics its
 * run saved (attn_run_args_set_row_stats): required for softmax and
 * linear, NULL for sigmoid and relu. */
ATTN_API attn_status attn_backward_args_set_tensors(
    attn_backward_args *args, const attn_tensor *q, const attn_tensor *k,
    const attn_tensor *v, const attn_tensor *o, const attn_tensor *d_o,
    const attn_tensor *row_stats);
/* Where dQ, dK and dV go (overwritten). */
ATTN_API attn_status attn_backward_args_set_grads(attn_backward_args *args,
                                                  const attn_tensor *dq,
                                                  const attn_tensor *dk,
                                                  const attn_tensor *dv);
/* Runtime params, as for the forward. */
ATTN_API attn_status attn_backward_args_set_scalar(attn_backward_args *args,
                                                   const char *name,
                                                   double value);
ATTN_API attn_status attn_backward_args_set_tensor(attn_backward_args *args,
                                                   const char *name,
                                                   const attn_tensor *tensor);
/* Requests the gradient of f32 param NAME into `grad` (overwritten); NULL
 * withdraws the request. */
ATTN_API attn_status attn_backward_args_set_param_grad(attn_backward_args *args,
                                                       const char *name,
                                                       const attn_tensor *grad);
/* Forgets the params and the requested param gradients. */
ATTN_API attn_status attn_backward_args_clear_params(attn_backward_args *args);
/* CPU worker threads; 0 (the default) lets the kernel choose. A thread
 * count gives the same gradients, bit for bit, from run to run. */
ATTN_API attn_status attn_backward_args_set_threads(attn_backward_args *args,
                                                    int threads);
/* Checks every tensor, param and gradient against the kernel (compiled
 * with attn_compile_options_set_backward) and writes the gradients. */
ATTN_API attn_status attn_kernel_run_backward(const attn_kernel *kernel,
                                              const attn_backward_args *args);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_H */
