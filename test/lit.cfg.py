# lit configuration of the attnc test suite.
import os
import lit.formats

config.name = "attnc"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".attn", ".test"]
config.excludes = ["lib", "Inputs", "corpus", "Unit", "fuzz", "CMakeLists.txt",
                   "lit.cfg.py", "lit.site.cfg.py", "lit.local.cfg"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attnc_obj_root, "test")

config.environment["PATH"] = os.pathsep.join(
    [config.attnc_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
# Keep runs hermetic: no user cache or thread settings leak in.
config.environment["ATTN_CACHE"] = "0"

config.substitutions.append(("%attnc", os.path.join(config.attnc_tools_dir, "attnc")))
config.substitutions.append(("%attn-opt", os.path.join(config.attnc_tools_dir, "attn-opt")))
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%srcroot", config.attnc_src_root))

if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))

# `cuda`: a CUDA driver with at least one GPU, for end-to-end GPU tests.
def _has_cuda_device():
    try:
        import ctypes
        lib = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and \
            lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except OSError:
        return False

if _has_cuda_device():
    config.available_features.add("cuda")

# `torch`: PyTorch with CUDA under the configured Python, for GPU tests that
# need device tensors with arbitrary strides (asked only where `cuda` is on).
config.substitutions.append(
    ("%libattn", os.path.join(config.attnc_obj_root, "lib", "libattn.so")))
def _has_torch_cuda():
    import subprocess
    try:
        return subprocess.run(
            [config.python_executable, "-c",
             "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False

if "cuda" in config.available_features and _has_torch_cuda():
    config.available_features.add("torch")
