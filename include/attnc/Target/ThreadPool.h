//===- ThreadPool.h - The persistent worker pool of the CPU runtime -------===//
//
// One process-wide pool of worker threads, started on first use and kept,
// so that a kernel launch costs a wake-up rather than thread creation. Work
// is handed out dynamically from an atomic counter in index order, so
// callers that order items longest first get longest-first scheduling.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_THREADPOOL_H
#define ATTNC_TARGET_THREADPOOL_H

#include <cstdint>
#include <functional>

namespace attnc {

/// Threads used when a caller asks for 0: $ATTN_NUM_THREADS if set, else the
/// hardware concurrency.
int defaultThreadCount();

/// Runs fn(item, worker) for every item in [0, numItems) on up to `threads`
/// threads (the calling thread is one of them; 0 means the default) and
/// returns when all are done. `worker` is in [0, threads). Concurrent calls
/// are serialised.
void parallelFor(int64_t numItems, int threads,
                 const std::function<void(int64_t item, int worker)> &fn);

} // namespace attnc

#endif // ATTNC_TARGET_THREADPOOL_H
