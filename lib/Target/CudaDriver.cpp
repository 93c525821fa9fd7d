//===- CudaDriver.cpp - The CUDA driver API, loaded at run time -----------===//
//
// dlopen("libcuda.so.1") on first use; the versioned names (_v2) are the
// ones cuda.h maps the plain names to.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/CudaDriver.h"

#include <dlfcn.h>
#include <mutex>

using namespace attnc::cuda;

// cuda.h's layout.
static_assert(sizeof(CUlaunchAttribute) == 72 &&
                  alignof(CUlaunchAttribute) == 8 &&
                  offsetof(CUlaunchAttribute, value) == 8,
              "CUlaunchAttribute");
static_assert(offsetof(CUlaunchConfig, hStream) == 32 &&
                  offsetof(CUlaunchConfig, attrs) == 40 &&
                  offsetof(CUlaunchConfig, numAttrs) == 48 &&
                  sizeof(CUlaunchConfig) == 56,
              "CUlaunchConfig");

namespace {
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrMultiprocessorCount = 16;
constexpr int kAttrComputeCapabilityMinor = 76;
} // namespace

Driver *Driver::get(std::string &error) {
  static Driver driver;
  static Driver *loaded = nullptr;
  static std::string loadError;
  static std::once_flag once;
  std::call_once(once, [] {
    void *lib = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *why = ::dlerror();
      loadError = std::string("no CUDA driver found (cannot load "
                              "libcuda.so.1") +
                  (why ? std::string(": ") + why : std::string()) +
                  "); the nvptx target needs an NVIDIA GPU and its driver";
      return;
    }
    Driver &d = driver;
    bool ok = true;
    auto sym = [&](auto &fn, const char *name) {
      void *p = ::dlsym(lib, name);
      if (!p && ok) {
        ok = false;
        loadError = std::string("the CUDA driver (libcuda.so.1) lacks ") +
                    name + "; it is too old for the nvptx target";
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    sym(d.cuInit, "cuInit");
    sym(d.cuDeviceGetCount, "cuDeviceGetCount");
    sym(d.cuDeviceGet, "cuDeviceGet");
    sym(d.cuDeviceGetAttribute, "cuDeviceGetAttribute");
    sym(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    sym(d.cuCtxSetCurrent, "cuCtxSetCurrent");
    sym(d.cuCtxSynchronize, "cuCtxSynchronize");
    sym(d.cuModuleLoadDataEx, "cuModuleLoadDataEx");
    sym(d.cuModuleGetFunction, "cuModuleGetFunction");
    sym(d.cuModuleUnload, "cuModuleUnload");
    sym(d.cuFuncSetAttribute, "cuFuncSetAttribute");
    sym(d.cuOccupancyMaxActiveBlocksPerMultiprocessor,
        "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    sym(d.cuLaunchKernel, "cuLaunchKernel");
    d.cuLaunchKernelEx = reinterpret_cast<decltype(d.cuLaunchKernelEx)>(
        ::dlsym(lib, "cuLaunchKernelEx"));
    sym(d.cuMemAlloc, "cuMemAlloc_v2");
    sym(d.cuMemFree, "cuMemFree_v2");
    sym(d.cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    sym(d.cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    sym(d.cuMemsetD8Async, "cuMemsetD8Async");
    sym(d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    sym(d.cuStreamSynchronize, "cuStreamSynchronize");
    sym(d.cuGetErrorString, "cuGetErrorString");
    if (!ok)
      return;
    std::string err;
    int count = 0;
    if (!d.check(d.cuInit(0), "cuInit", err) ||
        !d.check(d.cuDeviceGetCount(&count), "cuDeviceGetCount", err)) {
      loadError = "the CUDA driver does not initialise (" + err +
                  "); the nvptx target needs an NVIDIA GPU";
      return;
    }
    if (count == 0) {
      loadError = "the CUDA driver reports no GPU; the nvptx target needs an "
                  "NVIDIA GPU";
      return;
    }
    if (!d.check(d.cuDeviceGet(&d.device, 0), "cuDeviceGet", err) ||
        !d.check(d.cuDeviceGetAttribute(&d.major, kAttrComputeCapabilityMajor,
                                        d.device),
                 "cuDeviceGetAttribute", err) ||
        !d.check(d.cuDeviceGetAttribute(&d.minor, kAttrComputeCapabilityMinor,
                                        d.device),
                 "cuDeviceGetAttribute", err) ||
        !d.check(d.cuDeviceGetAttribute(&d.multiprocessors,
                                        kAttrMultiprocessorCount, d.device),
                 "cuDeviceGetAttribute", err) ||
        !d.check(d.cuDevicePrimaryCtxRetain(&d.context, d.device),
                 "cuDevicePrimaryCtxRetain", err)) {
      loadError = "cannot use GPU 0: " + err;
      return;
    }
    if (d.major < 8) {
      loadError = "GPU 0 has compute capability " + std::to_string(d.major) +
                  "." + std::to_string(d.minor) +
                  "; the nvptx target needs sm_80 or later";
      return;
    }
    loaded = &d;
  });
  if (!loaded)
    error = loadError;
  return loaded;
}

bool Driver::makeCurrent(std::string &error) {
  return check(cuCtxSetCurrent(context), "cuCtxSetCurrent", error);
}

bool Driver::check(CUresult r, const char *what, std::string &error) const {
  if (r == 0)
    return true;
  const char *msg = nullptr;
  if (cuGetErrorString)
    cuGetErrorString(r, &msg);
  error = std::string(what) + ": " +
          (msg ? msg : "CUDA error " + std::to_string(r));
  return false;
}

std::string Driver::chip() const {
  return "sm_" + std::to_string(major) + std::to_string(minor);
}

DeviceBuffer::~DeviceBuffer() {
  if (driver && p)
    driver->cuMemFree(p);
}

bool DeviceBuffer::allocate(Driver &d, size_t bytes, std::string &error) {
  if (driver && p)
    driver->cuMemFree(p);
  p = 0;
  this->bytes = 0;
  driver = &d;
  // A zero-byte allocation is an error for the driver; keep one byte.
  if (!d.check(d.cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc", error))
    return false;
  this->bytes = bytes;
  return true;
}
