//===- ThreadPool.cpp - The persistent worker pool of the CPU runtime -----===//

#include "attnc/Target/ThreadPool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

using namespace attnc;

int attnc::defaultThreadCount() {
  if (const char *env = std::getenv("ATTN_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0)
      return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

namespace {

class Pool {
public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m);
      stopping = true;
    }
    wake.notify_all();
    for (std::thread &t : workers)
      t.join();
  }

  void run(int64_t n, int threads,
           const std::function<void(int64_t, int)> &fn) {
    std::lock_guard<std::mutex> serial(callMutex);
    if (threads <= 1 || n <= 1) {
      for (int64_t i = 0; i < n; ++i)
        fn(i, 0);
      return;
    }
    ensureWorkers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(m);
      job = &fn;
      items = n;
      next.store(0);
      helpers = threads - 1;
      pending = threads - 1;
      ++generation;
    }
    wake.notify_all();
    drain(fn, 0);
    std::unique_lock<std::mutex> lock(m);
    done.wait(lock, [&] { return pending == 0; });
    job = nullptr;
  }

private:
  void drain(const std::function<void(int64_t, int)> &fn, int worker) {
    for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1))
      fn(i, worker);
  }

  void ensureWorkers(int count) {
    while (static_cast<int>(workers.size()) < count) {
      int index = static_cast<int>(workers.size());
      workers.emplace_back([this, index] { loop(index); });
    }
  }

  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t, int)> *fn;
      {
        std::unique_lock<std::mutex> lock(m);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping)
          return;
        seen = generation;
        if (index >= helpers)
          continue; // not needed for this job
        fn = job;
      }
      drain(*fn, index + 1);
      {
        std::lock_guard<std::mutex> lock(m);
        if (--pending == 0)
          done.notify_all();
      }
    }
  }

  std::mutex callMutex, m;
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  const std::function<void(int64_t, int)> *job = nullptr;
  int64_t items = 0;
  std::atomic<int64_t> next{0};
  int helpers = 0, pending = 0;
  uint64_t generation = 0;
  bool stopping = false;
};

Pool &pool() {
  static Pool *p = new Pool(); // never destroyed: workers may outlive main
  return *p;
}

} // namespace

void attnc::parallelFor(int64_t numItems, int threads,
                        const std::function<void(int64_t, int)> &fn) {
  pool().run(numItems, threads > 0 ? threads : defaultThreadCount(), fn);
}
