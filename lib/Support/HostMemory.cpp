//===- HostMemory.cpp - How much memory this machine has ------------------===//

#include "attnc/Support/HostMemory.h"

#include <cstdio>
#include <cstdlib>
#include <sys/sysinfo.h>

using namespace attnc;

uint64_t attnc::hostMemoryBytes() {
  struct sysinfo info;
  if (::sysinfo(&info) != 0)
    return UINT64_MAX;
  unsigned __int128 total =
      (static_cast<unsigned __int128>(info.totalram) + info.totalswap) *
      (info.mem_unit ? info.mem_unit : 1);
  return total > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(total);
}

std::string attnc::formatBytes(uint64_t bytes) {
  static const char *units[] = {"bytes", "KiB", "MiB", "GiB",
                                "TiB",   "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 6) {
    v /= 1024;
    ++unit;
  }
  std::string text = std::to_string(bytes) + " bytes";
  if (unit > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " (%.3g %s)", v, units[unit]);
    text += buf;
  }
  return text;
}

bool attnc::canAllocate(uint64_t bytes) {
  if (bytes > hostMemoryBytes() || bytes > SIZE_MAX)
    return false;
  void *p = std::malloc(bytes ? static_cast<size_t>(bytes) : 1);
  std::free(p);
  return p != nullptr;
}
