//===- Pipelines.cpp - attnc's pass pipelines -----------------------------===//
//
// Assembles attnc's passes and the upstream conversions into the pipelines
// that `attnc --emit=...`, `attnc run` and the tests use, and registers them
// under names that attn-opt accepts.
//
//===----------------------------------------------------------------------===//

#include "attnc/Pipelines/Pipelines.h"

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MathToLibm/MathToLibm.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void attnc::registerDialects(DialectRegistry &registry) {
  registry.insert<attn::AttnDialect, arith::ArithDialect, cf::ControlFlowDialect,
                  func::FuncDialect, LLVM::LLVMDialect, math::MathDialect,
                  memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect>();
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
  for (auto make : {createSCFToControlFlowPass, arith::createArithExpandOpsPass,
                    createConvertMathToLLVMPass, createConvertMathToLibmPass,
                    memref::createExpandStridedMetadataPass,
                    createFinalizeMemRefToLLVMConversionPass,
                    createArithToLLVMConversionPass,
                    createConvertControlFlowToLLVMPass,
                    createConvertFuncToLLVMPass,
                    createReconcileUnrealizedCastsPass})
    registerPass(make);
  PassPipelineRegistration<ReferencePipelineOptions>(
      "attn-reference-loops",
      "Lower attn variants to the reference scf loop kernels",
      [](OpPassManager &pm, const ReferencePipelineOptions &options) {
        buildReferenceLoopsPipeline(pm, options.elementType);
      });
  PassPipelineRegistration<>("attn-lower-to-llvm",
                             "Lower kernels of scf/arith/math/memref to LLVM",
                             buildLowerToLLVMPipeline);
}
