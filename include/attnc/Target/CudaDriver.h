//===- CudaDriver.h - The CUDA driver API, loaded at run time -------------===//
//
// The few CUDA driver entry points that running a PTX kernel needs, resolved
// from libcuda.so.1 with dlopen on first use, so that attnc builds, links
// and runs its CPU paths on machines without a driver or a CUDA toolkit.
// Declares its own minimal types (ABI-compatible with cuda.h).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_CUDADRIVER_H
#define ATTNC_TARGET_CUDADRIVER_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace attnc::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;

/// cuLaunchKernelEx's configuration (cuda.h's CUlaunchConfig and
/// CUlaunchAttribute; the attribute's value is a 64-byte union).
inline constexpr int kLaunchAttributeProgrammaticStreamSerialization = 6;
struct CUlaunchAttribute {
  int id;
  char pad[8 - sizeof(int)];
  union alignas(8) {
    char bytes[64];
    int programmaticStreamSerializationAllowed;
  } value;
};
struct CUlaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ;
  unsigned blockDimX, blockDimY, blockDimZ;
  unsigned sharedMemBytes;
  CUstream hStream;
  CUlaunchAttribute *attrs;
  unsigned numAttrs;
};

/// The loaded driver with device 0's primary context.
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction,
                                                          int, size_t);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, CUstream, void **,
                             void **);
  /// Null where the driver lacks it (before CUDA 11.8).
  CUresult (*cuLaunchKernelEx)(const CUlaunchConfig *, CUfunction, void **,
                               void **);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuGetErrorString)(CUresult, const char **);

  CUdevice device = 0;
  CUcontext context = nullptr;
  int major = 0, minor = 0; // compute capability of device 0
  int multiprocessors = 0;  // SMs of device 0

  /// The driver of this process, loaded and initialised once; null with a
  /// one-line `error` when there is no usable driver or device.
  static Driver *get(std::string &error);

  /// Makes device 0's primary context current on this thread.
  bool makeCurrent(std::string &error);
  /// True when `r` is success; else sets `error` to "WHAT: CUDA error".
  bool check(CUresult r, const char *what, std::string &error) const;
  /// "sm_XY" of device 0.
  std::string chip() const;
};

/// Device memory freed when the handle goes away.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer();
  /// Allocates `bytes` (freeing what it held).
  bool allocate(Driver &d, size_t bytes, std::string &error);
  CUdeviceptr ptr() const { return p; }
  size_t size() const { return bytes; }
  void *data() const { return reinterpret_cast<void *>(p); }

private:
  Driver *driver = nullptr;
  CUdeviceptr p = 0;
  size_t bytes = 0;
};

} // namespace attnc::cuda

#endif // ATTNC_TARGET_CUDADRIVER_H
