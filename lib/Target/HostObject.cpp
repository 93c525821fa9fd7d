//===- HostObject.cpp - Native objects for the host CPU and loading them --===//
//
// emitHostObject: translateModuleToLLVMIR, packed entry points written the
// way MLIR's ExecutionEngine writes them (so host code calls every kernel
// the same way), LLVM's O2 pipeline with the host TargetMachine (so the
// vectorisers see the real vector width), then the TargetMachine's object
// emitter. Position independent code, so that the object can be linked into
// PIE executables as well as loaded by the JIT.
//
// LoadedObject: one process-wide LLJIT (created on first use and never
// destroyed, so kernels that outlive static destructors stay valid), one
// JITDylib per object, linked against the process's symbols (libm's expf,
// malloc, ...), removed again when the object is unloaded.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/HostObject.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <algorithm>
#include <atomic>
#include <mutex>

using namespace attnc;

namespace {

void initNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
}

/// Adds `void _mlir_F(void **args)` for every function F defined with
/// external linkage and makes F internal: args[i] points at F's i-th
/// argument, args[n] (for a non-void F) at the slot for its result.
void addPackedEntryPoints(llvm::Module &module) {
  llvm::LLVMContext &ctx = module.getContext();
  llvm::IRBuilder<> builder(ctx);
  std::vector<llvm::Function *> kernels;
  for (llvm::Function &f : module.functions())
    if (!f.isDeclaration() && !f.hasLocalLinkage())
      kernels.push_back(&f);
  for (llvm::Function *f : kernels) {
    auto *type =
        llvm::FunctionType::get(builder.getVoidTy(), builder.getPtrTy(), false);
    auto *entry =
        llvm::Function::Create(type, llvm::GlobalValue::ExternalLinkage,
                               packedEntryName(f->getName().str()), module);
    builder.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", entry));
    llvm::Value *argList = entry->getArg(0);
    llvm::SmallVector<llvm::Value *> args;
    for (llvm::Argument &arg : f->args()) {
      llvm::Value *slot = builder.CreateConstGEP1_64(builder.getPtrTy(),
                                                     argList, arg.getArgNo());
      llvm::Value *ptr = builder.CreateLoad(builder.getPtrTy(), slot);
      args.push_back(builder.CreateLoad(arg.getType(), ptr));
    }
    llvm::Value *result = builder.CreateCall(f, args);
    if (!result->getType()->isVoidTy()) {
      llvm::Value *slot = builder.CreateConstGEP1_64(builder.getPtrTy(),
                                                     argList, f->arg_size());
      builder.CreateStore(result, builder.CreateLoad(builder.getPtrTy(), slot));
    }
    builder.CreateRetVoid();
    f->setLinkage(llvm::GlobalValue::InternalLinkage);
  }
}

/// LLVM's default O2 module pipeline, tuned and costed for `tm`.
void optimizeO2(llvm::Module &module, llvm::TargetMachine &tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = true;
  tuning.LoopInterleaving = true;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  llvm::PassBuilder pb(&tm, tuning);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm =
      pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2);
  mpm.run(module, mam);
}

} // namespace

std::string attnc::packedEntryName(const std::string &name) {
  return "_mlir_" + name;
}

const HostTarget &HostTarget::native() {
  static const HostTarget target = [] {
    HostTarget t;
    t.triple = llvm::Triple::normalize(llvm::sys::getProcessTriple());
    t.cpu = llvm::sys::getHostCPUName().str();
    std::vector<std::string> features;
    for (const auto &f : llvm::sys::getHostCPUFeatures())
      features.push_back((f.second ? "+" : "-") + f.first().str());
    std::sort(features.begin(), features.end());
    for (const std::string &f : features)
      t.features += (t.features.empty() ? "" : ",") + f;
    return t;
  }();
  return target;
}

std::string HostTarget::describe() const {
  return triple + ", cpu " + cpu + ", features " + features;
}

bool attnc::emitHostObject(mlir::ModuleOp module, const HostTarget &target,
                           std::string &object, std::string &error) {
  initNativeTarget();
  mlir::MLIRContext *ctx = module.getContext();
  mlir::registerBuiltinDialectTranslation(*ctx);
  mlir::registerLLVMDialectTranslation(*ctx);

  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule =
      mlir::translateModuleToLLVMIR(module, llvmCtx, "attn-kernel");
  if (!llvmModule) {
    error = "translation to LLVM IR failed";
    return false;
  }

  llvm::Triple triple(target.triple);
  std::string lookupError;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, lookupError);
  if (!llvmTarget) {
    error = "no code generator for " + target.triple + ": " + lookupError;
    return false;
  }
  std::unique_ptr<llvm::TargetMachine> tm(llvmTarget->createTargetMachine(
      triple, target.cpu, target.features, llvm::TargetOptions(),
      llvm::Reloc::PIC_, llvm::CodeModel::Small,
      llvm::CodeGenOptLevel::Default));
  if (!tm) {
    error = "cannot create a code generator for " + target.describe();
    return false;
  }
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(tm->createDataLayout());

  addPackedEntryPoints(*llvmModule);
  std::string verifyMessage;
  llvm::raw_string_ostream verifyOs(verifyMessage);
  if (llvm::verifyModule(*llvmModule, &verifyOs)) {
    error = "the generated LLVM IR does not verify: " + verifyMessage;
    return false;
  }
  optimizeO2(*llvmModule, *tm);

  llvm::SmallVector<char, 0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager codegen;
  if (tm->addPassesToEmitFile(codegen, os, nullptr,
                              llvm::CodeGenFileType::ObjectFile)) {
    error =
        "the code generator for " + target.triple + " cannot emit object files";
    return false;
  }
  codegen.run(*llvmModule);
  object.assign(buffer.begin(), buffer.end());
  return true;
}

//===----------------------------------------------------------------------===//
// LoadedObject
//===----------------------------------------------------------------------===//

namespace {

/// The process-wide JIT, or the reason it could not be created.
struct ProcessJit {
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::string error;
  std::atomic<uint64_t> nextId{0};
};

ProcessJit &processJit() {
  // Never destroyed: loaded kernels may outlive static destruction.
  static ProcessJit *pj = [] {
    initNativeTarget();
    auto *p = new ProcessJit();
    auto jit = llvm::orc::LLJITBuilder().create();
    if (!jit)
      p->error = llvm::toString(jit.takeError());
    else
      p->jit = std::move(*jit);
    return p;
  }();
  return *pj;
}

} // namespace

struct LoadedObject::Impl {
  llvm::orc::JITDylib *dylib = nullptr;
};

LoadedObject::~LoadedObject() {
  if (impl && impl->dylib)
    llvm::consumeError(
        processJit().jit->getExecutionSession().removeJITDylib(*impl->dylib));
}

std::unique_ptr<LoadedObject> LoadedObject::load(const std::string &object,
                                                 const std::string &label,
                                                 std::string &error) {
  ProcessJit &pj = processJit();
  if (!pj.jit) {
    error = "cannot start the JIT: " + pj.error;
    return nullptr;
  }
  std::string name = "attn-" + std::to_string(pj.nextId++) + "-" + label;
  auto dylib = pj.jit->createJITDylib(name);
  if (!dylib) {
    error = "cannot load '" + label + "': " + llvm::toString(dylib.takeError());
    return nullptr;
  }
  std::unique_ptr<LoadedObject> loaded(new LoadedObject());
  loaded->impl = std::make_unique<Impl>();
  loaded->impl->dylib = &*dylib;
  if (llvm::Error err = pj.jit->addObjectFile(
          *dylib, llvm::MemoryBuffer::getMemBufferCopy(object, label))) {
    error = "cannot load '" + label + "': " + llvm::toString(std::move(err));
    return nullptr;
  }
  return loaded;
}

void *LoadedObject::lookup(const std::string &name, std::string &error) const {
  auto addr = processJit().jit->lookup(*impl->dylib, name);
  if (!addr) {
    error = "cannot find '" + name +
            "' in the loaded kernel: " + llvm::toString(addr.takeError());
    return nullptr;
  }
  return addr->toPtr<void *>();
}
