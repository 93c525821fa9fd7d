//===- attnc.cpp - The attnc command line ---------------------------------===//
//
// `attnc FILE.attn --emit=STAGE` compiles a file and prints one stage;
// `attnc run FILE.attn --q Q.npy ...` compiles a variant and runs it on .npy
// tensors. Language errors print located diagnostics; every other bad input
// prints one `error:` line. The exit status is 0 on success, 1 on any error.
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Sema.h"
#include "attnc/Frontend/VariantSelection.h"
#include "attnc/Pipelines/Pipelines.h"
#include "attnc/Support/AtomicFile.h"
#include "attnc/Support/HostMemory.h"
#include "attnc/Support/Npy.h"
#include "attnc/Target/AotHeader.h"
#include "attnc/Target/CpuKernel.h"
#include "attnc/Target/CudaDriver.h"

#include "attn/attn.hpp"

#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <map>
#include <optional>
#include <sys/stat.h>

using namespace attnc;

namespace {

const char *kUsage = R"(attnc - a compiler for attention variants

USAGE
  attnc FILE.attn [--variant NAME] --emit=STAGE [-o OUT] [--dtype f32|f16]
  attnc run FILE.attn [--variant NAME] --q Q.npy --k K.npy --v V.npy
        [--param NAME=VALUE | --param NAME=FILE.npy]... [--target cpu|nvptx]
        -o OUT.npy [--lse LSE.npy] [--stats S.npy] [--reference]
        [--gpu-* options]
  attnc grad FILE.attn [--variant NAME] --q Q.npy --k K.npy --v V.npy
        --do DO.npy [--o O.npy (--lse LSE.npy | --stats S.npy)]
        [--param NAME=VALUE | --param NAME=FILE.npy]...
        --dq DQ.npy --dk DK.npy --dv DV.npy [--dparam NAME=FILE.npy]...
        [--reference]
  attnc cache list|stats|clear
  attnc --help | --version

STAGES (--emit)
  ast      the parsed syntax tree, before any checks
  mlir     the `attn` dialect: one attn.variant per attention block
  grad-mlir  the same with each variant's backward form (attn-differentiate):
           attn.score_grad / attn.sink_grad regions computing the
           derivatives of the score and sink and the param gradients
  loops    the reference kernel: scf loops over memrefs (--dtype picks f32/f16)
  tiled    the optimised CPU kernel: one (b, h, q-tile) work item with the
           mask's kv bounds, tile skipping, online softmax and vector
           micro-kernels (--head-dim N [--value-dim N], default 64)
  llvm     the kernel in the LLVM dialect (the tiled one with --head-dim)
  llvm-ir  the kernel as LLVM IR (the tiled one with --head-dim)
  obj      a relocatable object for this CPU (-o FILE.o; ahead of time)
  header   a C header with a typed entry point for that object: link both
           with the attn_launcher library (see docs/runtime.md). Both give
           the reference kernel, or the tiled one for --head-dim N
           [--value-dim N]; use the same options for both.
  gpu      the GPU kernel: a gpu.module with one gpu.func per variant
  nvvm     the GPU kernel in the LLVM and NVVM dialects
  ptx      the GPU kernel as PTX text for --gpu-arch (default sm_80); the
           GPU stages take --dtype f16 (default for them), bf16 or f32 and
           --head-dim N [--value-dim N] (default 64); no CUDA toolkit needed
  plan     what kernel the compiler chooses for --target cpu (default) or
           nvptx, and why: for nvptx its kind, block shape, kv-tiles,
           shared memory, persistence and mark kernel (the options of the
           other stages apply)

CACHE
  attnc run keeps compiled kernels in $ATTN_CACHE_DIR (default
  $XDG_CACHE_HOME/attnc or ~/.cache/attnc; ATTN_CACHE=0 turns it off,
  ATTN_CACHE_MAX_BYTES caps its size). `attnc cache list` shows the entries,
  `stats` the totals of every process, `clear` removes them.

RUN
  Q [B, H, Lq, D], K [B, Hkv, Lkv, D] and V [B, Hkv, Lkv, Dv] are C-order
  .npy files, all float32 or all float16. The output O [B, H, Lq, Dv] has
  their dtype; --lse writes the float32 log-sum-exp [B, H, Lq] (softmax only),
  --stats the float32 row statistics [B, H, Lq] a later `attnc grad --o`
  needs (softmax: the LSE; linear: the row sums of the scores; cpu target).
  Scalar params take a literal (42, 0.5, true); tensor params a .npy file
  of the declared element type (float32, int32, bool).

GRAD
  attnc grad writes the gradients of a loss L with respect to Q, K, V and
  the f32 params, given dO = dL/dO (the shape and dtype of O). Without
  --o it runs the forward pass first; with --o it needs the forward's row
  statistics: --lse (softmax) or --stats (softmax: the LSE; linear: the
  row sums of the scores); sigmoid and relu need none. --dparam NAME=FILE
  writes the float32 gradient of param NAME (of the param's shape).

OPTIONS
  --variant NAME   the attention block to use (needed when the file has several)
  -o FILE          output file (default: standard output for --emit)
  --loc            print source locations in MLIR output
  --reference      run the reference loop lowering instead of the tiled,
                   vectorised, multi-threaded kernel
  --gpu-arch SM    the GPU to compile for: sm_80, sm_90, ... (default:
                   sm_80 for --emit, the device's for attnc run)
  The GPU kernel, for the GPU stages, --emit=plan and attnc run --target
  nvptx (part of the kernel's identity in the cache, like every option):
  --gpu-kernel K   auto (default: wgmma for sm_90 and head dims 64, 128,
                   192 or 256, else mma where it applies, else simt), mma
                   (tensor cores; f16 or bf16, head dims multiples of 16),
                   wgmma (Hopper's warpgroup MMA, sm_90; head dims
                   multiples of 64) or simt (one thread per row)
  --gpu-persistent on|off
                   whether the wgmma kernel may be persistent (default
                   off; experimental, measured slower): for data-dependent
                   masks it then loops over its work items, copying the
                   next item's tiles while it writes O
  --gpu-mark-kernel on|off
                   data-dependent masks (not persistent): a mark kernel
                   (@<variant>_marks), run first, works out each q-tile's
                   live kv-tiles once for all the blocks (default on;
                   not when the mask reads both b and h); its PTX then
                   holds both kernels, each taking a marks buffer
                   (memref<?xi32>) after the status words
  --threads N      worker threads for attnc run (default: all cores, or
                   $ATTN_NUM_THREADS)
  --vector-width N f32 lanes per vector of the CPU kernel for --emit=tiled,
                   llvm, llvm-ir, obj and header: 4, 8 or 16 (default: this
                   CPU's, 16 with AVX-512, else 8; `attnc --version` says)

EXAMPLE
  attnc examples/alibi.attn --variant alibi --emit=mlir
  attnc run examples/variants.attn --variant causal_lm \
      --q examples/data/q.npy --k examples/data/k.npy --v examples/data/v.npy -o o.npy
)";

/// The output files (-o, --lse, --stats): created as temporary files before any
/// work, so that an output that cannot be written stops the run before it
/// starts, and renamed into place only once everything succeeded. fail()
/// and signals remove them: a failed run leaves no new or partial file.
AtomicFile outputFile, lseFile, statsFile;

[[noreturn]] void fail(const llvm::Twine &msg) {
  outputFile.discard();
  lseFile.discard();
  statsFile.discard();
  llvm::errs() << "error: " << msg << "\n";
  std::exit(1);
}

/// Whether two output paths name one file: the same name in one folder.
bool sameFile(const std::string &a, const std::string &b) {
  auto split = [](const std::string &p) {
    size_t slash = p.rfind('/');
    return std::pair<std::string, std::string>(
        slash == std::string::npos ? "." : p.substr(0, slash + 1),
        slash == std::string::npos ? p : p.substr(slash + 1));
  };
  auto [dirA, nameA] = split(a);
  auto [dirB, nameB] = split(b);
  struct stat sa, sb;
  return nameA == nameB && ::stat(dirA.c_str(), &sa) == 0 &&
         ::stat(dirB.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

void openOutput(AtomicFile &file, const std::string &path) {
  std::string err;
  if (!file.open(path, err))
    fail(err);
  llvm::sys::RemoveFileOnSignal(file.tempPath());
}

/// Flushes every open output, then renames them into place.
void commitOutputs() {
  std::string err;
  for (AtomicFile *f : {&outputFile, &lseFile, &statsFile})
    if (f->isOpen() && !f->finish(err))
      fail(err);
  for (AtomicFile *f : {&outputFile, &lseFile, &statsFile}) {
    if (!f->isOpen())
      continue;
    std::string temp = f->tempPath();
    if (!f->commit(err))
      fail(err);
    llvm::sys::DontRemoveFileOnSignal(temp);
  }
}

/// Prints the output of --emit to -o FILE, or to standard output.
void emitOutput(llvm::function_ref<void(llvm::raw_ostream &)> print) {
  if (!outputFile.isOpen()) {
    print(llvm::outs());
    return;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  print(os);
  os.flush();
  std::string err;
  if (!outputFile.write(text.data(), text.size(), err))
    fail(err);
  commitOutputs();
}

struct Options {
  bool run = false;
  bool grad = false;
  std::string dO, inO, stats, dq, dk, dv;
  std::vector<std::string> dparams;
  std::string input;
  std::string variant;
  std::string emit;
  std::string output;
  std::string dtype;   // f32 (CPU) or f16 (GPU stages) unless given
  std::string gpuArch; // empty: sm_80 (--emit), the device's (run)
  std::string gpuKernel = "auto";
  std::string gpuPersistent = "off";
  std::string gpuMarkKernel = "on";
  std::string q, k, v, lse, target = "cpu";
  std::string threads;
  std::string headDim, valueDim; // --emit=obj/header: a tiled kernel
  int vectorWidth = 0;           // 0: the host's
  std::vector<std::string> params;
  bool printLoc = false;
  bool reference = false;
};

Options parseArgs(int argc, char **argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  if (!args.empty() && args[0] == "run") {
    o.run = true;
    ++i;
  } else if (!args.empty() && args[0] == "grad") {
    o.grad = true;
    ++i;
  }
  auto value = [&](const std::string &arg, const std::string &name,
                   std::string &out) {
    // --name=value or --name value
    if (arg.size() > name.size() && arg.compare(0, name.size(), name) == 0 &&
        arg[name.size()] == '=') {
      out = arg.substr(name.size() + 1);
      return true;
    }
    if (arg != name)
      return false;
    if (i + 1 >= args.size())
      fail("option '" + name + "' needs a value");
    out = args[++i];
    return true;
  };
  for (; i < args.size(); ++i) {
    const std::string &a = args[i];
    std::string param;
    if (a == "--help" || a == "-h") {
      llvm::outs() << kUsage;
      std::exit(0);
    }
    if (a == "--version") {
      const HostTarget &host = HostTarget::native();
      llvm::outs() << "attnc 0.1 (MLIR/LLVM " LLVM_VERSION_STRING ")\n"
                   << "host: " << host.triple << ", cpu " << host.cpu
                   << "; CPU kernels use " << hostVectorWidth(0)
                   << "-lane f32 vectors\n";
      std::exit(0);
    }
    if (a == "--loc") {
      o.printLoc = true;
      continue;
    }
    if (a == "--reference") {
      o.reference = true;
      continue;
    }
    if (value(a, "--variant", o.variant) || value(a, "--emit", o.emit) ||
        value(a, "-o", o.output) || value(a, "--dtype", o.dtype) ||
        value(a, "--q", o.q) || value(a, "--k", o.k) || value(a, "--v", o.v) ||
        value(a, "--lse", o.lse) || value(a, "--target", o.target) ||
        value(a, "--threads", o.threads) || value(a, "--head-dim", o.headDim) ||
        value(a, "--gpu-arch", o.gpuArch) ||
        value(a, "--gpu-kernel", o.gpuKernel) ||
        value(a, "--gpu-persistent", o.gpuPersistent) ||
        value(a, "--gpu-mark-kernel", o.gpuMarkKernel) ||
        value(a, "--value-dim", o.valueDim) || value(a, "--do", o.dO) ||
        value(a, "--o", o.inO) || value(a, "--stats", o.stats) ||
        value(a, "--dq", o.dq) || value(a, "--dk", o.dk) ||
        value(a, "--dv", o.dv))
      continue;
    std::string width;
    if (value(a, "--vector-width", width)) {
      if (width != "4" && width != "8" && width != "16")
        fail("--vector-width must be 4, 8 or 16, got '" + width + "'");
      o.vectorWidth = std::stoi(width);
      continue;
    }
    if (value(a, "--param", param)) {
      o.params.push_back(param);
      continue;
    }
    if (value(a, "--dparam", param)) {
      o.dparams.push_back(param);
      continue;
    }
    if (!a.empty() && a[0] == '-' && a != "-")
      fail("unknown option '" + a + "' (see attnc --help)");
    if (!o.input.empty())
      fail("more than one input file ('" + o.input + "' and '" + a + "')");
    o.input = a;
  }
  if (o.input.empty())
    fail("no input file (see attnc --help)");
  bool gpuStage = o.emit == "gpu" || o.emit == "nvvm" || o.emit == "ptx" ||
                  (o.emit == "plan" && o.target == "nvptx");
  if (o.dtype.empty())
    o.dtype = gpuStage ? "f16" : "f32";
  if (o.dtype != "f32" && o.dtype != "f16" && !(gpuStage && o.dtype == "bf16"))
    fail("--dtype must be f32 or f16" +
         std::string(gpuStage ? " or bf16" : "") + ", got '" + o.dtype + "'");
  if (!o.gpuArch.empty() && !isSupportedGpuChip(o.gpuArch))
    fail("--gpu-arch must be sm_80 or later (sm_80, sm_90, ...), got '" +
         o.gpuArch + "'");
  GpuKernelKind kind;
  if (o.gpuKernel != "auto" && !parseGpuKernelKind(o.gpuKernel, kind))
    fail("unknown GPU kernel '" + o.gpuKernel +
         "' (expected auto, mma, wgmma or simt)");
  for (auto [flag, value] : {std::pair{"--gpu-persistent", &o.gpuPersistent},
                             std::pair{"--gpu-mark-kernel", &o.gpuMarkKernel}})
    if (*value != "on" && *value != "off")
      fail(std::string(flag) + " must be on or off, got '" + *value + "'");
  if (o.grad) {
    if (!o.emit.empty())
      fail("'--emit' is not an option of 'attnc grad'");
    if (!o.output.empty())
      fail("attnc grad writes --dq, --dk, --dv and --dparam files, not -o");
    if (o.q.empty() || o.k.empty() || o.v.empty() || o.dO.empty())
      fail("attnc grad needs --q, --k, --v and --do");
    if (o.dq.empty() || o.dk.empty() || o.dv.empty())
      fail("attnc grad needs --dq, --dk and --dv");
    if (o.inO.empty() && (!o.lse.empty() || !o.stats.empty()))
      fail("--lse and --stats go with --o (the forward's output)");
    if (!o.lse.empty() && !o.stats.empty())
      fail("give --lse or --stats, not both");
    if (o.target != "cpu")
      fail("attnc grad runs on the cpu target only");
    if (!o.threads.empty() &&
        (o.threads.find_first_not_of("0123456789") != std::string::npos ||
         o.threads.size() > 4 || std::stoi(o.threads) < 1))
      fail("--threads must be a positive integer, got '" + o.threads + "'");
  } else if (!o.dO.empty() || !o.dq.empty() || !o.dk.empty() || !o.dv.empty() ||
             !o.inO.empty() || !o.dparams.empty() ||
             (!o.run && !o.stats.empty())) {
    fail("--do, --o, --dq, --dk, --dv and --dparam are options of 'attnc "
         "grad' (--stats of 'attnc run' and 'attnc grad')");
  } else if (o.run) {
    if (!o.emit.empty())
      fail("'--emit' is not an option of 'attnc run'");
    if (o.vectorWidth)
      fail("'--vector-width' is not an option of 'attnc run' (kernels run "
           "with this CPU's vector width)");
    if (o.q.empty() || o.k.empty() || o.v.empty())
      fail("attnc run needs --q, --k and --v");
    if (o.output.empty())
      fail("attnc run needs -o OUT.npy");
    if (!o.threads.empty() &&
        (o.threads.find_first_not_of("0123456789") != std::string::npos ||
         o.threads.size() > 4 || std::stoi(o.threads) < 1))
      fail("--threads must be a positive integer, got '" + o.threads + "'");
    if (o.target != "cpu" && o.target != "nvptx")
      fail("unknown target '" + o.target + "' (expected cpu or nvptx)");
  } else {
    if (o.emit.empty())
      fail("nothing to do: give --emit=STAGE or use 'attnc run' (see attnc "
           "--help)");
    static const char *stages[] = {
        "ast", "mlir",   "grad-mlir", "loops", "tiled", "llvm", "llvm-ir",
        "obj", "header", "gpu",       "nvvm",  "ptx",   "plan"};
    if (std::find(std::begin(stages), std::end(stages), o.emit) ==
        std::end(stages))
      fail("unknown stage '" + o.emit +
           "' for --emit (expected ast, mlir, grad-mlir, loops, tiled, llvm, "
           "llvm-ir, obj, header, gpu, nvvm, ptx or plan)");
    if (o.target != "cpu" && o.target != "nvptx")
      fail("unknown target '" + o.target + "' (expected cpu or nvptx)");
    for (const std::string *dim : {&o.headDim, &o.valueDim})
      if (!dim->empty() &&
          (dim->find_first_not_of("0123456789") != std::string::npos ||
           dim->size() > 6 || std::stoi(*dim) < 1))
        fail("--head-dim and --value-dim must be positive integers, got '" +
             *dim + "'");
    if (o.emit == "obj" && (o.output.empty() || o.output == "-"))
      fail("--emit=obj writes a binary object file; give -o FILE.o");
  }
  return o;
}

/// Creates the temporary files of every output named on the command line.
void openOutputs(const Options &o) {
  if (o.run) {
    if (!o.lse.empty() && sameFile(o.output, o.lse))
      fail("-o and --lse name the same file '" + o.lse + "'");
    if (!o.stats.empty() && (sameFile(o.output, o.stats) ||
                             (!o.lse.empty() && sameFile(o.lse, o.stats))))
      fail("--stats names the same file as -o or --lse: '" + o.stats + "'");
    openOutput(outputFile, o.output);
    if (!o.lse.empty())
      openOutput(lseFile, o.lse);
    if (!o.stats.empty())
      openOutput(statsFile, o.stats);
  } else if (!o.output.empty() && o.output != "-") {
    openOutput(outputFile, o.output);
  }
}

/// The GPU kernel the command line asks for (chip: --gpu-arch, else sm_80).
GpuKernelOptions gpuOptions(const Options &o) {
  GpuKernelOptions g;
  g.elementType = o.dtype == "f32"    ? DType::F32
                  : o.dtype == "bf16" ? DType::BF16
                                      : DType::F16;
  if (!o.headDim.empty())
    g.headDim = g.valueDim = std::stoi(o.headDim);
  if (!o.valueDim.empty())
    g.valueDim = std::stoi(o.valueDim);
  g.chip = o.gpuArch.empty() ? "sm_80" : o.gpuArch;
  GpuKernelKind kind;
  if (parseGpuKernelKind(o.gpuKernel, kind))
    g.kernel = kind;
  g.persistent = o.gpuPersistent == "on";
  g.markKernel = o.gpuMarkKernel == "on";
  return g;
}

/// Picks the variant to compile; empty `wanted` means "the only one".
std::string chooseVariant(mlir::ModuleOp module, const std::string &wanted,
                          const std::string &file) {
  std::string name, error;
  if (!attnc::chooseVariant(variantNames(module), wanted, file,
                            "--variant NAME", name, error))
    fail(error);
  return name;
}

/// Parses a --param literal for a scalar of type `type`.
ScalarValue parseScalar(const std::string &name, const std::string &text,
                        ParamType type) {
  auto bad = [&](const char *what) {
    fail("--param " + name + "=" + text + ": param '" + name + "' is " +
         paramTypeName(type) + ", expected " + what);
  };
  if (type == ParamType::Bool) {
    if (text == "true" || text == "1")
      return {1};
    if (text == "false" || text == "0")
      return {0};
    bad("true or false");
  }
  char *end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0')
    bad(type == ParamType::I32 ? "an integer" : "a number");
  // inf, nan and values beyond f32's range alike: none is a finite f32
  // (a value too small for it rounds to zero, as literals in the source do).
  bool overflow = errno == ERANGE && std::fabs(v) >= 1;
  if (overflow || !std::isfinite(v) ||
      (type == ParamType::F32 && std::fabs(v) > FLT_MAX))
    bad(type == ParamType::I32
            ? "an integer"
            : "a finite f32 number (up to 3.4028235e+38 in magnitude)");
  if (type == ParamType::I32 &&
      (v != std::trunc(v) || v < INT32_MIN || v > INT32_MAX ||
       text.find_first_of(".eE") != std::string::npos))
    bad("an integer");
  return {v};
}

NpyArray readOrFail(const std::string &path) {
  NpyArray arr;
  std::string err;
  if (!readNpy(path, arr, err))
    fail(err);
  return arr;
}

static uint8_t emptyStorage[8];

/// The data of `a` for a view: zero-element arrays may have no storage,
/// which libattn never touches.
void *dataOf(NpyArray &a) {
  return a.data.empty() ? emptyStorage : a.data.data();
}

attn::DType publicDType(DType d) {
  return d == DType::F32   ? attn::DType::F32
         : d == DType::F16 ? attn::DType::F16
         : d == DType::I32 ? attn::DType::I32
                           : attn::DType::Bool;
}

ParamType paramType(attn::DType d) {
  return d == attn::DType::F32   ? ParamType::F32
         : d == attn::DType::I32 ? ParamType::I32
                                 : ParamType::Bool;
}

attn::Tensor viewOf(NpyArray &a) {
  return attn::Tensor::contiguous(dataOf(a), publicDType(a.dtype), a.shape);
}

/// Binds the --param options to `params` against variant `name`'s
/// signature; tensors are read into `tensors` (which keeps their data).
void bindParams(const std::vector<std::string> &options,
                const attn::Signature &sig, const std::string &name,
                std::map<std::string, attn::ParamValue> &params,
                std::map<std::string, NpyArray> &tensors) {
  for (const std::string &p : options) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("--param '" + p + "' must be NAME=VALUE or NAME=FILE.npy");
    std::string pname = p.substr(0, eq), text = p.substr(eq + 1);
    if (params.count(pname))
      fail("--param '" + pname + "' is given twice");
    auto it = std::find_if(
        sig.params.begin(), sig.params.end(),
        [&](const attn::ParamInfo &sp) { return sp.name == pname; });
    if (it == sig.params.end()) {
      std::vector<std::string> known;
      for (const attn::ParamInfo &sp : sig.params)
        known.push_back(sp.name);
      std::string msg =
          "unknown param '" + pname + "' for variant '" + name + "'";
      std::vector<llvm::StringRef> refs(known.begin(), known.end());
      std::string near = ast::didYouMean(pname, refs);
      if (!near.empty())
        msg += near;
      else if (!known.empty())
        msg += " (its params: " + llvm::join(known, ", ") + ")";
      else
        msg += " (it takes no params)";
      fail(msg);
    }
    if (it->isTensor) {
      if (llvm::StringRef(text).ends_with(".npy") == false)
        fail("--param " + p + ": param '" + pname +
             "' is a tensor; give a .npy file");
      NpyArray &arr = tensors[pname] = readOrFail(text);
      params[pname] = viewOf(arr);
    } else {
      if (llvm::StringRef(text).ends_with(".npy"))
        fail("--param " + p + ": param '" + pname + "' is a scalar " +
             paramTypeName(paramType(it->dtype)) + "; give a literal");
      params[pname] = parseScalar(pname, text, paramType(it->dtype)).value;
    }
  }
}

int runVariant(const Options &o, mlir::ModuleOp module,
               const std::string &source) {
  bool gpu = o.target == "nvptx";
  if (gpu) {
    // Before reading any input: without a driver, say so first.
    std::string why;
    if (!cuda::Driver::get(why))
      fail(why);
  }
  std::string name = chooseVariant(module, o.variant, o.input);
  NpyArray q = readOrFail(o.q), k = readOrFail(o.k), v = readOrFail(o.v);
  for (auto [what, arr, path] :
       {std::tuple{"Q", &q, &o.q}, {"K", &k, &o.k}, {"V", &v, &o.v}}) {
    if (arr->dtype != DType::F32 && arr->dtype != DType::F16)
      fail(*path + ": " + what + " must be float32 or float16, got " +
           dtypeName(arr->dtype));
    if (arr->shape.size() != 4)
      fail(*path + ": " + what + " must have rank 4 (" +
           (std::string(what) == "Q"   ? "B, H, Lq, D"
            : std::string(what) == "K" ? "B, Hkv, Lkv, D"
                                       : "B, Hkv, Lkv, Dv") +
           "), got shape " + formatShape(arr->shape));
  }
  if (q.dtype != k.dtype || q.dtype != v.dtype)
    fail(std::string("Q, K and V must have the same dtype, got ") +
         dtypeName(q.dtype) + ", " + dtypeName(k.dtype) + " and " +
         dtypeName(v.dtype));

  // O and LSE, poisoned so that an unwritten element shows as NaN. Their
  // sizes come from the inputs' shapes and are checked before allocating:
  // a problem too large for this machine is an error, not an abort.
  NpyArray out;
  out.dtype = q.dtype;
  out.shape = {q.shape[0], q.shape[1], q.shape[2], v.shape[3]};
  NpyArray lse;
  lse.dtype = DType::F32;
  lse.shape = {q.shape[0], q.shape[1], q.shape[2]};
  {
    unsigned __int128 oBytes = dtypeSize(out.dtype), lseBytes = 4;
    for (int64_t d : out.shape)
      oBytes *= static_cast<uint64_t>(d); // each below 2^63: no overflow
    for (int64_t d : lse.shape)
      lseBytes *= static_cast<uint64_t>(d);
    unsigned __int128 total = oBytes + (o.lse.empty() ? 0 : lseBytes);
    uint64_t memory = hostMemoryBytes();
    auto text = [](unsigned __int128 b) {
      return b > UINT64_MAX ? std::string("more than 2^64 bytes")
                            : formatBytes(static_cast<uint64_t>(b));
    };
    if (total > memory || !canAllocate(static_cast<uint64_t>(total)))
      fail("the output O of shape " + formatShape(out.shape) + " (" +
           dtypeName(out.dtype) + ") needs " + text(oBytes) +
           (o.lse.empty() ? std::string()
                          : " and LSE of shape " + formatShape(lse.shape) +
                                " " + text(lseBytes)) +
           ", more than this machine can allocate (" +
           (total > memory ? formatBytes(memory) + " of RAM and swap"
                           : std::string("the allocation failed")) +
           "); Q is " + formatShape(q.shape) + ", K " + formatShape(k.shape) +
           ", V " + formatShape(v.shape));
  }
  // Compile through the runtime's kernel cache (in memory and on disk), so
  // that running a variant again loads it instead of compiling it. The tiled
  // kernel is specialised for the head dims; --reference runs the plain
  // loops that every optimised path is tested against.
  attn::CompileOptions ropts;
  ropts.variant = name;
  ropts.dtype = q.dtype == DType::F16 ? attn::DType::F16 : attn::DType::F32;
  ropts.tiling =
      o.reference ? attn::Tiling::reference() : attn::Tiling::automatic();
  if (gpu) {
    ropts.target = attn::Target::NVPTX;
    ropts.gpu.kernel = o.gpuKernel == "mma" ? attn::GpuOptions::Kernel::Mma
                       : o.gpuKernel == "wgmma"
                           ? attn::GpuOptions::Kernel::Wgmma
                       : o.gpuKernel == "simt" ? attn::GpuOptions::Kernel::Simt
                                               : attn::GpuOptions::Kernel::Auto;
    ropts.gpu.persistent = o.gpuPersistent == "on";
    ropts.gpu.markKernel = o.gpuMarkKernel == "on";
    ropts.gpu.arch = o.gpuArch;
  }
  ropts.headDim = q.shape[3];
  ropts.valueDim = v.shape[3];
  std::string err;
  attn::Kernel kernel;
  if (attn::Runtime::global().compile(source, ropts, kernel, err) !=
      attn::Status::Ok)
    fail(err);
  const attn::Signature &sig = kernel.signature();

  out.data.assign(out.numel() * dtypeSize(out.dtype), 0xFF);
  if (!o.lse.empty())
    lse.data.assign(lse.numel() * 4, 0xFF);

  attn::RunArgs args;
  std::vector<uint8_t> rowStats;
  if (!o.threads.empty())
    args.threads = std::stoi(o.threads);
  args.q = viewOf(q);
  args.k = viewOf(k);
  args.v = viewOf(v);
  args.o = viewOf(out);
  if (!o.lse.empty())
    args.lse = viewOf(lse);

  std::map<std::string, NpyArray> tensorParams;
  bindParams(o.params, sig, name, args.params, tensorParams);
  if (!o.stats.empty()) {
    if (gpu)
      fail("--stats: the nvptx kernels do not save row statistics yet");
    if (!sig.hasRowStats)
      fail("--stats: 'normalize " + sig.normalization +
           "' saves no row statistics (only softmax and linear have them)");
    if (!o.lse.empty() && sig.normalization == "softmax")
      fail("for softmax the row statistics are the LSE: give --lse or "
           "--stats, not both");
    rowStats.assign(lse.numel() * 4, 0xFF);
    args.rowStats =
        attn::Tensor::contiguous(rowStats.data(), attn::DType::F32, lse.shape);
  }

  if (gpu) {
    // Every tensor to device memory (contiguous, same bytes), run, and O and
    // LSE back.
    cuda::Driver *d = cuda::Driver::get(err);
    if (!d || !d->makeCurrent(err))
      fail(err);
    std::vector<std::unique_ptr<cuda::DeviceBuffer>> buffers;
    auto toDevice = [&](attn::Tensor &t, NpyArray &a) {
      auto buf = std::make_unique<cuda::DeviceBuffer>();
      if (!buf->allocate(*d, a.data.size(), err) ||
          !d->check(d->cuMemcpyHtoD(buf->ptr(), dataOf(a), a.data.size()),
                    "cuMemcpyHtoD", err))
        fail(err);
      t.data = buf->data();
      buffers.push_back(std::move(buf));
      return buffers.back()->ptr();
    };
    toDevice(args.q, q);
    toDevice(args.k, k);
    toDevice(args.v, v);
    cuda::CUdeviceptr dO = toDevice(args.o, out);
    cuda::CUdeviceptr dL = 0;
    if (args.lse)
      dL = toDevice(*args.lse, lse);
    for (auto &[pname, arr] : tensorParams)
      toDevice(std::get<attn::Tensor>(args.params[pname]), arr);
    if (kernel.run(args, err) != attn::Status::Ok)
      fail(err);
    if (!d->check(d->cuMemcpyDtoH(dataOf(out), dO, out.data.size()),
                  "cuMemcpyDtoH", err) ||
        (dL && !d->check(d->cuMemcpyDtoH(dataOf(lse), dL, lse.data.size()),
                         "cuMemcpyDtoH", err)))
      fail(err);
  } else if (kernel.run(args, err) != attn::Status::Ok) {
    fail(err);
  }
  if (!writeNpy(outputFile, out, err) ||
      (!o.lse.empty() && !writeNpy(lseFile, lse, err)))
    fail(err);
  if (!o.stats.empty()) {
    NpyArray s;
    s.dtype = DType::F32;
    s.shape = lse.shape;
    s.data = rowStats;
    if (!writeNpy(statsFile, s, err))
      fail(err);
  }
  commitOutputs();
  return 0;
}

/// `attnc grad`: the backward pass on .npy tensors, on the CPU, through
/// the runtime's kernel cache like `attnc run`.
int gradVariant(const Options &o, mlir::ModuleOp module,
                const std::string &source) {
  std::string name = chooseVariant(module, o.variant, o.input);
  {
    // The backward form once here, so that what it says (a param whose
    // gradient is zero because only the mask reads it) is shown with its
    // location; the kernels compile through the runtime below.
    mlir::OwningOpRef<mlir::ModuleOp> copy = module.clone();
    keepOnlyVariant(*copy, name);
    mlir::DialectRegistry registry;
    registerDialects(registry);
    module.getContext()->appendDialectRegistry(registry);
    mlir::PassManager pm(module.getContext());
    buildDifferentiatePipeline(pm);
    if (mlir::failed(pm.run(*copy)))
      return 1;
  }
  NpyArray q = readOrFail(o.q), k = readOrFail(o.k), v = readOrFail(o.v);
  NpyArray dO = readOrFail(o.dO);
  for (auto [what, arr, path] : {std::tuple{"Q", &q, &o.q},
                                 {"K", &k, &o.k},
                                 {"V", &v, &o.v},
                                 {"dO", &dO, &o.dO}}) {
    if (arr->dtype != DType::F32 && arr->dtype != DType::F16)
      fail(*path + ": " + what + " must be float32 or float16, got " +
           dtypeName(arr->dtype));
    if (arr->shape.size() != 4)
      fail(*path + ": " + what + " must have rank 4, got shape " +
           formatShape(arr->shape));
  }
  if (q.dtype != k.dtype || q.dtype != v.dtype)
    fail(std::string("Q, K and V must have the same dtype, got ") +
         dtypeName(q.dtype) + ", " + dtypeName(k.dtype) + " and " +
         dtypeName(v.dtype));

  // The forward and backward kernels, through the kernel cache.
  attn::CompileOptions ropts;
  ropts.variant = name;
  ropts.dtype = q.dtype == DType::F16 ? attn::DType::F16 : attn::DType::F32;
  ropts.tiling =
      o.reference ? attn::Tiling::reference() : attn::Tiling::automatic();
  ropts.headDim = q.shape[3];
  ropts.valueDim = v.shape[3];
  std::string err;
  auto compile = [&](bool backward) {
    attn::CompileOptions c = ropts;
    c.backward = backward;
    attn::Kernel kernel;
    if (attn::Runtime::global().compile(source, c, kernel, err) !=
        attn::Status::Ok)
      fail(err);
    return kernel;
  };
  attn::Kernel bwd = compile(true);
  const attn::Signature &sig = bwd.signature();
  auto poisoned = [&](DType dtype, std::vector<int64_t> shape) {
    NpyArray a;
    a.dtype = dtype;
    a.shape = std::move(shape);
    a.data.assign(a.numel() * dtypeSize(dtype), 0xFF);
    return a;
  };
  std::map<std::string, attn::ParamValue> params;
  std::map<std::string, NpyArray> tensorParams;
  bindParams(o.params, sig, name, params, tensorParams);
  int threads = o.threads.empty() ? 0 : std::stoi(o.threads);

  // O and the row statistics: given, or from a forward run.
  NpyArray out, stats;
  std::vector<int64_t> rowShape = {q.shape[0], q.shape[1], q.shape[2]};
  if (!o.inO.empty()) {
    out = readOrFail(o.inO);
    std::string statsPath = !o.lse.empty() ? o.lse : o.stats;
    if (!o.lse.empty() && sig.normalization != "softmax")
      fail("--lse: 'normalize " + sig.normalization + "' has no log-sum-exp" +
           (sig.normalization == "linear"
                ? std::string("; its backward takes the row sums (--stats)")
                : std::string("; its backward needs no row statistics")));
    if (sig.hasRowStats && statsPath.empty())
      fail("the backward of variant '" + name + "' (normalize " +
           sig.normalization +
           ") needs the forward's row statistics with --o: give " +
           (sig.normalization == "softmax" ? "--lse LSE.npy (or --stats)"
                                           : "--stats S.npy") +
           ", or leave out --o to run the forward here");
    if (!statsPath.empty()) {
      if (!sig.hasRowStats)
        fail("--stats: 'normalize " + sig.normalization +
             "' saves no row statistics; its backward needs none");
      stats = readOrFail(statsPath);
    }
  } else {
    attn::Kernel fwd = compile(false);
    out = poisoned(q.dtype, {q.shape[0], q.shape[1], q.shape[2], v.shape[3]});
    attn::RunArgs run;
    run.q = viewOf(q);
    run.k = viewOf(k);
    run.v = viewOf(v);
    run.o = viewOf(out);
    if (sig.hasRowStats) {
      stats = poisoned(DType::F32, rowShape);
      run.rowStats = viewOf(stats);
    }
    run.params = params;
    run.threads = threads;
    if (fwd.run(run, err) != attn::Status::Ok)
      fail(err);
  }

  attn::BackwardArgs args;
  args.q = viewOf(q);
  args.k = viewOf(k);
  args.v = viewOf(v);
  args.o = viewOf(out);
  args.dO = viewOf(dO);
  if (!stats.shape.empty())
    args.rowStats = viewOf(stats);
  NpyArray dq = poisoned(q.dtype, q.shape), dk = poisoned(k.dtype, k.shape),
           dv = poisoned(v.dtype, v.shape);
  args.dq = viewOf(dq);
  args.dk = viewOf(dk);
  args.dv = viewOf(dv);
  args.params = params;
  args.threads = threads;
  std::map<std::string, std::pair<NpyArray, std::string>> dparams;
  for (const std::string &p : o.dparams) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == p.size())
      fail("--dparam '" + p + "' must be NAME=FILE.npy");
    std::string pname = p.substr(0, eq), path = p.substr(eq + 1);
    if (dparams.count(pname))
      fail("--dparam '" + pname + "' is given twice");
    const attn::ParamInfo *info = sig.param(pname);
    std::vector<int64_t> shape;
    if (info && info->isTensor) {
      auto t = tensorParams.find(pname);
      if (t == tensorParams.end())
        fail("missing tensor param '" + pname + "' (" + info->declaredType +
             ")");
      shape = t->second.shape;
    }
    auto &[arr, file] = dparams[pname];
    arr = poisoned(DType::F32, shape);
    file = path;
    args.paramGrads[pname] = viewOf(arr);
  }
  if (bwd.runBackward(args, err) != attn::Status::Ok)
    fail(err);
  for (auto [arr, path] : {std::pair{&dq, &o.dq}, {&dk, &o.dk}, {&dv, &o.dv}})
    if (!writeNpy(*path, *arr, err))
      fail(err);
  for (auto &[pname, entry] : dparams)
    if (!writeNpy(entry.second, entry.first, err))
      fail(err);
  return 0;
}

std::string formatTime(int64_t t) {
  char buf[32] = "?";
  time_t tt = static_cast<time_t>(t);
  struct tm tmv;
  if (t > 0 && localtime_r(&tt, &tmv))
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tmv);
  return buf;
}

/// `attnc cache list|stats|clear`: the runtime's disk cache.
int cacheCommand(int argc, char **argv) {
  std::string cmd = argc == 1 ? argv[0] : "";
  if (cmd == "--help" || cmd == "-h") {
    llvm::outs() << "usage: attnc cache list|stats|clear\n";
    return 0;
  }
  if (cmd != "list" && cmd != "stats" && cmd != "clear")
    fail("usage: attnc cache list|stats|clear");
  attn::Runtime &rt = attn::Runtime::global();
  const attn::CacheConfig &config = rt.cacheConfig();
  if (rt.cacheFolder().empty()) {
    llvm::outs() << "the disk cache is off ("
                 << (config.diskCache ? "no cache folder: set ATTN_CACHE_DIR"
                                      : "ATTN_CACHE=0")
                 << ")\n";
    return 0;
  }
  std::vector<attn::CacheEntry> entries = rt.diskEntries();
  uint64_t total = 0;
  for (const attn::CacheEntry &e : entries)
    total += e.bytes;
  if (cmd == "list") {
    llvm::outs() << llvm::format("%-16s  %-16s  %-46s  %10s  %s\n", "key",
                                 "variant", "options", "bytes", "last used");
    for (const attn::CacheEntry &e : entries)
      llvm::outs() << llvm::format("%-16s  %-16s  %-46s  %10llu  %s\n",
                                   e.key.substr(0, 16).c_str(),
                                   e.variant.c_str(), e.options.c_str(),
                                   static_cast<unsigned long long>(e.bytes),
                                   formatTime(e.lastUsed).c_str());
    llvm::outs() << entries.size() << " entries, " << total << " bytes in "
                 << rt.cacheFolder() << "\n";
  } else if (cmd == "stats") {
    attn::CacheStats s = rt.diskStats();
    llvm::outs() << "folder           " << rt.cacheFolder() << "\n"
                 << "entries          " << entries.size() << "\n"
                 << "bytes            " << total << " of " << config.maxBytes
                 << " (cap)\n"
                 << "compiles         " << s.compiles << "\n"
                 << "disk hits        " << s.diskHits << "\n"
                 << "disk writes      " << s.diskWrites << "\n"
                 << "evictions        " << s.evictions << "\n"
                 << "corrupt entries  " << s.corruptEntries << "\n"
                 << "(totals of every process since the last clear)\n";
  } else {
    attn::CacheClearReport report;
    std::string error;
    attn::Status status = rt.clearCache(report, error);
    llvm::outs() << "removed " << report.entries << " entries (" << report.bytes
                 << " bytes) from " << rt.cacheFolder() << "\n";
    if (status != attn::Status::Ok) {
      llvm::outs().flush();
      for (const std::string &failure : report.failures)
        llvm::errs() << "error: " << failure << "\n";
      if (report.failures.empty())
        llvm::errs() << "error: " << error << "\n";
      return 1;
    }
  }
  return 0;
}

/// --emit=obj and --emit=header: the pieces of an ahead-of-time kernel.
int emitAot(const Options &o, mlir::MLIRContext &ctx, mlir::ModuleOp module) {
  std::string name = chooseVariant(module, o.variant, o.input);
  keepOnlyVariant(module, name);
  CpuCompileOptions copts;
  copts.elementType = o.dtype == "f16" ? DType::F16 : DType::F32;
  copts.vectorWidth = o.vectorWidth;
  AotKernelShape shape;
  if (!o.headDim.empty() && !o.reference) {
    copts.reference = false;
    copts.headDim = std::stoi(o.headDim);
    copts.valueDim = o.valueDim.empty() ? copts.headDim : std::stoi(o.valueDim);
    shape.tiled = true;
    shape.tileQ = copts.tileQ;
    shape.tileKV = copts.tileKV;
    shape.vectorWidth = hostVectorWidth(copts.vectorWidth);
    shape.headDim = copts.headDim;
    shape.valueDim = copts.valueDim;
  } else {
    copts.reference = true;
  }
  if (o.emit == "header") {
    auto variant = llvm::cast<mlir::attn::VariantOp>(
        mlir::SymbolTable::lookupSymbolIn(module, name));
    const HostTarget &host = HostTarget::native();
    std::string text = emitAotHeader(
        KernelSignature::fromVariant(variant), copts.elementType, shape,
        o.input + " for " + host.triple + " (" + host.cpu + ")");
    emitOutput([&](llvm::raw_ostream &os) { os << text; });
    return 0;
  }
  mlir::DialectRegistry registry;
  registerDialects(registry);
  ctx.appendDialectRegistry(registry);
  CpuArtifact artifact;
  std::string err;
  if (!CpuKernel::compileToObject(module, name, copts, artifact, err))
    fail(err);
  emitOutput([&](llvm::raw_ostream &os) { os << artifact.object; });
  return 0;
}

/// --emit=plan: the kernel the compiler chooses, and why.
int emitPlan(const Options &o, mlir::ModuleOp module) {
  std::string name = chooseVariant(module, o.variant, o.input);
  auto variant = llvm::cast<mlir::attn::VariantOp>(
      mlir::SymbolTable::lookupSymbolIn(module, name));
  std::string text;
  if (o.target == "nvptx") {
    GpuKernelPlan plan;
    std::string error;
    if (!planGpuKernel(gpuVariantTraits(variant), gpuOptions(o), plan, error))
      fail(error);
    text = "GPU kernel of '" + name + "' for " +
           (o.gpuArch.empty() ? std::string("sm_80") : o.gpuArch) + "\n" +
           plan.describe();
  } else {
    CpuCompileOptions copts;
    copts.elementType = o.dtype == "f16" ? DType::F16 : DType::F32;
    std::string why = "--reference";
    if (!o.reference && o.headDim.empty())
      why = "no --head-dim (the tiled kernel is specialised for the head "
            "dims)";
    if (!o.reference && !o.headDim.empty()) {
      copts.reference = false;
      copts.headDim = std::stoi(o.headDim);
      copts.valueDim =
          o.valueDim.empty() ? copts.headDim : std::stoi(o.valueDim);
      why = "--head-dim given";
    }
    text = "CPU kernel of '" + name + "'\n" + copts.explain(why);
  }
  emitOutput([&](llvm::raw_ostream &os) { os << text; });
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  if (argc >= 2 && llvm::StringRef(argv[1]) == "cache")
    return cacheCommand(argc - 2, argv + 2);
  Options o = parseArgs(argc, argv);
  openOutputs(o);

  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(o.input, /*IsText=*/true);
  if (!buffer)
    fail("cannot read '" + o.input + "': " + buffer.getError().message());
  llvm::SourceMgr sm;
  unsigned bufferId = sm.AddNewSourceBuffer(std::move(*buffer), llvm::SMLoc());
  mlir::MLIRContext ctx;
  ctx.printOpOnDiagnostic(false);
  SourceDiagnosticHandler diagHandler(sm, &ctx);

  std::unique_ptr<ast::File> file = parseFile(sm, bufferId, &ctx);
  if (!file)
    return 1;
  if (o.emit == "ast") {
    emitOutput([&](llvm::raw_ostream &os) { printAST(*file, os); });
    return 0;
  }
  mlir::FailureOr<std::vector<CheckedVariant>> variants =
      checkFile(*file, sm, &ctx);
  if (mlir::failed(variants))
    return 1;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      genModule(ctx, *variants, mlir::FileLineColLoc::get(&ctx, o.input, 1, 1));
  if (mlir::failed(mlir::verify(*module))) {
    llvm::errs() << "error: internal compiler error: the generated IR does "
                    "not verify (please report this with your input)\n";
    return 1;
  }
  if (o.grad)
    return gradVariant(o, *module,
                       sm.getMemoryBuffer(bufferId)->getBuffer().str());
  if (o.run)
    return runVariant(o, *module,
                      sm.getMemoryBuffer(bufferId)->getBuffer().str());
  if (o.emit == "obj" || o.emit == "header")
    return emitAot(o, ctx, *module);
  if (o.emit == "plan")
    return emitPlan(o, *module);

  if (o.emit == "grad-mlir") {
    if (!o.variant.empty())
      keepOnlyVariant(*module, chooseVariant(*module, o.variant, o.input));
    mlir::DialectRegistry registry;
    registerDialects(registry);
    ctx.appendDialectRegistry(registry);
    mlir::PassManager pm(&ctx);
    buildDifferentiatePipeline(pm);
    if (mlir::failed(pm.run(*module)))
      return 1;
  } else if (o.emit != "mlir") {
    // Later stages compile one variant.
    if (!(o.variant.empty() && module->getBody()->empty()))
      keepOnlyVariant(*module, chooseVariant(*module, o.variant, o.input));
    mlir::DialectRegistry registry;
    registerDialects(registry);
    ctx.appendDialectRegistry(registry);
    mlir::PassManager pm(&ctx);
    if (o.emit == "gpu" || o.emit == "nvvm" || o.emit == "ptx") {
      // The variant's kernel plan (without a variant, the options' kind).
      GpuKernelOptions g = gpuOptions(o);
      std::string error, chip;
      auto variants = module->getOps<mlir::attn::VariantOp>();
      if (!variants.empty()) {
        GpuKernelPlan plan;
        if (!planGpuKernel(gpuVariantTraits(*variants.begin()), g, plan, error))
          fail(error);
        buildGpuKernelPipeline(pm, plan);
        chip = plan.chip;
      } else {
        GpuKernelKind kind;
        std::string why;
        if (!chooseGpuKernelKind(g, kind, why, error))
          fail(error);
        buildGpuKernelPipeline(pm, g);
        chip = ptxChipFor(kind, g.chip);
      }
      if (o.emit != "gpu")
        buildGpuLowerToNVVMPipeline(pm);
      if (o.emit == "ptx")
        buildGpuToPtxPipeline(pm, chip);
    } else if (o.emit == "tiled" || !o.headDim.empty()) {
      // The optimised CPU kernel: one (b, h, q-tile) work item.
      TiledPipelineOptions t;
      t.elementType = o.dtype;
      t.headDim = t.valueDim = o.headDim.empty() ? 64 : std::stoi(o.headDim);
      if (!o.valueDim.empty())
        t.valueDim = std::stoi(o.valueDim);
      t.vectorWidth = hostVectorWidth(o.vectorWidth);
      buildTiledKernelPipeline(pm, t);
      if (o.emit != "tiled")
        buildLowerToLLVMPipeline(pm);
    } else {
      buildReferenceLoopsPipeline(pm, o.dtype);
      if (o.emit != "loops")
        buildLowerToLLVMPipeline(pm);
    }
    if (mlir::failed(pm.run(*module)))
      return 1;
  } else if (!o.variant.empty()) {
    keepOnlyVariant(*module, chooseVariant(*module, o.variant, o.input));
  }

  if (o.emit == "ptx") {
    std::string ptx = extractPtx(*module);
    if (ptx.empty())
      fail("no PTX was produced");
    emitOutput([&](llvm::raw_ostream &os) { os << ptx; });
  } else if (o.emit == "llvm-ir") {
    mlir::registerBuiltinDialectTranslation(ctx);
    mlir::registerLLVMDialectTranslation(ctx);
    llvm::LLVMContext llvmCtx;
    std::unique_ptr<llvm::Module> llvmModule =
        mlir::translateModuleToLLVMIR(*module, llvmCtx, o.input);
    if (!llvmModule)
      fail("translation to LLVM IR failed");
    emitOutput([&](llvm::raw_ostream &os) { llvmModule->print(os, nullptr); });
  } else {
    mlir::OpPrintingFlags flags;
    if (o.printLoc)
      flags.enableDebugInfo(/*enable=*/true, /*prettyForm=*/false);
    emitOutput([&](llvm::raw_ostream &os) {
      module->print(os, flags);
      os << "\n";
    });
  }
  return 0;
}
