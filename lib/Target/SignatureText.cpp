//===- SignatureText.cpp - Kernel signatures as text ----------------------===//
//
// The MLIR-free half of Signature.h: type names and the text form that is
// stored next to a compiled object (kernel cache entries, generated AOT
// headers) and read back without a compiler. One field per line:
//
//   attn-signature 1
//   name alibi
//   normalization softmax
//   sink 0
//   param slopes f32 runtime tensor 1 H none
//   param window i32 runtime scalar 0 40b0000000000000
//   param cap f32 const scalar 0 4049000000000000
//   end
//
// A param line is `param NAME TYPE (runtime|const) (scalar|tensor) RANK
// DIM... VALUE`, each DIM a size name, a non-negative integer or `?`, VALUE
// `none` or the 16 hex digits of the IEEE double (exact and independent of
// the C locale).
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/Signature.h"

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

using namespace attnc;

const char *attnc::paramTypeName(ParamType t) {
  switch (t) {
  case ParamType::F32:
    return "f32";
  case ParamType::I32:
    return "i32";
  case ParamType::Bool:
    return "bool";
  }
  return "?";
}

std::string attnc::declaredType(const SignatureParam &p) {
  std::string s = paramTypeName(p.type);
  if (!p.isTensor)
    return s;
  s += "[";
  for (size_t i = 0; i < p.dims.size(); ++i) {
    if (i)
      s += ", ";
    const SignatureDim &d = p.dims[i];
    s += d.kind == SignatureDim::Kind::Size      ? Sizes::names[d.size]
         : d.kind == SignatureDim::Kind::Literal ? std::to_string(d.value)
                                                 : std::string("?");
  }
  return s + "]";
}

namespace {

constexpr const char *kMagic = "attn-signature 1";

std::string doubleBits(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, bits);
  return buf;
}

bool parseDoubleBits(const std::string &s, double &v) {
  if (s.size() != 16)
    return false;
  uint64_t bits = 0;
  for (char c : s) {
    int digit = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
    if (digit < 0)
      return false;
    bits = bits << 4 | static_cast<uint64_t>(digit);
  }
  std::memcpy(&v, &bits, sizeof v);
  return true;
}

bool isIdentifier(const std::string &s) {
  if (s.empty() ||
      !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

bool parseInt(const std::string &s, int64_t &v) {
  if (s.empty() || s.size() > 18)
    return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

std::vector<std::string> split(const std::string &line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  std::string w;
  while (in >> w)
    words.push_back(w);
  return words;
}

} // namespace

std::string KernelSignature::toText() const {
  std::string s = std::string(kMagic) + "\n";
  s += "name " + name + "\n";
  s += "normalization " + normalization + "\n";
  s += std::string("sink ") + (hasSink ? "1" : "0") + "\n";
  for (const SignatureParam &p : params) {
    s += "param " + p.name + " " + paramTypeName(p.type) +
         (p.isConst ? " const" : " runtime") +
         (p.isTensor ? " tensor " : " scalar ") + std::to_string(p.dims.size());
    for (const SignatureDim &d : p.dims)
      s += " " + (d.kind == SignatureDim::Kind::Size
                      ? std::string(Sizes::names[d.size])
                  : d.kind == SignatureDim::Kind::Literal
                      ? std::to_string(d.value)
                      : std::string("?"));
    s += " " + (p.value ? doubleBits(*p.value) : std::string("none")) + "\n";
  }
  return s + "end\n";
}

bool KernelSignature::fromText(const std::string &text, KernelSignature &out,
                               std::string &error) {
  KernelSignature sig;
  std::istringstream in(text);
  std::string line;
  int lineNo = 0;
  auto bad = [&](const std::string &why) {
    error = "malformed kernel signature, line " + std::to_string(lineNo) +
            ": " + why;
    return false;
  };
  bool sawName = false, sawNorm = false, sawSink = false, sawEnd = false;
  while (std::getline(in, line)) {
    ++lineNo;
    if (sawEnd)
      return bad("text after 'end'");
    if (lineNo == 1) {
      if (line != kMagic)
        return bad("expected '" + std::string(kMagic) + "'");
      continue;
    }
    std::vector<std::string> w = split(line);
    if (w.empty())
      return bad("empty line");
    if (w[0] == "end" && w.size() == 1) {
      sawEnd = true;
    } else if (w[0] == "name" && w.size() == 2 && isIdentifier(w[1])) {
      sig.name = w[1];
      sawName = true;
    } else if (w[0] == "normalization" && w.size() == 2 &&
               (w[1] == "softmax" || w[1] == "sigmoid" || w[1] == "relu" ||
                w[1] == "linear")) {
      sig.normalization = w[1];
      sawNorm = true;
    } else if (w[0] == "sink" && w.size() == 2 &&
               (w[1] == "0" || w[1] == "1")) {
      sig.hasSink = w[1] == "1";
      sawSink = true;
    } else if (w[0] == "param") {
      // param NAME TYPE KIND SHAPEKIND RANK DIM... VALUE
      if (w.size() < 7 || !isIdentifier(w[1]))
        return bad("expected 'param NAME TYPE KIND SHAPE RANK DIM... VALUE'");
      SignatureParam p;
      p.name = w[1];
      if (w[2] == "f32")
        p.type = ParamType::F32;
      else if (w[2] == "i32")
        p.type = ParamType::I32;
      else if (w[2] == "bool")
        p.type = ParamType::Bool;
      else
        return bad("unknown param type '" + w[2] + "'");
      if (w[3] != "const" && w[3] != "runtime")
        return bad("expected 'const' or 'runtime', got '" + w[3] + "'");
      p.isConst = w[3] == "const";
      if (w[4] != "tensor" && w[4] != "scalar")
        return bad("expected 'tensor' or 'scalar', got '" + w[4] + "'");
      p.isTensor = w[4] == "tensor";
      int64_t rank;
      if (!parseInt(w[5], rank) || rank > 16 ||
          w.size() != 7 + static_cast<size_t>(rank) ||
          (p.isTensor != (rank > 0)))
        return bad("bad rank or dimension count for param '" + p.name + "'");
      for (int64_t d = 0; d < rank; ++d) {
        const std::string &t = w[6 + d];
        SignatureDim dim;
        if (t == "?") {
          dim.kind = SignatureDim::Kind::Dynamic;
        } else if (parseInt(t, dim.value)) {
          dim.kind = SignatureDim::Kind::Literal;
        } else {
          dim.kind = SignatureDim::Kind::Size;
          int found = -1;
          for (int i = 0; i < 7; ++i)
            if (t == Sizes::names[i])
              found = i;
          if (found < 0)
            return bad("unknown dimension '" + t + "'");
          dim.size = found;
        }
        p.dims.push_back(dim);
      }
      const std::string &v = w.back();
      if (v != "none") {
        double value;
        if (!parseDoubleBits(v, value))
          return bad("bad value '" + v + "' for param '" + p.name + "'");
        p.value = value;
      }
      for (const SignatureParam &q : sig.params)
        if (q.name == p.name)
          return bad("param '" + p.name + "' appears twice");
      sig.params.push_back(std::move(p));
    } else {
      return bad("unexpected '" + w[0] + "'");
    }
  }
  if (lineNo == 0)
    return bad("empty text");
  if (!sawName || !sawNorm || !sawSink || !sawEnd)
    return bad("missing name, normalization, sink or end (truncated?)");
  out = std::move(sig);
  return true;
}
