//===- AtomicFile.h - Output files that appear whole or not at all -*- C++
//-*-===//
//
// An output written through a temporary file beside its path and renamed
// over it at the end, so that a reader (or a failed run) never sees a new
// or half-written file. Opening creates the temporary file, so an output
// that cannot be written is found before any work is done. Plain POSIX
// C++17, no MLIR/LLVM types.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_SUPPORT_ATOMICFILE_H
#define ATTNC_SUPPORT_ATOMICFILE_H

#include <cstddef>
#include <string>

namespace attnc {

class AtomicFile {
public:
  AtomicFile() = default;
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;
  /// Discards the temporary file unless committed.
  ~AtomicFile();

  /// Creates the temporary file beside `path` (mode 0666 less the umask).
  /// Fails, with `error` ("PATH: cannot create: ..."), when the folder
  /// cannot take a new file or `path` names a folder.
  bool open(const std::string &path, std::string &error);
  /// Appends bytes to the temporary file.
  bool write(const void *data, size_t size, std::string &error);
  /// Flushes and closes the temporary file: after this only the rename is
  /// left, so a full disk or an I/O error shows here.
  bool finish(std::string &error);
  /// finish(), then renames the temporary file over the path.
  bool commit(std::string &error);
  /// Removes the temporary file (nothing once committed).
  void discard();

  bool isOpen() const { return !temp_.empty(); }
  const std::string &path() const { return path_; }
  const std::string &tempPath() const { return temp_; }

private:
  std::string path_, temp_;
  int fd_ = -1;
};

} // namespace attnc

#endif // ATTNC_SUPPORT_ATOMICFILE_H
