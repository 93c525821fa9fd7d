//===- HostMemory.h - How much memory this machine has ----------*- C++ -*-===//
//
// The bound that allocations made on a caller's behalf (attnc's outputs, the
// tiled launcher's working copies) are checked against before they are
// made, so that a problem too large for the machine is an error with a
// message rather than an abort in the allocator or the OOM killer. Plain
// C++17, no MLIR/LLVM types.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_SUPPORT_HOSTMEMORY_H
#define ATTNC_SUPPORT_HOSTMEMORY_H

#include <cstdint>
#include <string>

namespace attnc {

/// This machine's RAM and swap together, in bytes (sysinfo(2)): no process
/// can allocate more. UINT64_MAX when unknown.
uint64_t hostMemoryBytes();

/// "4398046511104 bytes (4 TiB)".
std::string formatBytes(uint64_t bytes);

/// Whether `bytes` can be allocated right now (a trial allocation, freed at
/// once; never throws). Bytes beyond hostMemoryBytes() never can.
bool canAllocate(uint64_t bytes);

} // namespace attnc

#endif // ATTNC_SUPPORT_HOSTMEMORY_H
