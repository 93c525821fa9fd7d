//===- DiskCache.cpp - Compiled kernels on disk, shared between processes -===//
//
// POSIX files and flock(2). Lock files are removed only by a process that
// holds them; a process that waited on a lock checks afterwards that the
// path still names the file it locked, and starts over otherwise, so two
// processes never both believe they hold one key.
//
//===----------------------------------------------------------------------===//

#include "DiskCache.h"
#include "Hash.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attn::detail;

namespace {

constexpr const char *kManifestMagic = "attn-cache-manifest 1";
constexpr const char *kStatsMagic = "attn-cache-stats 1";

std::string errnoText() { return std::strerror(errno); }

bool makeDirs(const std::string &dir, std::string &error) {
  std::string partial;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t next = dir.find('/', pos);
    if (next == std::string::npos)
      next = dir.size();
    partial = dir.substr(0, next);
    pos = next + 1;
    if (partial.empty())
      continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      error =
          "cannot create the cache folder '" + partial + "': " + errnoText();
      return false;
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    error = "the cache folder '" + dir + "' is not a folder";
    return false;
  }
  return true;
}

/// Reads a whole file; false with errno set on failure.
bool readFile(const std::string &path, std::string &out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  out.clear();
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      return false;
    }
    if (n == 0)
      break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

bool writeAll(int fd, const std::string &data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

/// Writes `data` to a fresh temporary file beside `path` and renames it.
bool writeFileAtomic(const std::string &path, const std::string &data,
                     std::string &error) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" +
                    std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot write '" + tmp + "': " + errnoText();
    return false;
  }
  bool ok = writeAll(fd, data);
  int saved = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    errno = saved;
    error = "cannot write '" + tmp + "': " + errnoText();
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot rename '" + tmp + "': " + errnoText();
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

/// Opens and flocks `path`, making sure the path still names the locked
/// file afterwards (a remover may have unlinked it while we waited).
int lockPath(const std::string &path, bool wait, std::string &error) {
  for (;;) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      error = "cannot open the lock file '" + path + "': " + errnoText();
      return -1;
    }
    int rc;
    do
      rc = ::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      error = errno == EWOULDBLOCK
                  ? std::string("busy")
                  : "cannot lock '" + path + "': " + errnoText();
      ::close(fd);
      return -1;
    }
    struct stat locked, named;
    if (::fstat(fd, &locked) == 0 && ::stat(path.c_str(), &named) == 0 &&
        locked.st_ino == named.st_ino && locked.st_dev == named.st_dev)
      return fd;
    ::close(fd); // removed or replaced meanwhile: start over
  }
}

bool isHexKey(const std::string &s) {
  if (s.size() != 64)
    return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

struct Manifest {
  std::map<std::string, std::string> fields;
};

std::string manifestText(const std::string &key, const StoredKernel &e) {
  std::string body = std::string(kManifestMagic) + "\n";
  body += "key " + key + "\n";
  body += "variant " + e.variant + "\n";
  body += "options " + e.options + "\n";
  body += "target " + e.target + "\n";
  body += "build " + e.build + "\n";
  body +=
      "created " + std::to_string(static_cast<int64_t>(::time(nullptr))) + "\n";
  body += "object " + std::to_string(e.object.size()) + " " +
          sha256Hex(e.object) + "\n";
  body += "signature " + std::to_string(e.signature.size()) + " " +
          sha256Hex(e.signature) + "\n";
  if (!e.plan.empty())
    body += "plan " + std::to_string(e.plan.size()) + " " + sha256Hex(e.plan) +
            "\n";
  return body + "checksum " + sha256Hex(body) + "\n";
}

/// Parses a manifest and checks its own checksum.
bool parseManifest(const std::string &text, Manifest &out, std::string &why) {
  size_t lastLine = text.rfind("\nchecksum ");
  if (text.compare(0, std::strlen(kManifestMagic), kManifestMagic) != 0 ||
      lastLine == std::string::npos || text.empty() || text.back() != '\n') {
    why = "the manifest is truncated or not a manifest";
    return false;
  }
  std::string body = text.substr(0, lastLine + 1);
  std::string checksum =
      text.substr(lastLine + 10, text.size() - lastLine - 11);
  if (checksum != sha256Hex(body)) {
    why = "the manifest does not match its checksum";
    return false;
  }
  std::istringstream in(body);
  std::string line;
  std::getline(in, line); // magic
  while (std::getline(in, line)) {
    size_t space = line.find(' ');
    if (space == std::string::npos) {
      why = "malformed manifest line '" + line + "'";
      return false;
    }
    out.fields[line.substr(0, space)] = line.substr(space + 1);
  }
  return true;
}

/// Checks `data` against a manifest field "SIZE SHA256".
bool matches(const std::string &what, const std::string &field,
             const std::string &data, std::string &why) {
  std::istringstream in(field);
  uint64_t size = 0;
  std::string sha;
  if (!(in >> size >> sha)) {
    why = "the manifest's " + what + " line is malformed";
    return false;
  }
  if (size != data.size()) {
    why = "the " + what + " has " + std::to_string(data.size()) +
          " bytes, the manifest says " + std::to_string(size) + " (truncated?)";
    return false;
  }
  if (sha != sha256Hex(data)) {
    why = "the " + what + " does not match its checksum";
    return false;
  }
  return true;
}

/// The size of `path` (0 if missing) and its mtime in nanoseconds: entries
/// written within one second must still be ordered for LRU.
uint64_t fileSize(const std::string &path, int64_t *mtimeNs = nullptr) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return 0;
  if (mtimeNs)
    *mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
               st.st_mtim.tv_nsec;
  return static_cast<uint64_t>(st.st_size);
}

/// Keys with any file in `folder`, and temporary files.
/// The keys and temporary files in `folder`; false (errno set) when the
/// folder exists but cannot be read.
bool scan(const std::string &folder, std::vector<std::string> &keys,
          std::vector<std::string> &temps) {
  DIR *dir = ::opendir(folder.c_str());
  if (!dir)
    return errno == ENOENT;
  std::vector<std::string> found;
  while (struct dirent *e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.find(".tmp-") != std::string::npos) {
      temps.push_back(name);
      continue;
    }
    size_t dot = name.find('.');
    if (dot != std::string::npos && isHexKey(name.substr(0, dot)))
      found.push_back(name.substr(0, dot));
  }
  ::closedir(dir);
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  keys = std::move(found);
  return true;
}

/// Unlinks `path`; a failure other than "already gone" becomes a line of
/// `failures`.
void unlinkOrReport(const std::string &path,
                    std::vector<std::string> &failures) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    failures.push_back("cannot remove '" + path + "': " + errnoText());
}

} // namespace

DiskCache::DiskCache(std::string dir, uint64_t maxBytes)
    : folder_(std::move(dir) + "/v1"), maxBytes_(maxBytes) {}

std::string DiskCache::path(const std::string &key, const char *suffix) const {
  return folder_ + "/" + key + suffix;
}

DiskCache::KeyLock::KeyLock(KeyLock &&other) noexcept : fd(other.fd) {
  other.fd = -1;
}

DiskCache::KeyLock &DiskCache::KeyLock::operator=(KeyLock &&other) noexcept {
  if (this != &other) {
    if (fd >= 0)
      ::close(fd);
    fd = other.fd;
    other.fd = -1;
  }
  return *this;
}

DiskCache::KeyLock::~KeyLock() {
  if (fd >= 0)
    ::close(fd); // releases the flock
}

bool DiskCache::lock(const std::string &key, KeyLock &out, std::string &error) {
  if (!makeDirs(folder_, error))
    return false;
  int fd = lockPath(path(key, ".lock"), /*wait=*/true, error);
  if (fd < 0)
    return false;
  out = KeyLock();
  out.fd = fd;
  return true;
}

DiskCache::Lookup DiskCache::read(const std::string &key, StoredKernel &out,
                                  std::string &why) {
  std::string text;
  if (!readFile(path(key, ".manifest"), text)) {
    if (errno == ENOENT)
      return Lookup::Miss; // never written, or a writer died before the end
    why = "cannot read the manifest: " + errnoText();
    return Lookup::Corrupt;
  }
  Manifest m;
  if (!parseManifest(text, m, why))
    return Lookup::Corrupt;
  if (m.fields["key"] != key) {
    why = "the manifest belongs to another key";
    return Lookup::Corrupt;
  }
  StoredKernel e;
  e.variant = m.fields["variant"];
  e.options = m.fields["options"];
  e.target = m.fields["target"];
  e.build = m.fields["build"];
  if (!readFile(path(key, ".o"), e.object)) {
    why = "cannot read the object: " + errnoText();
    return Lookup::Corrupt;
  }
  if (!readFile(path(key, ".sig"), e.signature)) {
    why = "cannot read the signature: " + errnoText();
    return Lookup::Corrupt;
  }
  if (!matches("object", m.fields["object"], e.object, why) ||
      !matches("signature", m.fields["signature"], e.signature, why))
    return Lookup::Corrupt;
  if (m.fields.count("plan")) {
    if (!readFile(path(key, ".plan"), e.plan)) {
      why = "cannot read the plan: " + errnoText();
      return Lookup::Corrupt;
    }
    if (!matches("plan", m.fields["plan"], e.plan, why))
      return Lookup::Corrupt;
  }
  out = std::move(e);
  return Lookup::Hit;
}

void DiskCache::touch(const std::string &key) {
  ::utimensat(AT_FDCWD, path(key, ".manifest").c_str(), nullptr, 0);
}

bool DiskCache::write(const std::string &key, const StoredKernel &entry,
                      std::string &error) {
  if (!makeDirs(folder_, error))
    return false;
  // A stale manifest must not vouch for the new files while they change.
  ::unlink(path(key, ".manifest").c_str());
  ::unlink(path(key, ".plan").c_str());
  if (!writeFileAtomic(path(key, ".o"), entry.object, error) ||
      !writeFileAtomic(path(key, ".sig"), entry.signature, error) ||
      (!entry.plan.empty() &&
       !writeFileAtomic(path(key, ".plan"), entry.plan, error)) ||
      !writeFileAtomic(path(key, ".manifest"), manifestText(key, entry),
                       error)) {
    remove(key);
    return false;
  }
  return true;
}

void DiskCache::remove(const std::string &key) {
  ::unlink(path(key, ".manifest").c_str());
  ::unlink(path(key, ".o").c_str());
  ::unlink(path(key, ".sig").c_str());
  ::unlink(path(key, ".plan").c_str());
}

uint64_t DiskCache::evict(const std::string &keep) {
  std::vector<std::string> keys, temps;
  scan(folder_, keys, temps);
  int64_t now = static_cast<int64_t>(::time(nullptr));
  for (const std::string &t : temps) {
    int64_t mtime = now * 1000000000;
    fileSize(folder_ + "/" + t, &mtime);
    if (now - mtime / 1000000000 > 3600) // left by a process that died
      ::unlink((folder_ + "/" + t).c_str());
  }
  struct Candidate {
    int64_t mtime;
    std::string key;
    uint64_t bytes;
  };
  std::vector<Candidate> entries;
  uint64_t total = 0;
  for (const std::string &key : keys) {
    int64_t mtime = 0, objTime = 0, sigTime = 0;
    uint64_t bytes = fileSize(path(key, ".manifest"), &mtime) +
                     fileSize(path(key, ".o"), &objTime) +
                     fileSize(path(key, ".sig"), &sigTime) +
                     fileSize(path(key, ".plan"));
    if (mtime == 0) // no manifest: a partial entry, as old as its files
      mtime = std::max(objTime, sigTime);
    total += bytes;
    entries.push_back({mtime, key, bytes});
  }
  if (total <= maxBytes_)
    return 0;
  std::sort(entries.begin(), entries.end(),
            [](const Candidate &a, const Candidate &b) {
              return a.mtime != b.mtime ? a.mtime < b.mtime : a.key < b.key;
            });
  uint64_t evicted = 0;
  for (const Candidate &c : entries) {
    if (total <= maxBytes_)
      break;
    if (c.key == keep)
      continue;
    std::string error;
    int fd = lockPath(path(c.key, ".lock"), /*wait=*/false, error);
    if (fd < 0)
      continue; // in use by someone: leave it
    remove(c.key);
    ::unlink(path(c.key, ".lock").c_str());
    ::close(fd);
    total -= std::min(total, c.bytes);
    ++evicted;
  }
  return evicted;
}

std::vector<DiskEntryInfo> DiskCache::list() const {
  std::vector<std::string> keys, temps;
  scan(folder_, keys, temps);
  std::vector<DiskEntryInfo> out;
  for (const std::string &key : keys) {
    std::string text, why;
    int64_t mtime = 0;
    DiskEntryInfo info;
    info.key = key;
    info.bytes = fileSize(path(key, ".manifest"), &mtime) +
                 fileSize(path(key, ".o")) + fileSize(path(key, ".sig")) +
                 fileSize(path(key, ".plan"));
    info.lastUsed = mtime / 1000000000;
    Manifest m;
    if (readFile(path(key, ".manifest"), text) && parseManifest(text, m, why)) {
      info.variant = m.fields["variant"];
      info.options = m.fields["options"];
      info.created = std::atoll(m.fields["created"].c_str());
    } else {
      info.variant = "?";
      info.options = "(incomplete entry)";
    }
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const DiskEntryInfo &a, const DiskEntryInfo &b) {
              return a.lastUsed != b.lastUsed ? a.lastUsed < b.lastUsed
                                              : a.key < b.key;
            });
  return out;
}

DiskCache::ClearReport DiskCache::clear() {
  ClearReport report;
  std::vector<std::string> keys, temps;
  if (!scan(folder_, keys, temps)) {
    report.failures.push_back("cannot read the cache folder '" + folder_ +
                              "': " + errnoText());
    return report;
  }
  for (const std::string &key : keys) {
    std::string error;
    int fd = lockPath(path(key, ".lock"), /*wait=*/false, error);
    if (fd < 0) {
      report.failures.push_back(
          "entry " + key + ": " +
          (error == "busy" ? std::string("in use by another process") : error));
      continue;
    }
    uint64_t bytes = fileSize(path(key, ".manifest")) +
                     fileSize(path(key, ".o")) + fileSize(path(key, ".sig"));
    size_t before = report.failures.size();
    for (const char *suffix : {".manifest", ".o", ".sig"})
      unlinkOrReport(path(key, suffix), report.failures);
    if (report.failures.size() == before) {
      ++report.entries;
      report.bytes += bytes;
      unlinkOrReport(path(key, ".lock"), report.failures);
    }
    ::close(fd);
  }
  for (const std::string &t : temps)
    unlinkOrReport(folder_ + "/" + t, report.failures);
  std::string error;
  int fd = lockPath(folder_ + "/stats.lock", /*wait=*/true, error);
  unlinkOrReport(folder_ + "/stats", report.failures);
  if (fd >= 0)
    ::close(fd);
  return report;
}

namespace {

bool parseCounters(const std::string &text, DiskCounters &c) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kStatsMagic)
    return false;
  std::string name;
  uint64_t value;
  while (in >> name >> value) {
    if (name == "compiles")
      c.compiles = value;
    else if (name == "disk_hits")
      c.diskHits = value;
    else if (name == "disk_writes")
      c.diskWrites = value;
    else if (name == "evictions")
      c.evictions = value;
    else if (name == "corrupt_entries")
      c.corruptEntries = value;
  }
  return true;
}

} // namespace

void DiskCache::addCounters(const DiskCounters &d) {
  std::string error;
  if (!makeDirs(folder_, error))
    return;
  int fd = lockPath(folder_ + "/stats.lock", /*wait=*/true, error);
  if (fd < 0)
    return;
  DiskCounters c;
  std::string text;
  if (readFile(folder_ + "/stats", text))
    parseCounters(text, c);
  c.compiles += d.compiles;
  c.diskHits += d.diskHits;
  c.diskWrites += d.diskWrites;
  c.evictions += d.evictions;
  c.corruptEntries += d.corruptEntries;
  text = std::string(kStatsMagic) + "\ncompiles " + std::to_string(c.compiles) +
         "\ndisk_hits " + std::to_string(c.diskHits) + "\ndisk_writes " +
         std::to_string(c.diskWrites) + "\nevictions " +
         std::to_string(c.evictions) + "\ncorrupt_entries " +
         std::to_string(c.corruptEntries) + "\n";
  writeFileAtomic(folder_ + "/stats", text, error);
  ::close(fd);
}

DiskCounters DiskCache::counters() const {
  DiskCounters c;
  std::string text;
  if (readFile(folder_ + "/stats", text))
    parseCounters(text, c);
  return c;
}
