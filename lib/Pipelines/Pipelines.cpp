//===- Pipelines.cpp - attnc's pass pipelines -----------------------------===//
//
// Assembles attnc's passes and the upstream conversions into the pipelines
// that `attnc --emit=...`, `attnc run` and the tests use, and registers them
// under names that attn-opt accepts.
//
//===----------------------------------------------------------------------===//

#include "attnc/Pipelines/Pipelines.h"

#include "attnc/Conversion/Passes.h"
#include "attnc/Transforms/Passes.h"
#include "dialects/attn/AttnDialect.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MathToLibm/MathToLibm.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVGPUToNVVM/NVGPUToNVVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void attnc::registerDialects(DialectRegistry &registry) {
  registry.insert<attn::AttnDialect, arith::ArithDialect,
                  cf::ControlFlowDialect, func::FuncDialect, LLVM::LLVMDialect,
                  math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect, gpu::GPUDialect, NVVM::NVVMDialect,
                  nvgpu::NVGPUDialect, ub::UBDialect>();
  // What convert-gpu-to-nvvm and gpu-module-to-binary need: the
  // to-LLVM conversion interfaces, the NVVM target and the translations to
  // LLVM IR.
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

void attnc::buildReferenceLoopsPipeline(OpPassManager &pm,
                                        llvm::StringRef elementType) {
  ConvertAttnToLoopsOptions options;
  options.elementType = elementType.str();
  pm.addPass(createConvertAttnToLoops(options));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void attnc::buildTiledKernelPipeline(OpPassManager &pm,
                                     const TiledPipelineOptions &options) {
  ConvertAttnToTiledKernelOptions o;
  o.elementType = options.elementType;
  o.headDim = options.headDim;
  o.valueDim = options.valueDim;
  o.tileQ = options.tileQ;
  o.tileKV = options.tileKV;
  o.vectorWidth = options.vectorWidth;
  pm.addPass(createConvertAttnToTiledKernel(o));
  pm.addPass(createAttnApproximateMath());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void attnc::buildLowerToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(arith::createArithExpandOpsPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

namespace {
/// A pipeline's options it cannot honour (attn-opt --attn-gpu-kernel with a
/// kernel that does not take them): the error, at run time of the pipeline,
/// instead of quietly building another kernel.
struct ReportPipelineError
    : public PassWrapper<ReportPipelineError, OperationPass<>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ReportPipelineError)
  explicit ReportPipelineError(std::string message)
      : message(std::move(message)) {}
  StringRef getArgument() const final { return "attn-report-pipeline-error"; }
  void runOnOperation() override {
    mlir::emitError(getOperation()->getLoc(), message);
    signalPassFailure();
  }
  std::string message;
};
} // namespace

namespace {
/// What follows either kernel pass.
void addGpuKernelCleanups(OpPassManager &pm, attnc::GpuKernelKind kind) {
  // One int-to-float conversion per row and tile, not per element; the
  // integer rewrites only for wgmma, where they were measured to help
  // (on the mma.sync kernel they cost masked variants 2 to 7%).
  attnc::AttnReassociateIndexOffsetsOptions reassociate;
  reassociate.integer = kind == attnc::GpuKernelKind::Wgmma;
  pm.addPass(attnc::createAttnReassociateIndexOffsets(reassociate));
  pm.addPass(attnc::createAttnApproximateMath());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}
} // namespace

void attnc::buildGpuKernelPipeline(OpPassManager &pm,
                                   const GpuKernelPlan &plan) {
  if (plan.kind == attnc::GpuKernelKind::Simt)
    pm.addPass(createConvertAttnToGPUKernel(plan));
  else
    pm.addPass(createConvertAttnToMMAKernel(plan));
  addGpuKernelCleanups(pm, plan.kind);
}

void attnc::buildGpuKernelPipeline(OpPassManager &pm,
                                   const GpuKernelOptions &options) {
  attnc::GpuKernelKind kind;
  std::string why, error;
  GpuKernelPlan unused;
  if (!chooseGpuKernelKind(options, kind, why, error) ||
      !planGpuKernel(GpuVariantTraits(), options, unused, error)) {
    pm.addPass(std::make_unique<ReportPipelineError>(error));
    return;
  }
  const char *elementType = gpuElementTypeName(options.elementType);
  if (kind != attnc::GpuKernelKind::Simt) {
    ConvertAttnToMMAKernelOptions o;
    o.wgmma = kind == attnc::GpuKernelKind::Wgmma;
    o.elementType = elementType;
    o.headDim = options.headDim;
    o.valueDim = options.valueDim;
    o.tileKV = options.tileKV;
    o.persistent = options.persistent;
    o.markKernel = options.markKernel;
    pm.addPass(createConvertAttnToMMAKernel(o));
  } else {
    ConvertAttnToGPUKernelOptions o;
    o.elementType = elementType;
    o.headDim = options.headDim;
    o.valueDim = options.valueDim;
    o.tileQ = options.tileQ;
    o.tileKV = options.tileKV;
    pm.addPass(createConvertAttnToGPUKernel(o));
  }
  addGpuKernelCleanups(pm, kind);
}

void attnc::buildGpuLowerToNVVMPipeline(OpPassManager &pm) {
  OpPassManager &gm = pm.nest<gpu::GPUModuleOp>();
  gm.addPass(createSCFToControlFlowPass());
  // Not arith-expand: that also turns every max into compares and selects.
  gm.addPass(createAttnExpandIntegerDivision());
  gm.addPass(memref::createExpandStridedMetadataPass());
  // exp2, sqrt, fma, floor, fabs: NVPTX instructions, not libdevice calls.
  gm.addPass(createConvertAttnMathToNVVMIntrinsics());
  gm.addPass(createConvertNVGPUToNVVMPass());
  gm.addPass(createConvertGpuOpsToNVVMOps());
  gm.addPass(createCanonicalizerPass());
  gm.addPass(createCSEPass());
  gm.addPass(createReconcileUnrealizedCastsPass());
}

std::string attnc::ptxFeaturesFor(llvm::StringRef chip) {
  // PTX ISA 8.0 (CUDA 12.0) covers sm_80 .. sm_90a; newer chips need more.
  unsigned sm = 0;
  llvm::StringRef digits = chip;
  if (digits.consume_front("sm_"))
    digits.take_while([](char c) { return c >= '0' && c <= '9'; })
        .getAsInteger(10, sm);
  if (sm >= 120)
    return "+ptx87";
  if (sm >= 100)
    return "+ptx86";
  return "+ptx80";
}

void attnc::buildGpuToPtxPipeline(OpPassManager &pm, llvm::StringRef chip,
                                  unsigned optLevel) {
  GpuNVVMAttachTargetOptions target;
  target.chip = chip.str();
  target.features = ptxFeaturesFor(chip);
  target.optLevel = optLevel;
  pm.addPass(createGpuNVVMAttachTarget(target));
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

std::string attnc::extractPtx(ModuleOp module) {
  std::string ptx;
  module.walk([&](gpu::BinaryOp binary) {
    for (Attribute a : binary.getObjects())
      if (auto object = llvm::dyn_cast<gpu::ObjectAttr>(a))
        ptx += object.getObject().getValue().str();
  });
  return ptx;
}

namespace {
struct GpuPipelineCLOptions : public PassPipelineOptions<GpuPipelineCLOptions> {
  Option<std::string> elementType{*this, "element-type",
                                  llvm::cl::desc("f16, bf16 or f32"),
                                  llvm::cl::init("f16")};
  Option<int64_t> headDim{*this, "head-dim", llvm::cl::init(64)};
  Option<int64_t> valueDim{*this, "value-dim", llvm::cl::init(64)};
  Option<std::string> chip{*this, "chip", llvm::cl::desc("sm_80, sm_90, ..."),
                           llvm::cl::init("sm_80")};
  Option<std::string> kernel{
      *this, "kernel",
      llvm::cl::desc("auto, mma (tensor cores), wgmma (Hopper) or simt"),
      llvm::cl::init("auto")};
  Option<bool> persistent{
      *this, "persistent",
      llvm::cl::desc("a persistent wgmma kernel for data-dependent masks"),
      llvm::cl::init(false)};
  Option<bool> markKernel{
      *this, "mark-kernel",
      llvm::cl::desc("data-dependent masks: a mark kernel works out the "
                     "live kv-tiles once per launch"),
      llvm::cl::init(true)};
  /// The options, or false with `error` for an unknown kernel name.
  bool get(attnc::GpuKernelOptions &o, std::string &error) const {
    if (kernel != "auto") {
      attnc::GpuKernelKind kind;
      if (!attnc::parseGpuKernelKind(kernel, kind)) {
        error = "unknown GPU kernel '" + kernel +
                "' (expected auto, mma, wgmma or simt)";
        return false;
      }
      o.kernel = kind;
    }
    o.persistent = persistent;
    o.markKernel = markKernel;
    o.elementType = elementType == "f32"    ? attnc::DType::F32
                    : elementType == "bf16" ? attnc::DType::BF16
                                            : attnc::DType::F16;
    if (elementType != "f16" && elementType != "bf16" && elementType != "f32") {
      error =
          "element-type must be f16, bf16 or f32, got '" + elementType + "'";
      return false;
    }
    o.headDim = headDim;
    o.valueDim = valueDim;
    o.chip = chip;
    return true;
  }
};
struct GpuChipOptions : public PassPipelineOptions<GpuChipOptions> {
  Option<std::string> chip{*this, "chip", llvm::cl::desc("sm_80, sm_90, ..."),
                           llvm::cl::init("sm_80")};
};

struct ReferencePipelineOptions
    : public PassPipelineOptions<ReferencePipelineOptions> {
  Option<std::string> elementType{*this, "element-type",
                                  llvm::cl::desc("f32 or f16"),
                                  llvm::cl::init("f32")};
};
} // namespace

void attnc::registerAllPassesAndPipelines() {
  registerAttncConversionPasses();
  registerAttncTransformsPasses();
  registerPass([] { return createConvertVectorToLLVMPass(); });
  for (auto make :
       {createSCFToControlFlowPass, arith::createArithExpandOpsPass,
        createConvertMathToLLVMPass, createConvertMathToLibmPass,
        memref::createExpandStridedMetadataPass,
        createFinalizeMemRefToLLVMConversionPass,
        createArithToLLVMConversionPass, createConvertControlFlowToLLVMPass,
        createConvertFuncToLLVMPass, createReconcileUnrealizedCastsPass})
    registerPass(make);
  registerPass([] { return createConvertGpuOpsToNVVMOps(); });
  registerPass([] { return createConvertNVGPUToNVVMPass(); });
  registerPass([] { return createGpuNVVMAttachTarget(); });
  registerPass([] { return createGpuModuleToBinaryPass(); });
  PassPipelineRegistration<ReferencePipelineOptions>(
      "attn-reference-loops",
      "Lower attn variants to the reference scf loop kernels",
      [](OpPassManager &pm, const ReferencePipelineOptions &options) {
        buildReferenceLoopsPipeline(pm, options.elementType);
      });
  PassPipelineRegistration<GpuPipelineCLOptions>(
      "attn-gpu-kernel", "Lower attn variants to gpu.func kernels",
      [](OpPassManager &pm, const GpuPipelineCLOptions &options) {
        GpuKernelOptions o;
        std::string error;
        if (!options.get(o, error))
          pm.addPass(std::make_unique<ReportPipelineError>(error));
        else
          buildGpuKernelPipeline(pm, o);
      });
  PassPipelineRegistration<>(
      "attn-gpu-lower-to-nvvm",
      "Lower gpu.module kernels to the LLVM and NVVM dialects",
      buildGpuLowerToNVVMPipeline);
  PassPipelineRegistration<GpuChipOptions>(
      "attn-nvvm-to-ptx",
      "Attach an NVVM target and serialise gpu.modules to PTX (gpu.binary)",
      [](OpPassManager &pm, const GpuChipOptions &options) {
        buildGpuToPtxPipeline(pm, options.chip);
      });
  PassPipelineRegistration<GpuPipelineCLOptions>(
      "attn-gpu-to-ptx",
      "Lower attn variants all the way to PTX (gpu.binary, format isa)",
      [](OpPassManager &pm, const GpuPipelineCLOptions &options) {
        GpuKernelOptions o;
        attnc::GpuKernelKind kind;
        std::string why, error;
        if (!options.get(o, error) ||
            !chooseGpuKernelKind(o, kind, why, error)) {
          pm.addPass(std::make_unique<ReportPipelineError>(error));
          return;
        }
        buildGpuKernelPipeline(pm, o);
        buildGpuLowerToNVVMPipeline(pm);
        buildGpuToPtxPipeline(pm, ptxChipFor(kind, o.chip));
      });
  PassPipelineRegistration<>("attn-lower-to-llvm",
                             "Lower kernels of scf/arith/math/memref to LLVM",
                             buildLowerToLLVMPipeline);
}
