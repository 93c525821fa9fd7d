//===- AtomicFile.cpp - Output files that appear whole or not at all ------===//
//
// The temporary file is `.NAME.tmp-PID-N` in the folder of NAME: the same
// file system, so rename(2) replaces the path in one step.
//
//===----------------------------------------------------------------------===//

#include "attnc/Support/AtomicFile.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attnc;

AtomicFile::~AtomicFile() { discard(); }

bool AtomicFile::open(const std::string &path, std::string &error) {
  discard();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    error = path + ": cannot create: " + std::strerror(EISDIR);
    return false;
  }
  static std::atomic<unsigned> counter{0};
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = dir + "." + name + ".tmp-" + std::to_string(::getpid()) +
                     "-" + std::to_string(counter++);
  int fd;
  do
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    error = path + ": cannot create: " + std::strerror(errno);
    return false;
  }
  path_ = path;
  temp_ = temp;
  fd_ = fd;
  return true;
}

bool AtomicFile::write(const void *data, size_t size, std::string &error) {
  if (fd_ < 0) {
    error = path_ + ": cannot write: not open";
    return false;
  }
  const char *p = static_cast<const char *>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      error = path_ + ": cannot write: " + std::strerror(errno);
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool AtomicFile::finish(std::string &error) {
  if (temp_.empty()) {
    error = path_ + ": cannot write: not open";
    return false;
  }
  if (fd_ < 0)
    return true;
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    error = path_ + ": cannot write: " + std::strerror(errno);
    return false;
  }
  return true;
}

bool AtomicFile::commit(std::string &error) {
  if (!finish(error))
    return false;
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    error = path_ + ": cannot write: " + std::strerror(errno);
    return false;
  }
  temp_.clear();
  return true;
}

void AtomicFile::discard() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  if (!temp_.empty())
    ::unlink(temp_.c_str());
  temp_.clear();
}
