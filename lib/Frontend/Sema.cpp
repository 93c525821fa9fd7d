//===- Sema.cpp - Semantic checks of .attn files --------------------------===//
//
// Checking happens in two steps. First every def (prelude, then user) is
// resolved once on its own: argument names, unknown names, which def each
// call means (earlier defs only), and arities. Then each attention block is
// checked item by item, producing typed trees. Defs are untyped macros: each
// call checks the def body again with the types of its arguments, which were
// checked in the caller, and the result is the inlined body. Lets are checked
// once where they are defined and copied into each use; a let is checked with
// no restriction, and its uses check that the let fits the item using it
// (no `score` outside the score expression, no indices in the scale, ...).
//
// A user def may shadow a prelude def of the same name: the user's file sees
// its own def, while prelude defs keep calling each other.
//
// Inlining can grow trees exponentially (a chain of defs that each use their
// argument twice), so the number of nodes per file and the depth of inlined
// trees are bounded, with an error when a file exceeds them; checking also
// stops after kMaxErrors errors.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/Sema.h"
#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Prelude.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

using namespace attnc;

namespace {

constexpr unsigned kMaxDepth = 1024;
constexpr size_t kMaxNodes = 500000;
constexpr unsigned kMaxErrors = 20;

/// The index variables and sizes every expression may use.
struct GlobalName {
  const char *name;
  TExpr::Kind kind; // Index or Size
  IndexVar index;
  SizeKind size;
};
const GlobalName kGlobals[] = {
    {"b", TExpr::Kind::Index, IndexVar::B, SizeKind::B},
    {"h", TExpr::Kind::Index, IndexVar::H, SizeKind::B},
    {"q_idx", TExpr::Kind::Index, IndexVar::Q, SizeKind::B},
    {"kv_idx", TExpr::Kind::Index, IndexVar::KV, SizeKind::B},
    {"hkv", TExpr::Kind::Index, IndexVar::HKV, SizeKind::B},
    {"B", TExpr::Kind::Size, IndexVar::B, SizeKind::B},
    {"H", TExpr::Kind::Size, IndexVar::B, SizeKind::H},
    {"Hkv", TExpr::Kind::Size, IndexVar::B, SizeKind::Hkv},
    {"Lq", TExpr::Kind::Size, IndexVar::B, SizeKind::Lq},
    {"Lkv", TExpr::Kind::Size, IndexVar::B, SizeKind::Lkv},
    {"D", TExpr::Kind::Size, IndexVar::B, SizeKind::D},
    {"Dv", TExpr::Kind::Size, IndexVar::B, SizeKind::Dv},
};

const GlobalName *lookupGlobal(llvm::StringRef name) {
  for (const GlobalName &g : kGlobals)
    if (name == g.name)
      return &g;
  return nullptr;
}

/// How a builtin types its arguments: ToFloat converts them all to f32, Keep
/// keeps i32 unless one of them is f32.
enum class FnKind { ToFloat, Keep, Select, Cast };

struct BuiltinFn {
  const char *name;
  FnKind kind;
  unsigned arity;
  Builtin builtin = Builtin::Exp;
  ScalarType castTo = ScalarType::F32;
};
const BuiltinFn kBuiltins[] = {
    {"exp", FnKind::ToFloat, 1, Builtin::Exp},
    {"log", FnKind::ToFloat, 1, Builtin::Log},
    {"sqrt", FnKind::ToFloat, 1, Builtin::Sqrt},
    {"tanh", FnKind::ToFloat, 1, Builtin::Tanh},
    {"sigmoid", FnKind::ToFloat, 1, Builtin::Sigmoid},
    {"floor", FnKind::ToFloat, 1, Builtin::Floor},
    {"ceil", FnKind::ToFloat, 1, Builtin::Ceil},
    {"pow", FnKind::ToFloat, 2, Builtin::Pow},
    {"abs", FnKind::Keep, 1, Builtin::Abs},
    {"min", FnKind::Keep, 2, Builtin::Min},
    {"max", FnKind::Keep, 2, Builtin::Max},
    {"select", FnKind::Select, 3},
    {"f32", FnKind::Cast, 1, Builtin::Exp, ScalarType::F32},
    {"i32", FnKind::Cast, 1, Builtin::Exp, ScalarType::I32},
};

const BuiltinFn *lookupBuiltin(llvm::StringRef name) {
  for (const BuiltinFn &fn : kBuiltins)
    if (name == fn.name)
      return &fn;
  return nullptr;
}

std::string quoted(ScalarType t) {
  return std::string("'") + scalarTypeName(t) + "'";
}

std::string arityMessage(llvm::StringRef name, size_t want, size_t got) {
  return ("'" + name + "' takes " + llvm::Twine(want) +
          (want == 1 ? " argument" : " arguments") + ", got " +
          llvm::Twine(got))
      .str();
}

/// The item whose expression is being checked; it decides what may be used.
enum class Context { Let, Scale, Score, Mask, Sink };

struct LetEntry {
  const ast::Item *item;
  TExprPtr value; // null when the let has errors
  bool defined = false;
};

struct DefEntry {
  const ast::Def *def;
  bool isPrelude;
  size_t position; // in its file's defs
  bool ok = true;  // resolved without errors
};

class Checker {
public:
  void addDefs(const ast::File &prelude, const ast::File &user);
  std::optional<CheckedVariant> checkAttention(const ast::Attention &block);

  /// Starts an error at `loc`, noting the def calls being inlined.
  mlir::InFlightDiagnostic error(mlir::Location loc);
  void errorWithNote(mlir::Location loc, const llvm::Twine &message,
                     mlir::Location noteLoc, const llvm::Twine &note) {
    mlir::InFlightDiagnostic diag = error(loc);
    diag << message;
    diag.attachNote(noteLoc) << note;
  }
  bool failed() const { return errorCount != 0; }
  bool aborted = false;

private:
  // Defs.
  void resolveDef(DefEntry &entry);
  void resolveExpr(const ast::Expr &e, const DefEntry &entry);
  const DefEntry *lookupDef(llvm::StringRef name) const;
  std::vector<llvm::StringRef> functionNames() const;

  // Items.
  bool checkBindingName(const ast::Ident &id);
  void declareParam(const ast::Item &item, CheckedVariant &v);
  std::optional<ParamValue> literalValue(const ast::Expr &e,
                                         const ParamDecl &decl);
  TExprPtr checkItemExpr(const ast::Expr &e, Context c, ScalarType want,
                         llvm::StringRef what);
  void checkNormalize(const ast::Item &item, CheckedVariant &v);

  // Expressions.
  TExprPtr check(const ast::Expr &e);
  TExprPtr checkName(const ast::Expr &e);
  TExprPtr checkIndex(const ast::Expr &e);
  TExprPtr checkCall(const ast::Expr &e);
  TExprPtr checkBinary(const ast::Expr &e, TExprPtr lhs, TExprPtr rhs);
  TExprPtr applyBuiltin(const ast::Expr &e, const BuiltinFn &fn,
                        std::vector<TExprPtr> args);
  TExprPtr makeSelect(mlir::Location loc, llvm::StringRef what, TExprPtr cond,
                      TExprPtr lhs, TExprPtr rhs);
  TExprPtr useLet(const ast::Expr &e, const LetEntry &let);

  TExprPtr node(TExpr::Kind kind, ScalarType type, mlir::Location loc) {
    ++nodeCount;
    return std::make_unique<TExpr>(kind, type, loc);
  }
  TExprPtr convert(TExprPtr e, ScalarType to, mlir::Location loc);
  TExprPtr convert(TExprPtr e, ScalarType to) {
    mlir::Location loc = e->loc;
    return convert(std::move(e), to, loc);
  }
  TExprPtr clone(const TExpr &e, unsigned level);
  bool overLimits(mlir::Location loc, unsigned level);

  // What the current context allows.
  bool isForbidden(const TExpr &n) const;
  const TExpr *findForbidden(const TExpr &e) const;
  TExprPtr allowed(TExprPtr n);
  std::string describeUse(const TExpr &n) const;
  const char *contextName() const;
  const char *contextRule() const;

  unsigned errorCount = 0;
  size_t nodeCount = 0;
  unsigned depth = 0;

  std::vector<DefEntry> defs; // prelude defs, then user defs
  llvm::StringMap<size_t> preludeDefs, userDefs;
  llvm::DenseMap<const ast::Expr *, size_t> callTargets; // in def bodies

  // State of the block being checked.
  Context context = Context::Let;
  const CheckedVariant *variant = nullptr;
  llvm::StringMap<size_t> params; // into variant->params
  llvm::StringMap<LetEntry> lets;
  std::vector<llvm::StringRef> blockNames; // params and defined lets
  struct Frame {
    const DefEntry *def;
    mlir::Location callLoc;
    std::vector<TExprPtr> args;
  };
  std::vector<Frame> frames; // def calls being inlined, innermost last
};

struct DepthScope {
  unsigned &depth;
  explicit DepthScope(unsigned &depth) : depth(depth) { ++depth; }
  ~DepthScope() { --depth; }
};

} // namespace

mlir::InFlightDiagnostic Checker::error(mlir::Location loc) {
  mlir::InFlightDiagnostic diag = mlir::emitError(loc);
  // The innermost calls, then the one written in the attention block.
  constexpr size_t kShownCalls = 3;
  for (size_t i = frames.size(); i-- > 0;) {
    if (i != 0 && frames.size() - i > kShownCalls)
      continue;
    mlir::Diagnostic &note = diag.attachNote(frames[i].callLoc);
    note << "in the call to '" << frames[i].def->def->name.name << "' here";
    if (i == 0 && frames.size() > kShownCalls + 1)
      note << " (through " << frames.size() - kShownCalls - 1
           << " more nested calls)";
  }
  // A def body is checked once per call, so one mistake can repeat many
  // times; stop early rather than flood the user.
  if (++errorCount == kMaxErrors) {
    aborted = true;
    diag.attachNote(loc) << "too many errors; stopping here";
  }
  return diag;
}

//===----------------------------------------------------------------------===//
// Defs
//===----------------------------------------------------------------------===//

void Checker::addDefs(const ast::File &prelude, const ast::File &user) {
  auto add = [&](const ast::File &file, bool isPrelude,
                 llvm::StringMap<size_t> &byName) {
    for (auto [position, def] : llvm::enumerate(file.defs)) {
      if (aborted)
        return;
      if (lookupBuiltin(def.name.name) || def.name.name == "bool") {
        error(def.name.loc) << "'" << def.name.name
                            << "' is a builtin function and cannot be "
                               "redefined";
        continue;
      }
      auto [it, inserted] = byName.try_emplace(def.name.name, defs.size());
      if (!inserted) {
        errorWithNote(def.name.loc, "duplicate def '" + def.name.name + "'",
                      defs[it->second].def->name.loc, "first defined here");
        continue;
      }
      defs.push_back(DefEntry{&def, isPrelude, position});
    }
  };
  add(prelude, /*isPrelude=*/true, preludeDefs);
  add(user, /*isPrelude=*/false, userDefs);
  for (DefEntry &entry : defs)
    if (!aborted)
      resolveDef(entry);
}

void Checker::resolveDef(DefEntry &entry) {
  unsigned errorsBefore = errorCount;
  const std::vector<ast::Ident> &args = entry.def->params;
  for (auto it = args.begin(); it != args.end(); ++it) {
    const ast::Ident &arg = *it;
    auto first = llvm::find_if(
        args, [&](const ast::Ident &other) { return other.name == arg.name; });
    if (first != it)
      errorWithNote(arg.loc,
                    "duplicate argument '" + arg.name + "' of def '" +
                        entry.def->name.name + "'",
                    first->loc, "first defined here");
  }
  resolveExpr(*entry.def->body, entry);
  entry.ok = errorCount == errorsBefore;
}

void Checker::resolveExpr(const ast::Expr &e, const DefEntry &entry) {
  const ast::Def &def = *entry.def;
  switch (e.kind) {
  case ast::Expr::Kind::Name: {
    bool isArg = llvm::any_of(
        def.params, [&](const ast::Ident &p) { return p.name == e.text; });
    if (isArg || lookupGlobal(e.text) || e.text == "score")
      break;
    std::vector<llvm::StringRef> candidates;
    for (const ast::Ident &p : def.params)
      candidates.push_back(p.name);
    for (const GlobalName &g : kGlobals)
      candidates.push_back(g.name);
    candidates.push_back("score");
    std::string hint = ast::didYouMean(e.text, candidates);
    if (hint.empty())
      hint = "; a def sees only its arguments, the index variables, the "
             "sizes and 'score'";
    error(e.loc) << "unknown name '" << e.text << "'" << hint;
    break;
  }
  case ast::Expr::Kind::Index:
    error(e.loc) << "a def cannot index tensors; index the tensor param in "
                    "the attention block and pass the value as an argument";
    return;
  case ast::Expr::Kind::Call: {
    if (const BuiltinFn *fn = lookupBuiltin(e.text)) {
      if (e.operands.size() != fn->arity)
        error(e.loc) << arityMessage(e.text, fn->arity, e.operands.size());
      break;
    }
    if (e.text == "bool") {
      error(e.loc) << "there is no conversion to bool; compare instead, as "
                      "in 'x != 0'";
      break;
    }
    // Defs see the earlier defs of their own file, and user defs also see
    // the prelude.
    const llvm::StringMap<size_t> &scope =
        entry.isPrelude ? preludeDefs : userDefs;
    std::optional<size_t> target;
    if (auto it = scope.find(e.text); it != scope.end()) {
      const DefEntry &callee = defs[it->second];
      if (callee.def == entry.def)
        error(e.loc) << "recursion is not allowed: def '" << e.text
                     << "' calls itself";
      else if (callee.position > entry.position)
        errorWithNote(e.loc,
                      "'" + e.text + "' is defined after '" + def.name.name +
                          "'; a def may only call earlier defs",
                      callee.def->name.loc, "'" + e.text + "' is defined here");
      else
        target = it->second;
    } else if (auto it = preludeDefs.find(e.text);
               !entry.isPrelude && it != preludeDefs.end()) {
      target = it->second;
    } else {
      error(e.loc) << "unknown function '" << e.text << "'"
                   << ast::didYouMean(e.text, functionNames());
    }
    if (target) {
      callTargets[&e] = *target;
      size_t arity = defs[*target].def->params.size();
      if (e.operands.size() != arity)
        error(e.loc) << arityMessage(e.text, arity, e.operands.size());
    }
    break;
  }
  default:
    break;
  }
  for (const ast::ExprPtr &op : e.operands)
    resolveExpr(*op, entry);
}

const DefEntry *Checker::lookupDef(llvm::StringRef name) const {
  if (auto it = userDefs.find(name); it != userDefs.end())
    return &defs[it->second];
  if (auto it = preludeDefs.find(name); it != preludeDefs.end())
    return &defs[it->second];
  return nullptr;
}

std::vector<llvm::StringRef> Checker::functionNames() const {
  std::vector<llvm::StringRef> names;
  for (const BuiltinFn &fn : kBuiltins)
    names.push_back(fn.name);
  for (const DefEntry &entry : defs)
    names.push_back(entry.def->name.name);
  return names;
}

//===----------------------------------------------------------------------===//
// Attention blocks and their items
//===----------------------------------------------------------------------===//

std::optional<CheckedVariant>
Checker::checkAttention(const ast::Attention &block) {
  CheckedVariant v(block.loc);
  v.name = block.name.name;
  variant = &v;
  params.clear();
  lets.clear();
  blockNames.clear();
  frames.clear();
  unsigned errorsBefore = errorCount;

  // Declarations first: params are visible in the whole block, lets only
  // after their definition, which is checked in the second loop.
  llvm::StringMap<mlir::Location> declared;
  const ast::Item *singletons[4] = {}; // scale, score, mask, normalize
  std::vector<const ast::Item *> toCheck;
  for (const ast::Item &item : block.items) {
    if (aborted)
      break;
    using IK = ast::Item::Kind;
    if (item.kind == IK::Param || item.kind == IK::Let) {
      if (!checkBindingName(item.name))
        continue;
      auto [it, inserted] = declared.try_emplace(item.name.name, item.name.loc);
      if (!inserted) {
        errorWithNote(item.name.loc, "duplicate name '" + item.name.name + "'",
                      it->second, "first defined here");
        continue;
      }
      if (item.kind == IK::Param) {
        declareParam(item, v);
      } else {
        lets.try_emplace(item.name.name, LetEntry{&item, nullptr, false});
        toCheck.push_back(&item);
      }
      continue;
    }
    static const char *const names[] = {"scale", "score", "mask", "normalize"};
    unsigned slot =
        static_cast<unsigned>(item.kind) - static_cast<unsigned>(IK::Scale);
    if (const ast::Item *first = singletons[slot]) {
      errorWithNote(item.loc,
                    "duplicate '" + llvm::Twine(names[slot]) + "' item",
                    first->loc, "first defined here");
      continue;
    }
    singletons[slot] = &item;
    toCheck.push_back(&item);
  }

  for (const ast::Item *item : toCheck) {
    if (aborted)
      break;
    switch (item->kind) {
    case ast::Item::Kind::Let: {
      context = Context::Let;
      TExprPtr value = check(*item->value);
      LetEntry &let = lets.find(item->name.name)->second;
      let.value = std::move(value);
      let.defined = true;
      blockNames.push_back(item->name.name);
      break;
    }
    case ast::Item::Kind::Scale:
      v.scale =
          checkItemExpr(*item->value, Context::Scale, ScalarType::F32, "scale");
      break;
    case ast::Item::Kind::Score:
      v.score =
          checkItemExpr(*item->value, Context::Score, ScalarType::F32, "score");
      break;
    case ast::Item::Kind::Mask:
      v.mask =
          checkItemExpr(*item->value, Context::Mask, ScalarType::Bool, "mask");
      break;
    case ast::Item::Kind::Normalize:
      checkNormalize(*item, v);
      break;
    case ast::Item::Kind::Param:
      break;
    }
  }
  variant = nullptr;
  if (errorCount != errorsBefore)
    return std::nullopt;
  return std::optional<CheckedVariant>(std::move(v));
}

bool Checker::checkBindingName(const ast::Ident &id) {
  const char *what = nullptr;
  if (const GlobalName *g = lookupGlobal(id.name))
    what = g->kind == TExpr::Kind::Index ? "an index variable" : "a size";
  else if (id.name == "score")
    what = "the scaled dot product";
  else if (id.name == "f32" || id.name == "i32" || id.name == "bool")
    what = "a type";
  else if (lookupBuiltin(id.name))
    what = "a builtin function";
  else
    return true;
  error(id.loc) << "'" << id.name << "' is " << what
                << " and cannot be redefined";
  return false;
}

void Checker::declareParam(const ast::Item &item, CheckedVariant &v) {
  ParamDecl decl(item.name.loc);
  decl.name = item.name.name;
  decl.isConst = item.isConst;
  const ast::TypeRef &type = *item.type;
  decl.elementType = type.elementType;
  decl.isTensor = type.isTensor;
  for (const ast::Dim &d : type.dims) {
    ParamDim dim;
    switch (d.kind) {
    case ast::Dim::Kind::Name: {
      const GlobalName *g = lookupGlobal(d.name);
      if (g && g->kind == TExpr::Kind::Size) {
        dim.kind = ParamDim::Kind::Size;
        dim.size = g->size;
        break;
      }
      std::vector<llvm::StringRef> sizes;
      for (const GlobalName &s : kGlobals)
        if (s.kind == TExpr::Kind::Size)
          sizes.push_back(s.name);
      std::string hint = ast::didYouMean(d.name, sizes);
      if (hint.empty())
        hint = "; a dimension is a size (B, H, Hkv, Lq, Lkv, D, Dv), a "
               "positive integer or '?'";
      error(d.loc) << "unknown size '" << d.name << "' in the shape of '"
                   << decl.name << "'" << hint;
      break;
    }
    case ast::Dim::Kind::Literal:
      if (d.value <= 0)
        error(d.loc) << "tensor dimension must be positive, got " << d.value;
      dim.kind = ParamDim::Kind::Literal;
      dim.value = d.value;
      break;
    case ast::Dim::Kind::Dynamic:
      dim.kind = ParamDim::Kind::Dynamic;
      break;
    }
    decl.dims.push_back(dim);
  }
  if (item.isConst && type.isTensor)
    error(type.loc) << "only scalar params can be const; '" << decl.name
                    << "' is a tensor";
  if (item.value) {
    if (type.isTensor)
      error(item.value->loc)
          << "tensor param '" << decl.name << "' cannot have a default value";
    else
      decl.value = literalValue(*item.value, decl);
  } else if (item.isConst) {
    error(item.name.loc) << "const param '" << decl.name
                         << "' needs a value, as in 'const param " << decl.name
                         << ": " << scalarTypeName(decl.elementType)
                         << " = ...;'";
  }
  params.try_emplace(decl.name, v.params.size());
  blockNames.push_back(item.name.name);
  v.params.push_back(std::move(decl));
}

std::optional<ParamValue> Checker::literalValue(const ast::Expr &e,
                                                const ParamDecl &decl) {
  const char *what = decl.isConst ? "value" : "default value";
  const ast::Expr *lit = &e;
  bool negate =
      lit->kind == ast::Expr::Kind::Unary && lit->unaryOp == UnaryOp::Neg;
  if (negate)
    lit = lit->operands[0].get();
  std::optional<ScalarType> litType;
  if (lit->kind == ast::Expr::Kind::Int)
    litType = ScalarType::I32;
  else if (lit->kind == ast::Expr::Kind::Float)
    litType = ScalarType::F32;
  else if (lit->kind == ast::Expr::Kind::Bool && !negate)
    litType = ScalarType::Bool;
  if (!litType) {
    error(e.loc) << "the " << what << " of param '" << decl.name
                 << "' must be a literal";
    return std::nullopt;
  }
  ScalarType type = decl.elementType;
  if (*litType != type &&
      !(*litType == ScalarType::I32 && type == ScalarType::F32)) {
    error(e.loc) << "the " << what << " of param '" << decl.name << "' must be "
                 << scalarTypeName(type) << ", got " << quoted(*litType);
    return std::nullopt;
  }
  ParamValue value;
  value.type = type;
  double sign = negate ? -1.0 : 1.0;
  if (type == ScalarType::I32)
    value.intValue = negate ? -lit->intValue : lit->intValue;
  else if (type == ScalarType::F32)
    value.floatValue =
        sign *
        (*litType == ScalarType::I32 ? double(lit->intValue) : lit->floatValue);
  else
    value.boolValue = lit->boolValue;
  return value;
}

TExprPtr Checker::checkItemExpr(const ast::Expr &e, Context c, ScalarType want,
                                llvm::StringRef what) {
  context = c;
  TExprPtr t = check(e);
  if (!t)
    return nullptr;
  if (want == ScalarType::F32 && t->type == ScalarType::I32)
    return convert(std::move(t), ScalarType::F32);
  if (t->type != want) {
    error(e.loc) << what << " must be " << scalarTypeName(want) << ", got "
                 << quoted(t->type);
    return nullptr;
  }
  return t;
}

void Checker::checkNormalize(const ast::Item &item, CheckedVariant &v) {
  static const std::pair<const char *, Normalization> kinds[] = {
      {"softmax", Normalization::Softmax},
      {"sigmoid", Normalization::Sigmoid},
      {"relu", Normalization::Relu},
      {"linear", Normalization::Linear}};
  llvm::StringRef name = item.name.name;
  auto kind = llvm::find_if(kinds, [&](auto &k) { return name == k.first; });
  if (kind == std::end(kinds)) {
    std::string hint =
        ast::didYouMean(name, {"softmax", "sigmoid", "relu", "linear"});
    if (hint.empty())
      hint = "; expected 'softmax', 'sigmoid', 'relu' or 'linear'";
    error(item.name.loc) << "unknown normalization '" << name << "'" << hint;
    return;
  }
  v.normalization = kind->second;
  v.normalizeLoc = item.loc;
  if (item.hasArgList && kind->second != Normalization::Softmax) {
    error(item.name.loc) << "'" << name << "' takes no arguments";
    return;
  }
  std::optional<mlir::Location> sinkLoc;
  for (const ast::NamedArg &arg : item.args) {
    if (arg.name.name != "sink") {
      std::string hint = ast::didYouMean(arg.name.name, {"sink"});
      error(arg.name.loc) << "unknown argument '" << arg.name.name
                          << "' of 'softmax'"
                          << (hint.empty() ? "; expected 'sink'" : hint);
      continue;
    }
    if (sinkLoc) {
      errorWithNote(arg.name.loc, "duplicate argument 'sink'", *sinkLoc,
                    "first given here");
      continue;
    }
    sinkLoc = arg.name.loc;
    v.sink = checkItemExpr(*arg.value, Context::Sink, ScalarType::F32, "sink");
  }
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

bool Checker::overLimits(mlir::Location loc, unsigned level) {
  if (aborted)
    return true;
  if (level < kMaxDepth && nodeCount <= kMaxNodes)
    return false;
  aborted = true;
  if (level >= kMaxDepth)
    error(loc) << "expression nested too deeply after inlining lets and defs "
                  "(more than "
               << kMaxDepth << " levels)";
  else
    error(loc) << "expressions too large after inlining lets and defs (more "
                  "than "
               << kMaxNodes << " nodes in the file)";
  return true;
}

TExprPtr Checker::check(const ast::Expr &e) {
  if (overLimits(e.loc, depth))
    return nullptr;
  DepthScope scope(depth);
  switch (e.kind) {
  case ast::Expr::Kind::Int: {
    TExprPtr n = node(TExpr::Kind::ConstInt, ScalarType::I32, e.loc);
    n->intValue = e.intValue;
    return n;
  }
  case ast::Expr::Kind::Float: {
    TExprPtr n = node(TExpr::Kind::ConstFloat, ScalarType::F32, e.loc);
    n->floatValue = e.floatValue;
    return n;
  }
  case ast::Expr::Kind::Bool: {
    TExprPtr n = node(TExpr::Kind::ConstBool, ScalarType::Bool, e.loc);
    n->boolValue = e.boolValue;
    return n;
  }
  case ast::Expr::Kind::Name:
    return checkName(e);
  case ast::Expr::Kind::Index:
    return checkIndex(e);
  case ast::Expr::Kind::Call:
    return checkCall(e);
  case ast::Expr::Kind::Unary: {
    TExprPtr x = check(*e.operands[0]);
    if (!x)
      return nullptr;
    if (e.unaryOp == UnaryOp::Neg && x->type == ScalarType::Bool) {
      error(e.loc) << "cannot apply unary '-' to 'bool'";
      return nullptr;
    }
    if (e.unaryOp == UnaryOp::Not && x->type != ScalarType::Bool) {
      error(e.loc) << "cannot apply '!' to " << quoted(x->type)
                   << "; '!' needs a bool operand";
      return nullptr;
    }
    TExprPtr n = node(TExpr::Kind::Unary, x->type, e.loc);
    n->unaryOp = e.unaryOp;
    n->operands.push_back(std::move(x));
    return n;
  }
  case ast::Expr::Kind::Binary: {
    TExprPtr lhs = check(*e.operands[0]);
    TExprPtr rhs = check(*e.operands[1]);
    if (!lhs || !rhs)
      return nullptr;
    return checkBinary(e, std::move(lhs), std::move(rhs));
  }
  case ast::Expr::Kind::Ternary: {
    TExprPtr cond = check(*e.operands[0]);
    TExprPtr lhs = check(*e.operands[1]);
    TExprPtr rhs = check(*e.operands[2]);
    if (!cond || !lhs || !rhs)
      return nullptr;
    return makeSelect(e.loc, "'?:'", std::move(cond), std::move(lhs),
                      std::move(rhs));
  }
  }
  return nullptr;
}

TExprPtr Checker::checkBinary(const ast::Expr &e, TExprPtr lhs, TExprPtr rhs) {
  BinaryOp op = e.binaryOp;
  ScalarType lt = lhs->type, rt = rhs->type;
  bool numeric = lt != ScalarType::Bool && rt != ScalarType::Bool;
  const char *hint = nullptr;
  bool isComparison = false;
  switch (op) {
  case BinaryOp::And:
  case BinaryOp::Or:
    if (lt != ScalarType::Bool || rt != ScalarType::Bool)
      hint = "; it needs bool operands";
    break;
  case BinaryOp::Mod:
    if (lt != ScalarType::I32 || rt != ScalarType::I32)
      hint = "; '%' needs i32 operands";
    break;
  case BinaryOp::Eq:
  case BinaryOp::Ne:
    if (!numeric && lt != rt)
      hint = "";
    isComparison = true;
    break;
  case BinaryOp::Lt:
  case BinaryOp::Le:
  case BinaryOp::Gt:
  case BinaryOp::Ge:
    if (!numeric)
      hint = "";
    isComparison = true;
    break;
  case BinaryOp::Add:
  case BinaryOp::Sub:
  case BinaryOp::Mul:
  case BinaryOp::Div:
    if (!numeric)
      hint = "";
    break;
  }
  if (hint) {
    error(e.loc) << "cannot apply '" << binaryOpSpelling(op) << "' to "
                 << quoted(lt) << " and " << quoted(rt) << hint;
    return nullptr;
  }
  // Mixed i32 and f32 computes in f32.
  if (numeric && lt != rt) {
    lhs = convert(std::move(lhs), ScalarType::F32);
    rhs = convert(std::move(rhs), ScalarType::F32);
  }
  TExprPtr n = node(TExpr::Kind::Binary,
                    isComparison ? ScalarType::Bool : lhs->type, e.loc);
  n->binaryOp = op;
  n->operands.push_back(std::move(lhs));
  n->operands.push_back(std::move(rhs));
  return n;
}

TExprPtr Checker::makeSelect(mlir::Location loc, llvm::StringRef what,
                             TExprPtr cond, TExprPtr lhs, TExprPtr rhs) {
  if (cond->type != ScalarType::Bool) {
    error(cond->loc) << "the condition of " << what << " must be bool, got "
                     << quoted(cond->type);
    return nullptr;
  }
  if (lhs->type != rhs->type) {
    if (lhs->type == ScalarType::Bool || rhs->type == ScalarType::Bool) {
      error(loc) << "the branches of " << what << " have different types "
                 << quoted(lhs->type) << " and " << quoted(rhs->type);
      return nullptr;
    }
    lhs = convert(std::move(lhs), ScalarType::F32);
    rhs = convert(std::move(rhs), ScalarType::F32);
  }
  TExprPtr n = node(TExpr::Kind::Select, lhs->type, loc);
  n->operands.push_back(std::move(cond));
  n->operands.push_back(std::move(lhs));
  n->operands.push_back(std::move(rhs));
  return n;
}

TExprPtr Checker::convert(TExprPtr e, ScalarType to, mlir::Location loc) {
  if (e->type == to)
    return e;
  TExprPtr n = node(TExpr::Kind::Cast, to, loc);
  n->operands.push_back(std::move(e));
  return n;
}

TExprPtr Checker::clone(const TExpr &e, unsigned level) {
  if (overLimits(e.loc, level))
    return nullptr;
  TExprPtr n = node(e.kind, e.type, e.loc);
  n->intValue = e.intValue;
  n->floatValue = e.floatValue;
  n->boolValue = e.boolValue;
  n->index = e.index;
  n->size = e.size;
  n->name = e.name;
  n->unaryOp = e.unaryOp;
  n->binaryOp = e.binaryOp;
  n->builtin = e.builtin;
  for (const TExprPtr &op : e.operands) {
    TExprPtr c = clone(*op, level + 1);
    if (!c)
      return nullptr;
    n->operands.push_back(std::move(c));
  }
  return n;
}

TExprPtr Checker::checkName(const ast::Expr &e) {
  llvm::StringRef name = e.text;
  if (!frames.empty()) {
    // Def bodies see their arguments and the globals only.
    const Frame &frame = frames.back();
    for (auto [i, param] : llvm::enumerate(frame.def->def->params))
      if (param.name == name)
        return clone(*frame.args[i], depth);
  } else {
    if (auto it = lets.find(name); it != lets.end())
      return useLet(e, it->second);
    if (auto it = params.find(name); it != params.end()) {
      const ParamDecl &p = variant->params[it->second];
      if (p.isTensor) {
        error(e.loc) << "tensor param '" << name << "' must be indexed, as in '"
                     << name << "[...]' with " << p.dims.size()
                     << (p.dims.size() == 1 ? " index" : " indices");
        return nullptr;
      }
      TExprPtr n = node(TExpr::Kind::Param, p.elementType, e.loc);
      n->name = p.name;
      return allowed(std::move(n));
    }
  }
  if (const GlobalName *g = lookupGlobal(name)) {
    TExprPtr n = node(g->kind, ScalarType::I32, e.loc);
    n->index = g->index;
    n->size = g->size;
    return allowed(std::move(n));
  }
  if (name == "score")
    return allowed(node(TExpr::Kind::Score, ScalarType::F32, e.loc));

  std::vector<llvm::StringRef> candidates;
  for (const GlobalName &g : kGlobals)
    candidates.push_back(g.name);
  candidates.push_back("score");
  candidates.insert(candidates.end(), blockNames.begin(), blockNames.end());
  error(e.loc) << "unknown name '" << name << "'"
               << ast::didYouMean(name, candidates);
  return nullptr;
}

TExprPtr Checker::useLet(const ast::Expr &e, const LetEntry &let) {
  if (!let.defined) {
    errorWithNote(e.loc, "'" + e.text + "' is used before its definition",
                  let.item->name.loc, "'" + e.text + "' is defined here");
    return nullptr;
  }
  if (!let.value)
    return nullptr;
  if (const TExpr *bad = findForbidden(*let.value)) {
    mlir::InFlightDiagnostic diag = error(e.loc);
    if (bad->kind == TExpr::Kind::Score)
      diag << "let '" << e.text
           << "' uses 'score', which is only available in the score "
              "expression";
    else
      diag << "let '" << e.text << "' cannot be used in " << contextName()
           << ": it uses " << describeUse(*bad) << "; " << contextRule();
    diag.attachNote(bad->loc) << describeUse(*bad) << " is used here";
    return nullptr;
  }
  return clone(*let.value, depth);
}

TExprPtr Checker::checkIndex(const ast::Expr &e) {
  const ast::Expr &base = *e.operands[0];
  if (base.kind != ast::Expr::Kind::Name) {
    error(e.loc) << "only tensor params can be indexed";
    return nullptr;
  }
  llvm::StringRef name = base.text;
  auto it = frames.empty() ? params.find(name) : params.end();
  if (it == params.end()) {
    bool known = lets.count(name) || lookupGlobal(name) || name == "score";
    if (!known && frames.empty())
      return checkName(base); // Reports the unknown name.
    error(base.loc) << "cannot index '" << name
                    << "': only tensor params can be indexed";
    return nullptr;
  }
  const ParamDecl &p = variant->params[it->second];
  if (!p.isTensor) {
    error(base.loc) << "cannot index '" << name << "': it is a scalar param";
    return nullptr;
  }
  size_t got = e.operands.size() - 1;
  if (got != p.dims.size()) {
    error(e.loc) << "tensor param '" << name << "' has " << p.dims.size()
                 << (p.dims.size() == 1 ? " dimension" : " dimensions")
                 << ", but " << got << (got == 1 ? " index is" : " indices are")
                 << " given";
    return nullptr;
  }
  TExprPtr n = node(TExpr::Kind::TensorLoad, p.elementType, e.loc);
  n->name = p.name;
  n = allowed(std::move(n));
  if (!n)
    return nullptr;
  bool ok = true;
  for (size_t i = 1; i <= got; ++i) {
    TExprPtr index = check(*e.operands[i]);
    if (index && index->type != ScalarType::I32) {
      error(e.operands[i]->loc) << "index " << i << " of '" << name
                                << "' must be i32, got " << quoted(index->type);
      index = nullptr;
    }
    ok &= index != nullptr;
    if (index)
      n->operands.push_back(std::move(index));
  }
  return ok ? std::move(n) : nullptr;
}

TExprPtr Checker::checkCall(const ast::Expr &e) {
  llvm::StringRef name = e.text;
  if (name == "bool") {
    error(e.loc) << "there is no conversion to bool; compare instead, as in "
                    "'x != 0'";
    return nullptr;
  }
  const BuiltinFn *fn = lookupBuiltin(name);
  const DefEntry *target = nullptr;
  if (!fn) {
    if (frames.empty()) {
      target = lookupDef(name);
    } else if (auto it = callTargets.find(&e); it != callTargets.end()) {
      target = &defs[it->second];
    }
    if (!target) {
      error(e.loc) << "unknown function '" << name << "'"
                   << ast::didYouMean(name, functionNames());
      return nullptr;
    }
  }
  size_t arity = fn ? fn->arity : target->def->params.size();
  if (e.operands.size() != arity) {
    error(e.loc) << arityMessage(name, arity, e.operands.size());
    return nullptr;
  }
  std::vector<TExprPtr> args;
  bool ok = true;
  for (const ast::ExprPtr &arg : e.operands) {
    args.push_back(check(*arg));
    ok &= args.back() != nullptr;
  }
  if (!ok)
    return nullptr;
  if (fn)
    return applyBuiltin(e, *fn, std::move(args));
  if (!target->ok)
    return nullptr; // Its errors are already reported.
  frames.push_back(Frame{target, e.loc, std::move(args)});
  TExprPtr body = check(*target->def->body);
  frames.pop_back();
  return body;
}

TExprPtr Checker::applyBuiltin(const ast::Expr &e, const BuiltinFn &fn,
                               std::vector<TExprPtr> args) {
  switch (fn.kind) {
  case FnKind::Cast:
    return convert(std::move(args[0]), fn.castTo, e.loc);
  case FnKind::Select:
    return makeSelect(e.loc, "'select'", std::move(args[0]), std::move(args[1]),
                      std::move(args[2]));
  case FnKind::ToFloat:
  case FnKind::Keep:
    break;
  }
  ScalarType type =
      fn.kind == FnKind::ToFloat ? ScalarType::F32 : ScalarType::I32;
  for (const TExprPtr &arg : args) {
    if (arg->type == ScalarType::Bool) {
      error(arg->loc) << "'" << fn.name << "' needs "
                      << (fn.arity == 1 ? "a numeric argument"
                                        : "numeric arguments")
                      << ", got 'bool'";
      return nullptr;
    }
    if (arg->type == ScalarType::F32)
      type = ScalarType::F32;
  }
  TExprPtr n = node(TExpr::Kind::Call, type, e.loc);
  n->builtin = fn.builtin;
  for (TExprPtr &arg : args)
    n->operands.push_back(convert(std::move(arg), type));
  return n;
}

//===----------------------------------------------------------------------===//
// What each item may use
//===----------------------------------------------------------------------===//

bool Checker::isForbidden(const TExpr &n) const {
  switch (context) {
  case Context::Let:
  case Context::Score:
    return false;
  case Context::Mask:
    return n.kind == TExpr::Kind::Score;
  case Context::Scale:
    if (n.kind == TExpr::Kind::Param) {
      auto it = params.find(n.name);
      return it == params.end() || !variant->params[it->second].isConst;
    }
    return n.kind == TExpr::Kind::Score || n.kind == TExpr::Kind::Index ||
           n.kind == TExpr::Kind::TensorLoad;
  case Context::Sink:
    return n.kind == TExpr::Kind::Score ||
           (n.kind == TExpr::Kind::Index &&
            (n.index == IndexVar::Q || n.index == IndexVar::KV));
  }
  return false;
}

const TExpr *Checker::findForbidden(const TExpr &e) const {
  if (isForbidden(e))
    return &e;
  for (const TExprPtr &op : e.operands)
    if (const TExpr *found = findForbidden(*op))
      return found;
  return nullptr;
}

TExprPtr Checker::allowed(TExprPtr n) {
  if (!isForbidden(*n))
    return n;
  if (n->kind == TExpr::Kind::Score)
    error(n->loc) << "'score' is only available in the score expression";
  else
    error(n->loc) << describeUse(*n) << " cannot be used in " << contextName()
                  << "; " << contextRule();
  return nullptr;
}

std::string Checker::describeUse(const TExpr &n) const {
  switch (n.kind) {
  case TExpr::Kind::Index:
    for (const GlobalName &g : kGlobals)
      if (g.kind == TExpr::Kind::Index && g.index == n.index)
        return std::string("'") + g.name + "'";
    break;
  case TExpr::Kind::Score:
    return "'score'";
  case TExpr::Kind::Param:
    return "runtime param '" + n.name + "'";
  case TExpr::Kind::TensorLoad:
    return "tensor param '" + n.name + "'";
  default:
    break;
  }
  return "this";
}

const char *Checker::contextName() const {
  switch (context) {
  case Context::Scale:
    return "the scale expression";
  case Context::Sink:
    return "the sink expression";
  case Context::Mask:
    return "the mask expression";
  case Context::Score:
    return "the score expression";
  case Context::Let:
    return "a let";
  }
  return "";
}

const char *Checker::contextRule() const {
  if (context == Context::Scale)
    return "scale may only use sizes, literals and const params";
  return "the sink may use b, h, hkv, sizes and params, but not the query or "
         "key index";
}

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

mlir::FailureOr<std::vector<CheckedVariant>>
attnc::checkFile(const ast::File &file, llvm::SourceMgr &sm,
                 mlir::MLIRContext *ctx) {
  std::unique_ptr<ast::File> prelude = parseFile(sm, loadPrelude(sm), ctx);
  if (!prelude)
    return mlir::failure();
  Checker checker;
  checker.addDefs(*prelude, file);
  std::vector<CheckedVariant> variants;
  llvm::StringMap<mlir::Location> names;
  for (const ast::Attention &block : file.attentions) {
    if (checker.aborted)
      break;
    auto [it, inserted] = names.try_emplace(block.name.name, block.name.loc);
    if (!inserted) {
      checker.errorWithNote(block.name.loc,
                            "duplicate attention '" + block.name.name + "'",
                            it->second, "first defined here");
      continue;
    }
    if (std::optional<CheckedVariant> v = checker.checkAttention(block))
      variants.push_back(std::move(*v));
  }
  if (checker.failed())
    return mlir::failure();
  return std::move(variants);
}

mlir::FailureOr<std::vector<CheckedVariant>>
attnc::parseAndCheck(llvm::SourceMgr &sm, unsigned bufferId,
                     mlir::MLIRContext *ctx) {
  std::unique_ptr<ast::File> file = parseFile(sm, bufferId, ctx);
  if (!file)
    return mlir::failure();
  return checkFile(*file, sm, ctx);
}
