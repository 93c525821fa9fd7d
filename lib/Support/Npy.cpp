//===- Npy.cpp - Reading and writing NumPy .npy files ---------------------===//
//
// A .npy file is the magic "\x93NUMPY", a version byte pair, a little-endian
// header length (2 bytes in 1.0, 4 bytes in 2.0/3.0), a Python dict literal
// {'descr': ..., 'fortran_order': ..., 'shape': (...)} padded with spaces and
// a newline, then the raw element bytes. The dict is parsed by a small
// recursive-descent reader that accepts exactly what NumPy writes (plus
// harmless whitespace variations) and rejects everything else with a reason.
// Element bytes are copied as they are: the host is assumed little-endian.
//
//===----------------------------------------------------------------------===//

#include "attnc/Support/Npy.h"
#include "attnc/Support/AtomicFile.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sys/stat.h>

namespace attnc {

const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "float32";
  case DType::F16:
    return "float16";
  case DType::I32:
    return "int32";
  case DType::Bool:
    return "bool";
  case DType::BF16:
    return "bfloat16";
  }
  return "?";
}

int64_t dtypeSize(DType dtype) {
  switch (dtype) {
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::Bool:
    return 1;
  }
  return 1;
}

const char *dtypeDescr(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "<f4";
  case DType::F16:
    return "<f2";
  case DType::I32:
    return "<i4";
  case DType::Bool:
    return "|b1";
  case DType::BF16:
    return "<V2"; // NumPy has no bfloat16; never written by the tools
  }
  return "?";
}

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string formatShape(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kMaxDims = 64;
constexpr size_t kMaxPreamble = 12; // magic + version + 4-byte length

/// Quotes untrusted header text for a diagnostic: non-printable bytes become
/// \xNN and long text is cut.
std::string printable(const std::string &s) {
  std::string r;
  for (size_t i = 0; i < s.size() && i < 40; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    }
  }
  if (s.size() > 40)
    r += "...";
  return r;
}

/// Checks that `shape` of `dtype` has a byte size representable as int64
/// (counting zero extents as one, so that no extent is absurd either) and
/// returns the true byte size.
bool checkedByteSize(const std::string &name, DType dtype,
                     const std::vector<int64_t> &shape, int64_t &bytes,
                     std::string &error) {
  const int64_t limit = std::numeric_limits<int64_t>::max();
  int64_t bound = dtypeSize(dtype);
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) {
      error = name + ": negative dimension in shape " + formatShape(shape);
      return false;
    }
    empty |= d == 0;
    if (d > 1 && bound > limit / d) {
      error = name + ": shape " + formatShape(shape) + " of " +
              dtypeName(dtype) + " is too large";
      return false;
    }
    bound *= d > 1 ? d : 1;
  }
  bytes = empty ? 0 : bound;
  return true;
}

/// Reads the fixed preamble from the first `n` bytes; sets `dictBegin` and
/// `dictEnd` to the offsets of the header dict.
bool parsePreamble(const std::string &name, const uint8_t *b, size_t n,
                   size_t &dictBegin, size_t &dictEnd, std::string &error) {
  if (n < kMagicLen + 2 || std::memcmp(b, kMagic, kMagicLen) != 0) {
    error = name + ": not a .npy file (bad magic)";
    return false;
  }
  unsigned major = b[6], minor = b[7];
  if (major < 1 || major > 3 || minor != 0) {
    error = name + ": unsupported .npy format version " +
            std::to_string(major) + "." + std::to_string(minor) +
            " (expected 1.0, 2.0 or 3.0)";
    return false;
  }
  size_t lenBytes = major == 1 ? 2 : 4;
  if (n < 8 + lenBytes) {
    error = name + ": file is truncated (incomplete header)";
    return false;
  }
  uint64_t len = 0;
  for (size_t i = 0; i < lenBytes; ++i)
    len |= static_cast<uint64_t>(b[8 + i]) << (8 * i);
  dictBegin = 8 + lenBytes;
  dictEnd = dictBegin + static_cast<size_t>(len);
  return true;
}

/// Recursive-descent reader of the header dict literal.
class HeaderParser {
public:
  HeaderParser(const std::string &name, const std::string &text,
               std::string &error)
      : name(name), text(text), error(error) {}

  bool parse(DType &dtype, std::vector<int64_t> &shape) {
    bool haveDescr = false, haveOrder = false, haveShape = false;
    bool fortran = false;
    std::string descr;
    skipSpace();
    if (!expect('{', "expected '{'"))
      return false;
    skipSpace();
    while (!at('}')) {
      std::string key;
      if (!parseString(key))
        return false;
      skipSpace();
      if (!expect(':', "expected ':' after a key"))
        return false;
      skipSpace();
      if (key == "descr") {
        if (haveDescr)
          return malformed("duplicate key 'descr'");
        haveDescr = true;
        if (at('[') || at('{'))
          return fail("structured dtypes are not supported");
        if (!parseString(descr))
          return false;
      } else if (key == "fortran_order") {
        if (haveOrder)
          return malformed("duplicate key 'fortran_order'");
        haveOrder = true;
        if (!parseBool(fortran))
          return false;
      } else if (key == "shape") {
        if (haveShape)
          return malformed("duplicate key 'shape'");
        haveShape = true;
        if (!parseShape(shape))
          return false;
      } else {
        return malformed("unexpected key '" + printable(key) + "'");
      }
      skipSpace();
      if (at('}'))
        break;
      if (!expect(',', "expected ',' or '}'"))
        return false;
      skipSpace();
    }
    ++pos; // '}'
    skipSpace();
    if (pos != text.size())
      return malformed("unexpected text after '}'");
    if (!haveDescr || !haveOrder || !haveShape)
      return malformed(std::string("missing key '") +
                       (!haveDescr   ? "descr"
                        : !haveOrder ? "fortran_order"
                                     : "shape") +
                       "'");
    if (!parseDescr(descr, dtype))
      return false;
    // A Fortran-order array with at most one extent above 1 has the same
    // layout as its C-order twin.
    size_t nontrivial = 0;
    for (int64_t d : shape)
      nontrivial += d > 1;
    if (fortran && nontrivial > 1)
      return fail("Fortran-order arrays are not supported");
    return true;
  }

private:
  bool at(char c) const { return pos < text.size() && text[pos] == c; }
  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' ||
                                 text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }
  bool fail(const std::string &msg) {
    error = name + ": " + msg;
    return false;
  }
  bool malformed(const std::string &msg) {
    return fail("malformed .npy header: " + msg);
  }
  bool expect(char c, const char *msg) {
    if (!at(c))
      return malformed(msg);
    ++pos;
    return true;
  }

  bool parseString(std::string &out) {
    if (!at('\'') && !at('"'))
      return malformed("expected a quoted string");
    char quote = text[pos++];
    size_t begin = pos;
    while (pos < text.size() && text[pos] != quote) {
      if (text[pos] == '\\' || text[pos] == '\n')
        return malformed("unsupported character in string");
      ++pos;
    }
    if (pos == text.size())
      return malformed("unterminated string");
    out = text.substr(begin, pos - begin);
    ++pos;
    return true;
  }

  bool parseBool(bool &out) {
    if (text.compare(pos, 4, "True") == 0) {
      pos += 4;
      out = true;
      return true;
    }
    if (text.compare(pos, 5, "False") == 0) {
      pos += 5;
      out = false;
      return true;
    }
    return malformed("'fortran_order' must be True or False");
  }

  bool parseDim(int64_t &out) {
    if (at('-'))
      return fail("negative dimension in shape");
    if (pos >= text.size() || text[pos] < '0' || text[pos] > '9')
      return malformed("expected an integer in 'shape'");
    const int64_t limit = std::numeric_limits<int64_t>::max();
    out = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      int64_t digit = text[pos++] - '0';
      if (out > (limit - digit) / 10)
        return fail("dimension in shape is too large");
      out = out * 10 + digit;
    }
    if (at('L')) // Python 2 long literal, as old NumPy wrote it
      ++pos;
    return true;
  }

  bool parseShape(std::vector<int64_t> &shape) {
    if (!expect('(', "'shape' must be a tuple"))
      return false;
    skipSpace();
    bool trailingComma = false;
    while (!at(')')) {
      if (shape.size() == kMaxDims)
        return fail("shape has more than " + std::to_string(kMaxDims) +
                    " dimensions");
      int64_t d;
      if (!parseDim(d))
        return false;
      shape.push_back(d);
      skipSpace();
      trailingComma = at(',');
      if (trailingComma) {
        ++pos;
        skipSpace();
      } else if (!at(')')) {
        return malformed("expected ',' or ')' in 'shape'");
      }
    }
    ++pos; // ')'
    if (shape.size() == 1 && !trailingComma)
      return malformed("'shape' must be a tuple");
    return true;
  }

  bool parseDescr(const std::string &descr, DType &dtype) {
    std::string body = descr.size() == 3 ? descr.substr(1) : "";
    char order = descr.empty() ? 0 : descr[0];
    if (body == "b1" &&
        (order == '|' || order == '<' || order == '=' || order == '>')) {
      dtype = DType::Bool;
      return true;
    }
    bool known = body == "f4" || body == "f2" || body == "i4";
    if (known && order == '>')
      return fail("big-endian arrays are not supported ('" + descr + "')");
    if (known && (order == '<' || order == '=')) {
      dtype = body == "f4"   ? DType::F32
              : body == "f2" ? DType::F16
                             : DType::I32;
      return true;
    }
    return fail("unsupported dtype '" + printable(descr) +
                "' (expected float32, float16, int32 or bool)");
  }

  const std::string &name;
  const std::string &text;
  std::string &error;
  size_t pos = 0;
};

/// Checks the data size against what is there and sizes `out.data`.
bool checkData(const std::string &name, NpyArray &out, uint64_t available,
               std::string &error) {
  int64_t bytes;
  if (!checkedByteSize(name, out.dtype, out.shape, bytes, error))
    return false;
  if (available < static_cast<uint64_t>(bytes)) {
    error = name + ": file is truncated (expected " + std::to_string(bytes) +
            " bytes of data, found " + std::to_string(available) + ")";
    return false;
  }
  if (available > static_cast<uint64_t>(bytes)) {
    error = name + ": unexpected " +
            std::to_string(available - static_cast<uint64_t>(bytes)) +
            " bytes after the array data (shape " + formatShape(out.shape) +
            " of " + dtypeName(out.dtype) + ")";
    return false;
  }
  out.data.resize(static_cast<size_t>(bytes));
  return true;
}

void normalizeBools(NpyArray &out) {
  if (out.dtype == DType::Bool)
    for (uint8_t &b : out.data)
      b = b != 0;
}

bool parseHeaderText(const std::string &name, const std::string &text,
                     NpyArray &out, std::string &error) {
  out.shape.clear();
  out.data.clear();
  return HeaderParser(name, text, error).parse(out.dtype, out.shape);
}

/// Builds the header of `arr` (preamble + padded dict) after validating it.
bool makeHeader(const NpyArray &arr, std::string &header, std::string &error) {
  int64_t bytes;
  if (!checkedByteSize("array", arr.dtype, arr.shape, bytes, error))
    return false;
  if (arr.data.size() != static_cast<uint64_t>(bytes)) {
    error = "array of shape " + formatShape(arr.shape) + " of " +
            dtypeName(arr.dtype) + " needs " + std::to_string(bytes) +
            " bytes of data, has " + std::to_string(arr.data.size());
    return false;
  }
  std::string dict =
      std::string("{'descr': '") + dtypeDescr(arr.dtype) +
      "', 'fortran_order': False, 'shape': " + formatShape(arr.shape) + ", }";
  // Pad with spaces and a final newline so the data starts at a multiple of
  // 64 bytes; switch to version 2.0 when the length overflows 16 bits.
  bool v2 = kMagicLen + 4 + dict.size() + 1 + 63 > 0xffff;
  size_t preamble = kMagicLen + 2 + (v2 ? 4 : 2);
  size_t total = (preamble + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - preamble - dict.size() - 1, ' ');
  dict += '\n';
  header.assign(kMagic, kMagicLen);
  header += static_cast<char>(v2 ? 2 : 1);
  header += '\0';
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i)
    header += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
  header += dict;
  return true;
}

} // namespace

bool parseNpy(const std::string &name, const uint8_t *bytes, size_t size,
              NpyArray &out, std::string &error) {
  size_t dictBegin, dictEnd;
  if (!parsePreamble(name, bytes, size, dictBegin, dictEnd, error))
    return false;
  if (dictEnd > size) {
    error = name + ": file is truncated (incomplete header)";
    return false;
  }
  std::string text(reinterpret_cast<const char *>(bytes) + dictBegin,
                   dictEnd - dictBegin);
  if (!parseHeaderText(name, text, out, error) ||
      !checkData(name, out, size - dictEnd, error))
    return false;
  if (!out.data.empty())
    std::memcpy(out.data.data(), bytes + dictEnd, out.data.size());
  normalizeBools(out);
  return true;
}

bool readNpy(const std::string &path, NpyArray &out, std::string &error) {
  auto sysError = [&](const char *what) {
    error = path + ": " + what + ": " + std::strerror(errno);
    return false;
  };
  auto truncated = [&](const char *what) {
    error = path + ": file is truncated (" + what + ")";
    return false;
  };
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return sysError("cannot open");
  struct Closer {
    std::FILE *f;
    ~Closer() { std::fclose(f); }
  } closer{f};

  struct stat st;
  if (fstat(fileno(f), &st) != 0)
    return sysError("cannot open");
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    return sysError("cannot open");
  }
  if (!S_ISREG(st.st_mode)) {
    // A pipe or device: size unknown up front, so read it all.
    std::vector<uint8_t> all;
    uint8_t buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
      all.insert(all.end(), buf, buf + n);
    if (std::ferror(f))
      return sysError("cannot read");
    return parseNpy(path, all.data(), all.size(), out, error);
  }

  // Regular file: read the header, validate it against the file size, then
  // read the data straight into place (never allocating more than is there).
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  uint8_t pre[kMaxPreamble];
  size_t preLen = std::fread(pre, 1, sizeof pre, f);
  if (std::ferror(f))
    return sysError("cannot read");
  size_t dictBegin, dictEnd;
  if (!parsePreamble(path, pre, preLen, dictBegin, dictEnd, error))
    return false;
  if (dictEnd > fileSize)
    return truncated("incomplete header");
  std::string text(dictEnd - dictBegin, '\0');
  if (std::fseek(f, static_cast<long>(dictBegin), SEEK_SET) != 0)
    return sysError("cannot read");
  if (std::fread(&text[0], 1, text.size(), f) != text.size())
    return std::ferror(f) ? sysError("cannot read")
                          : truncated("incomplete header");
  if (!parseHeaderText(path, text, out, error) ||
      !checkData(path, out, fileSize - dictEnd, error))
    return false;
  if (!out.data.empty() &&
      std::fread(out.data.data(), 1, out.data.size(), f) != out.data.size())
    return std::ferror(f) ? sysError("cannot read")
                          : truncated("the file shrank while being read");
  normalizeBools(out);
  return true;
}

bool serializeNpy(const NpyArray &arr, std::vector<uint8_t> &bytes,
                  std::string &error) {
  std::string header;
  if (!makeHeader(arr, header, error))
    return false;
  bytes.assign(header.begin(), header.end());
  bytes.insert(bytes.end(), arr.data.begin(), arr.data.end());
  return true;
}

bool writeNpy(AtomicFile &file, const NpyArray &arr, std::string &error) {
  std::string header;
  if (!makeHeader(arr, header, error)) {
    error = file.path() + ": " + error;
    return false;
  }
  return file.write(header.data(), header.size(), error) &&
         (arr.data.empty() ||
          file.write(arr.data.data(), arr.data.size(), error));
}

bool writeNpy(const std::string &path, const NpyArray &arr,
              std::string &error) {
  AtomicFile file;
  return file.open(path, error) && writeNpy(file, arr, error) &&
         file.commit(error);
}

} // namespace attnc
