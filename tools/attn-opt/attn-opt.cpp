//===- attn-opt.cpp - mlir-opt with the attn dialect and attnc's passes ---===//
//
// Runs pipelines of attnc's passes and the upstream ones they build on over
// .mlir input; the lit suite uses it to test each pass in isolation.
//
//===----------------------------------------------------------------------===//

#include "attnc/Pipelines/Pipelines.h"

#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::registerTransformsPasses();
  attnc::registerAllPassesAndPipelines();
  mlir::DialectRegistry registry;
  attnc::registerDialects(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "attn optimizer driver\n", registry));
}
