//===- DiskCache.h - Compiled kernels on disk, shared between processes ---===//
//
// Private to the runtime. One folder (`<dir>/v1`) holds, per kernel key K:
//
//   K.o         the compiled code: a relocatable object (CPU) or PTX
//   K.sig       the kernel signature in its text form (Signature.h)
//   K.plan      GPU kernels: their plan in its text form (GpuKernelPlan.h)
//   K.manifest  written last: key, variant, options, target, build, sizes
//               and SHA-256 of K.o, K.sig and K.plan, and a checksum of
//               itself
//   K.lock      flock(2)ed while a process reads, builds or removes K
//
// plus `stats` (the totals of every process, updated under `stats.lock`).
// Files are written to a temporary name and renamed, the manifest last, so
// a reader sees a whole entry or none; anything that does not match its
// manifest is reported as corrupt, removed and rebuilt. A hit touches the
// manifest's mtime; after a write the least recently used entries are
// evicted until the folder is under its size cap.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_RUNTIME_DISKCACHE_H
#define ATTN_RUNTIME_DISKCACHE_H

#include <cstdint>
#include <string>
#include <vector>

namespace attn::detail {

/// What an entry holds besides its key.
struct StoredKernel {
  std::string variant;
  std::string options; // CpuCompileOptions::describe()
  std::string target;  // HostTarget::describe()
  std::string build;   // the compiler's build identity
  std::string signature;
  std::string plan; // empty: none (no K.plan)
  std::string object;
};

struct DiskCounters {
  uint64_t compiles = 0, diskHits = 0, diskWrites = 0, evictions = 0,
           corruptEntries = 0;
};

struct DiskEntryInfo {
  std::string key, variant, options;
  uint64_t bytes = 0;
  int64_t lastUsed = 0, created = 0;
};

class DiskCache {
public:
  /// `dir` is the user-visible folder; entries live in `dir`/v1.
  DiskCache(std::string dir, uint64_t maxBytes);

  const std::string &folder() const { return folder_; }

  /// An exclusive lock on one key, released by the destructor.
  class KeyLock {
  public:
    KeyLock() = default;
    KeyLock(KeyLock &&other) noexcept;
    KeyLock &operator=(KeyLock &&other) noexcept;
    ~KeyLock();
    bool held() const { return fd >= 0; }

  private:
    friend class DiskCache;
    int fd = -1;
  };

  /// Blocks until this process holds `key`'s lock.
  bool lock(const std::string &key, KeyLock &out, std::string &error);

  enum class Lookup { Hit, Miss, Corrupt };
  /// Reads `key` (its lock held). Corrupt: `why` says what did not match.
  Lookup read(const std::string &key, StoredKernel &out, std::string &why);
  /// Marks `key` as just used (LRU).
  void touch(const std::string &key);
  /// Writes `key` (its lock held): temp files, renames, manifest last.
  bool write(const std::string &key, const StoredKernel &entry,
             std::string &error);
  /// Removes `key`'s files (its lock held).
  void remove(const std::string &key);
  /// Evicts least recently used entries other than `keep` until the folder
  /// is under the cap; returns how many were evicted.
  uint64_t evict(const std::string &keep);

  std::vector<DiskEntryInfo> list() const;
  /// What clear() removed, and one line per thing it could not remove.
  struct ClearReport {
    uint64_t entries = 0, bytes = 0;
    std::vector<std::string> failures;
  };
  /// Removes every entry that is not locked right now, and the totals;
  /// entries in use and files that cannot be removed are reported.
  ClearReport clear();

  /// Adds to the totals shared by every process using the folder.
  void addCounters(const DiskCounters &delta);
  DiskCounters counters() const;

private:
  std::string path(const std::string &key, const char *suffix) const;
  std::string folder_;
  uint64_t maxBytes_;
};

} // namespace attn::detail

#endif // ATTN_RUNTIME_DISKCACHE_H
