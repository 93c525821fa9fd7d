//===- AttnDialect.cpp - The attn dialect's ops, parsers and verifiers ----===//
//
// Custom assembly for the ops whose regions take named arguments
// (`attn.score(%b: i32, ...) {...}`) and for parameters, and the verifiers
// that keep a variant well formed: which items it holds, what each region
// takes and yields, and that every parameter reference names a declared
// parameter of the right type and rank.
//
//===----------------------------------------------------------------------===//

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::attn;

#include "dialects/attn/AttnDialect.cpp.inc"
#include "dialects/attn/AttnEnums.cpp.inc"

void AttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/attn/AttnOps.cpp.inc"
      >();
}

Operation *AttnDialect::materializeConstant(OpBuilder &builder, Attribute value,
                                            Type type, Location loc) {
  auto typed = llvm::dyn_cast<TypedAttr>(value);
  if (!typed || typed.getType() != type)
    return nullptr;
  return arith::ConstantOp::create(builder, loc, type, typed);
}

//===----------------------------------------------------------------------===//
// Shared helpers
//===----------------------------------------------------------------------===//

/// Parses `(%a: T, ...) {region}` into `region` with those entry arguments.
static ParseResult parseArgsAndRegion(OpAsmParser &parser, Region &region) {
  SmallVector<OpAsmParser::Argument> args;
  if (parser.parseArgumentList(args, OpAsmParser::Delimiter::Paren,
                               /*allowType=*/true))
    return failure();
  return parser.parseRegion(region, args);
}

static void printArgsAndRegion(OpAsmPrinter &p, Region &region) {
  p << "(";
  if (!region.empty())
    llvm::interleaveComma(region.getArguments(), p, [&](BlockArgument arg) {
      p.printRegionArgument(arg);
    });
  p << ") ";
  p.printRegion(region, /*printEntryBlockArgs=*/false);
}

/// Checks that `region` has one block with `numArgs` i32 arguments (plus the
/// f32 `score` argument when `withScore`) ending in an `attn.yield` of
/// `yieldType`. `what` names the item in messages.
static LogicalResult verifyItemRegion(Operation *op, Region &region,
                                      unsigned numIndexArgs, bool withScore,
                                      Type yieldType, StringRef what) {
  if (region.empty() || region.front().empty())
    return op->emitOpError() << "needs a body computing the " << what;
  Block &block = region.front();
  unsigned expected = numIndexArgs + (withScore ? 1 : 0);
  if (block.getNumArguments() != expected)
    return op->emitOpError() << "region must take " << expected
                             << " arguments, got " << block.getNumArguments();
  Builder b(op->getContext());
  for (unsigned i = 0; i < numIndexArgs; ++i)
    if (block.getArgument(i).getType() != b.getI32Type())
      return op->emitOpError()
             << "region argument #" << i << " must be i32, got "
             << block.getArgument(i).getType();
  if (withScore && block.getArgument(numIndexArgs).getType() != b.getF32Type())
    return op->emitOpError() << "score argument must be f32, got "
                             << block.getArgument(numIndexArgs).getType();
  auto yield = llvm::dyn_cast<YieldOp>(block.back());
  if (!yield)
    return op->emitOpError() << "region must end with 'attn.yield'";
  if (yield.getValue().getType() != yieldType)
    return yield.emitOpError() << "the " << what << " must be " << yieldType
                               << ", got " << yield.getValue().getType();
  return success();
}

/// Names region arguments after what they hold: %b, %h, %q, %kv, %score.
static void nameItemArgs(Region &region, OpAsmSetValueNameFn setNameFn) {
  static const char *names[] = {"b", "h", "q", "kv", "score"};
  if (region.empty())
    return;
  for (auto [i, arg] : llvm::enumerate(region.getArguments()))
    if (i < std::size(names))
      setNameFn(arg, names[i]);
}

//===----------------------------------------------------------------------===//
// VariantOp
//===----------------------------------------------------------------------===//

void VariantOp::build(OpBuilder &builder, OperationState &state,
                      StringRef name) {
  state.addAttribute(mlir::SymbolTable::getSymbolAttrName(),
                     builder.getStringAttr(name));
  state.addRegion()->emplaceBlock();
}

template <typename OpTy> static OpTy findItem(Block &body) {
  for (Operation &op : body)
    if (auto item = llvm::dyn_cast<OpTy>(op))
      return item;
  return nullptr;
}

ScaleOp VariantOp::getScaleOp() { return findItem<ScaleOp>(getBody().front()); }
ScoreOp VariantOp::getScoreOp() { return findItem<ScoreOp>(getBody().front()); }
MaskOp VariantOp::getMaskOp() { return findItem<MaskOp>(getBody().front()); }
NormalizeOp VariantOp::getNormalizeOp() {
  return findItem<NormalizeOp>(getBody().front());
}
NormKind VariantOp::getNormKind() {
  NormalizeOp norm = getNormalizeOp();
  return norm ? norm.getKind() : NormKind::softmax;
}
SmallVector<ParamOp> VariantOp::getParams() {
  SmallVector<ParamOp> params;
  for (Operation &op : getBody().front())
    if (auto param = llvm::dyn_cast<ParamOp>(op))
      params.push_back(param);
  return params;
}

LogicalResult VariantOp::verify() {
  llvm::StringMap<Operation *> seen;
  for (Operation &op : getBody().front()) {
    if (!llvm::isa<ParamOp, ScaleOp, ScoreOp, MaskOp, NormalizeOp>(op))
      return op.emitOpError()
             << "is not allowed in a variant (expected attn.param, "
                "attn.scale, attn.score, attn.mask or attn.normalize)";
    if (llvm::isa<ParamOp>(op))
      continue;
    auto [it, inserted] = seen.try_emplace(op.getName().getStringRef(), &op);
    if (!inserted)
      return op.emitOpError()
             << "appears twice in variant '" << getSymName() << "'";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// ParamOp
//===----------------------------------------------------------------------===//

static bool isParamElementType(Type t) {
  return t.isInteger(1) || t.isInteger(32) || t.isF32();
}

static bool isSizeName(StringRef s) { return symbolizeSizeKind(s).has_value(); }

// attn.param [const] @name : TYPE [ '[' dim, ... ']' ] [= VALUE] attr-dict
ParseResult ParamOp::parse(OpAsmParser &parser, OperationState &result) {
  Builder &b = parser.getBuilder();
  if (succeeded(parser.parseOptionalKeyword("const")))
    result.addAttribute("is_const", b.getUnitAttr());
  StringAttr name;
  Type elementType;
  if (parser.parseSymbolName(name, SymbolTable::getSymbolAttrName(),
                             result.attributes) ||
      parser.parseColonType(elementType))
    return failure();
  result.addAttribute("element_type", TypeAttr::get(elementType));
  if (succeeded(parser.parseOptionalLSquare())) {
    SmallVector<Attribute> dims;
    auto parseDim = [&]() -> ParseResult {
      if (succeeded(parser.parseOptionalQuestion())) {
        dims.push_back(b.getStringAttr("?"));
        return success();
      }
      int64_t value;
      OptionalParseResult intResult = parser.parseOptionalInteger(value);
      if (intResult.has_value()) {
        if (failed(*intResult))
          return failure();
        dims.push_back(b.getI64IntegerAttr(value));
        return success();
      }
      StringRef keyword;
      llvm::SMLoc loc = parser.getCurrentLocation();
      if (parser.parseKeyword(&keyword))
        return failure();
      if (!isSizeName(keyword))
        return parser.emitError(loc)
               << "expected a size name (B, H, Hkv, Lq, Lkv, D, Dv), an "
                  "integer or '?', got '"
               << keyword << "'";
      dims.push_back(b.getStringAttr(keyword));
      return success();
    };
    if (parser.parseCommaSeparatedList(parseDim) || parser.parseRSquare())
      return failure();
    result.addAttribute("dims", b.getArrayAttr(dims));
  }
  if (succeeded(parser.parseOptionalEqual())) {
    Attribute value;
    if (parser.parseAttribute(value, elementType))
      return failure();
    result.addAttribute("value", value);
  }
  return parser.parseOptionalAttrDict(result.attributes);
}

void ParamOp::print(OpAsmPrinter &p) {
  if (getIsConst())
    p << " const";
  p << " ";
  p.printSymbolName(getSymName());
  p << " : " << getElementType();
  if (std::optional<ArrayAttr> dims = getDims()) {
    p << "[";
    llvm::interleaveComma(*dims, p, [&](Attribute dim) {
      if (auto s = llvm::dyn_cast<StringAttr>(dim))
        p << s.getValue();
      else
        p << llvm::cast<IntegerAttr>(dim).getInt();
    });
    p << "]";
  }
  if (std::optional<TypedAttr> value = getValue()) {
    p << " = ";
    p.printAttributeWithoutType(*value);
  }
  p.printOptionalAttrDict((*this)->getAttrs(), {"sym_name", "element_type",
                                                "dims", "is_const", "value"});
}

LogicalResult ParamOp::verify() {
  Type elementType = getElementType();
  if (!isParamElementType(elementType))
    return emitOpError() << "element type must be i1 (bool), i32 or f32, got "
                         << elementType;
  if (std::optional<ArrayAttr> dims = getDims()) {
    if (getIsConst())
      return emitOpError() << "only scalars can be const";
    if (dims->empty())
      return emitOpError() << "a tensor needs at least one dimension";
    for (Attribute dim : *dims) {
      if (auto s = llvm::dyn_cast<StringAttr>(dim)) {
        if (s.getValue() != "?" && !isSizeName(s.getValue()))
          return emitOpError() << "unknown size '" << s.getValue() << "'";
      } else if (auto i = llvm::dyn_cast<IntegerAttr>(dim)) {
        if (i.getInt() <= 0)
          return emitOpError()
                 << "dimension must be positive, got " << i.getInt();
      } else {
        return emitOpError() << "dimension must be a size name, integer or '?'";
      }
    }
    if (getValue())
      return emitOpError() << "a tensor parameter cannot have a value";
  }
  if (getIsConst() && !getValue())
    return emitOpError() << "a const parameter needs a value";
  if (std::optional<TypedAttr> value = getValue())
    if (value->getType() != elementType)
      return emitOpError() << "value has type " << value->getType()
                           << " but the parameter is " << elementType;
  return success();
}

//===----------------------------------------------------------------------===//
// Item ops
//===----------------------------------------------------------------------===//

LogicalResult ScaleOp::verifyRegions() {
  return verifyItemRegion(*this, getBody(), 0, false,
                          Float32Type::get(getContext()), "scale");
}

ParseResult ScoreOp::parse(OpAsmParser &parser, OperationState &result) {
  if (parseArgsAndRegion(parser, *result.addRegion()))
    return failure();
  return parser.parseOptionalAttrDictWithKeyword(result.attributes);
}
void ScoreOp::print(OpAsmPrinter &p) {
  printArgsAndRegion(p, getBody());
  p.printOptionalAttrDictWithKeyword((*this)->getAttrs());
}
LogicalResult ScoreOp::verifyRegions() {
  return verifyItemRegion(*this, getBody(), kMaskArgs, true,
                          Float32Type::get(getContext()), "score");
}
void ScoreOp::getAsmBlockArgumentNames(Region &region,
                                       OpAsmSetValueNameFn setNameFn) {
  nameItemArgs(region, setNameFn);
}
void MaskOp::getAsmBlockArgumentNames(Region &region,
                                      OpAsmSetValueNameFn setNameFn) {
  nameItemArgs(region, setNameFn);
}
void NormalizeOp::getAsmBlockArgumentNames(Region &region,
                                           OpAsmSetValueNameFn setNameFn) {
  nameItemArgs(region, setNameFn);
}

bool ScoreOp::readsIndices() {
  Block &block = getBody().front();
  for (unsigned i = 0; i < kMaskArgs; ++i)
    if (!block.getArgument(i).use_empty())
      return true;
  return false;
}

ParseResult MaskOp::parse(OpAsmParser &parser, OperationState &result) {
  if (parseArgsAndRegion(parser, *result.addRegion()))
    return failure();
  return parser.parseOptionalAttrDictWithKeyword(result.attributes);
}
void MaskOp::print(OpAsmPrinter &p) {
  printArgsAndRegion(p, getBody());
  p.printOptionalAttrDictWithKeyword((*this)->getAttrs());
}
LogicalResult MaskOp::verifyRegions() {
  return verifyItemRegion(*this, getBody(), kMaskArgs, false,
                          IntegerType::get(getContext(), 1), "mask");
}

// attn.normalize KIND [sink(%b: i32, %h: i32) {region}] attr-dict
ParseResult NormalizeOp::parse(OpAsmParser &parser, OperationState &result) {
  StringRef keyword;
  llvm::SMLoc loc = parser.getCurrentLocation();
  if (parser.parseKeyword(&keyword))
    return failure();
  std::optional<NormKind> kind = symbolizeNormKind(keyword);
  if (!kind)
    return parser.emitError(loc)
           << "unknown normalisation '" << keyword
           << "' (expected softmax, sigmoid, relu or linear)";
  result.addAttribute("kind", NormKindAttr::get(parser.getContext(), *kind));
  Region *sink = result.addRegion();
  if (succeeded(parser.parseOptionalKeyword("sink")) &&
      parseArgsAndRegion(parser, *sink))
    return failure();
  return parser.parseOptionalAttrDict(result.attributes);
}

void NormalizeOp::print(OpAsmPrinter &p) {
  p << " " << stringifyNormKind(getKind());
  if (hasSink()) {
    p << " sink";
    printArgsAndRegion(p, getSink());
  }
  p.printOptionalAttrDict((*this)->getAttrs(), {"kind"});
}

LogicalResult NormalizeOp::verifyRegions() {
  if (!hasSink())
    return success();
  if (getKind() != NormKind::softmax)
    return emitOpError() << "a sink is only allowed with softmax, not "
                         << stringifyNormKind(getKind());
  return verifyItemRegion(*this, getSink(), kSinkArgs, false,
                          Float32Type::get(getContext()), "sink");
}

//===----------------------------------------------------------------------===//
// Parameter access
//===----------------------------------------------------------------------===//

static FailureOr<ParamOp> lookupParam(Operation *user, FlatSymbolRefAttr ref,
                                      SymbolTableCollection *tables) {
  Operation *found =
      tables ? tables->lookupNearestSymbolFrom(user, ref.getAttr())
             : SymbolTable::lookupNearestSymbolFrom(user, ref.getAttr());
  auto param = llvm::dyn_cast_or_null<ParamOp>(found);
  if (!param)
    return user->emitOpError()
           << "references " << ref << ", which is not a parameter of the "
           << "enclosing variant";
  return param;
}

LogicalResult ParamGetOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<ParamOp> param = lookupParam(*this, getParamAttr(), &symbolTable);
  if (failed(param))
    return failure();
  if (param->isTensor())
    return emitOpError() << "parameter " << getParamAttr()
                         << " is a tensor; read it with attn.param_load";
  // The scale is worked out before anything else in a kernel (a GPU
  // kernel's before it may read memory): only const params.
  if (!param->getIsConst() && (*this)->getParentOfType<ScaleOp>())
    return emitOpError() << "the scale may read sizes and const params only, "
                         << "not the runtime param " << getParamAttr();
  if (param->getElementType() != getType())
    return emitOpError() << "result type " << getType()
                         << " does not match parameter type "
                         << param->getElementType();
  return success();
}

OpFoldResult ParamGetOp::fold(FoldAdaptor) {
  auto param = llvm::dyn_cast_or_null<ParamOp>(
      SymbolTable::lookupNearestSymbolFrom(*this, getParamAttr().getAttr()));
  if (!param || !param.getIsConst())
    return {};
  return param.getValueAttr();
}

LogicalResult
ParamLoadOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<ParamOp> param = lookupParam(*this, getParamAttr(), &symbolTable);
  if (failed(param))
    return failure();
  if (!param->isTensor())
    return emitOpError() << "parameter " << getParamAttr()
                         << " is a scalar; read it with attn.param_get";
  if ((*this)->getParentOfType<ScaleOp>())
    return emitOpError() << "the scale may read sizes and const params only, "
                         << "not the tensor param " << getParamAttr();
  if (param->getRank() != getIndices().size())
    return emitOpError() << "parameter " << getParamAttr() << " has rank "
                         << param->getRank() << " but " << getIndices().size()
                         << " indices were given";
  if (param->getElementType() != getType())
    return emitOpError() << "result type " << getType()
                         << " does not match element type "
                         << param->getElementType();
  return success();
}

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.cpp.inc"
