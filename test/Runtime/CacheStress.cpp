//===- CacheStress.cpp - Threads and runtimes on one damaged disk cache ---===//
//
// Many threads on a few runtimes that share one disk cache folder compile
// and run a mix of variants (normalisations, masks, a runtime param, const
// overrides, reference and tiled kernels) on a few shapes, while another
// thread damages the folder's files (flipped bytes, truncation, removal,
// appended garbage) and the runtimes are replaced now and then, so that
// kernels keep coming from the disk. Every run's output is checked against
// a float64 reference on fresh random inputs (outputs poisoned with NaN
// first); every compile and run must succeed. Exits 1 on any failure.
//
//   attn-cache-stress [--seconds N] [--threads N] [--runtimes N] [--seed N]
//
// The test suite runs it for a few seconds; docs/testing.md gives the
// longer command.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using attn_test::ScratchDir;

namespace {

enum class Norm { Softmax, Sigmoid, Relu };

/// One variant and its meaning, for the reference.
struct Variant {
  const char *source;
  Norm norm;
  bool causal;
  int64_t window; // > 0: sliding_window(window) (implies causal)
  bool alibi;     // score += slopes[h] * (j - i)
  bool scaled;    // score *= const param c (overridden per compile)
};

const Variant kVariants[] = {
    {"attention dense {}", Norm::Softmax, false, 0, false, false},
    {"attention c { mask = causal(); }", Norm::Softmax, true, 0, false, false},
    {"attention w { param w: i32 = 5; mask = sliding_window(w); normalize "
     "relu; }",
     Norm::Relu, true, 5, false, false},
    {"attention sg { mask = causal(); normalize sigmoid; }", Norm::Sigmoid,
     true, 0, false, false},
    {"attention alibi { param slopes: f32[H]; score = score + slopes[h] * "
     "f32(kv_idx - q_idx); mask = causal(); }",
     Norm::Softmax, true, 0, true, false},
    {"attention s { const param c: f32 = 1.0; score = score * c; mask = "
     "causal(); }",
     Norm::Softmax, true, 0, false, true},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);
const double kScales[] = {0.5, 1.5, 2.0};

struct Shape {
  int64_t B, H, Hkv, L, D;
};
const Shape kShapes[] = {
    {1, 2, 1, 17, 16}, {2, 2, 2, 33, 8}, {1, 4, 2, 40, 32}, {1, 1, 1, 5, 16}};
constexpr int kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

/// max |O - ref| / (1 + |ref|) in float64 (infinite for a NaN).
double maxError(const Variant &var, double c, const attn_test::Problem &p,
                const std::vector<float> &slopes) {
  double worst = 0;
  const double scale = 1.0 / std::sqrt(double(p.D));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h) {
      int64_t hkv = h / (p.H / p.Hkv);
      for (int64_t i = 0; i < p.Lq; ++i) {
        std::vector<double> s(p.Lkv);
        std::vector<bool> keep(p.Lkv);
        double m = -INFINITY;
        for (int64_t j = 0; j < p.Lkv; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < p.D; ++d)
            dot += double(p.q[((b * p.H + h) * p.Lq + i) * p.D + d]) *
                   double(p.k[((b * p.Hkv + hkv) * p.Lkv + j) * p.D + d]);
          s[j] = scale * dot;
          if (var.alibi)
            s[j] += double(slopes[h]) * double(j - i);
          if (var.scaled)
            s[j] *= c;
          keep[j] = (!var.causal || j <= i) &&
                    (var.window <= 0 || i - j < var.window);
          if (keep[j])
            m = std::max(m, s[j]);
        }
        std::vector<double> w(p.Lkv, 0.0);
        double sum = 0;
        for (int64_t j = 0; j < p.Lkv; ++j) {
          if (!keep[j])
            continue;
          if (var.norm == Norm::Softmax)
            w[j] = std::exp(s[j] - m);
          else if (var.norm == Norm::Sigmoid)
            w[j] = 1.0 / (1.0 + std::exp(-s[j]));
          else
            w[j] = std::max(s[j], 0.0);
          sum += w[j];
        }
        for (int64_t d = 0; d < p.Dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < p.Lkv; ++j)
            acc +=
                w[j] * double(p.v[((b * p.Hkv + hkv) * p.Lkv + j) * p.Dv + d]);
          if (var.norm == Norm::Softmax)
            acc = sum > 0 ? acc / sum : 0.0;
          double got = p.o[((b * p.H + h) * p.Lq + i) * p.Dv + d];
          double e = std::isnan(got)
                         ? INFINITY
                         : std::abs(got - acc) / (1 + std::abs(acc));
          worst = std::max(worst, e);
        }
      }
    }
  return worst;
}

struct Options {
  double seconds = 30;
  int threads = 16, runtimes = 2;
  unsigned seed = 0;
  bool seeded = false;
};

/// The shared runtimes; `replace` swaps one for a fresh one (nothing in
/// memory), while kernels and runs of the old one go on.
class Runtimes {
public:
  Runtimes(const std::string &dir, int n) : dir_(dir), rts_(n) {
    for (auto &rt : rts_)
      rt = fresh();
  }
  std::shared_ptr<attn::Runtime> get(size_t i) {
    std::lock_guard<std::mutex> lock(mutex_);
    return rts_[i % rts_.size()];
  }
  void replace(size_t i) {
    auto rt = fresh();
    std::lock_guard<std::mutex> lock(mutex_);
    add(done_, rts_[i % rts_.size()]->stats());
    rts_[i % rts_.size()] = std::move(rt);
  }
  size_t size() const { return rts_.size(); }
  /// What every runtime so far did (those still in use: until now).
  attn::CacheStats totals() {
    std::lock_guard<std::mutex> lock(mutex_);
    attn::CacheStats sum = done_;
    for (auto &rt : rts_)
      add(sum, rt->stats());
    return sum;
  }

private:
  std::shared_ptr<attn::Runtime> fresh() {
    return std::make_shared<attn::Runtime>(attn_test::diskCacheAt(dir_));
  }
  static void add(attn::CacheStats &to, const attn::CacheStats &s) {
    to.compiles += s.compiles;
    to.memoryHits += s.memoryHits;
    to.diskHits += s.diskHits;
    to.corruptEntries += s.corruptEntries;
  }
  std::string dir_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<attn::Runtime>> rts_;
  attn::CacheStats done_;
};

/// Every regular file under `dir`.
void listFiles(const std::string &dir, std::vector<std::string> &out) {
  DIR *d = ::opendir(dir.c_str());
  if (!d)
    return;
  while (dirent *e = ::readdir(d)) {
    if (!std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, ".."))
      continue;
    std::string path = dir + "/" + e->d_name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode))
      listFiles(path, out);
    else if (S_ISREG(st.st_mode))
      out.push_back(path);
  }
  ::closedir(d);
}

/// Damages one file of the cache folder; true if it did.
bool damageOne(const std::string &dir, std::mt19937 &rng) {
  std::vector<std::string> files;
  listFiles(dir, files);
  if (files.empty())
    return false;
  const std::string &path = files[rng() % files.size()];
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return false;
  int how = rng() % 4;
  if (how == 2)
    return ::unlink(path.c_str()) == 0;
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0)
    return false;
  bool done = false;
  if (how == 0 && st.st_size > 0) { // flip a few bytes in place
    for (int n = 0; n < 3; ++n) {
      off_t at = rng() % st.st_size;
      unsigned char byte = 0;
      int rfd = ::open(path.c_str(), O_RDONLY);
      if (rfd >= 0) {
        if (::pread(rfd, &byte, 1, at) == 1) {
          byte ^= static_cast<unsigned char>(1u << (rng() % 8));
          done |= ::pwrite(fd, &byte, 1, at) == 1;
        }
        ::close(rfd);
      }
    }
  } else if (how == 1) { // truncate
    done = ::ftruncate(fd, st.st_size ? rng() % st.st_size : 0) == 0;
  } else { // append garbage
    char junk[64];
    for (char &ch : junk)
      ch = static_cast<char>(rng());
    done = ::pwrite(fd, junk, sizeof junk, st.st_size) == sizeof junk;
  }
  ::close(fd);
  return done;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attn-cache-stress: %s needs a value\n",
                     a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seconds")
      o.seconds = std::atof(value());
    else if (a == "--threads")
      o.threads = std::atoi(value());
    else if (a == "--runtimes")
      o.runtimes = std::atoi(value());
    else if (a == "--seed") {
      o.seed = static_cast<unsigned>(std::strtoul(value(), nullptr, 10));
      o.seeded = true;
    } else {
      std::fprintf(stderr,
                   "usage: attn-cache-stress [--seconds N] [--threads N] "
                   "[--runtimes N] [--seed N]\n");
      std::exit(2);
    }
  }
  if (o.seconds <= 0 || o.threads < 1 || o.runtimes < 1) {
    std::fprintf(stderr, "attn-cache-stress: --seconds, --threads and "
                         "--runtimes must be positive\n");
    std::exit(2);
  }
  return o;
}

} // namespace

int main(int argc, char **argv) {
  Options opts = parseArgs(argc, argv);
  if (opts.seeded)
    ::setenv("ATTN_TEST_SEED", std::to_string(opts.seed).c_str(), 1);
  const unsigned seed = attn_test::baseSeed();
  ScratchDir dir;
  Runtimes runtimes(dir.path, opts.runtimes);
  const std::string folder = runtimes.get(0)->cacheFolder();

  using Clock = std::chrono::steady_clock;
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(opts.seconds));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> runs{0}, failures{0}, damaged{0};
  std::mutex printMutex;
  auto report = [&](const std::string &what) {
    std::lock_guard<std::mutex> lock(printMutex);
    if (failures.fetch_add(1) < 20)
      std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  };

  auto worker = [&](int t) {
    std::mt19937 rng(seed * 31u + static_cast<unsigned>(t));
    unsigned salt = static_cast<unsigned>(t) << 20;
    while (!stop.load() && Clock::now() < deadline) {
      const Variant &var = kVariants[rng() % kNumVariants];
      const Shape &sh = kShapes[rng() % kNumShapes];
      attn::CompileOptions options;
      bool tiled = rng() % 2;
      if (tiled) {
        options.headDim = options.valueDim = sh.D;
      } else {
        options.tiling = attn::Tiling::reference();
      }
      double c = 1.0;
      if (var.scaled) {
        c = kScales[rng() % 3];
        options.consts["c"] = c;
      }
      std::shared_ptr<attn::Runtime> rt = runtimes.get(rng());
      std::string what =
          std::string("'") + var.source + "' " +
          (tiled ? "tiled" : "reference") + " B=" + std::to_string(sh.B) +
          " H=" + std::to_string(sh.H) + " L=" + std::to_string(sh.L) +
          " D=" + std::to_string(sh.D);
      attn::Kernel kernel;
      std::string error;
      attn::Status s = rt->compile(var.source, options, kernel, error);
      rt.reset(); // the kernel outlives its runtime
      if (s != attn::Status::Ok) {
        report("compile of " + what + ": " + error);
        continue;
      }
      attn_test::Problem p(sh.B, sh.H, sh.Hkv, sh.L, sh.L, sh.D, sh.D, ++salt);
      std::vector<float> slopes(sh.H);
      for (int64_t h = 0; h < sh.H; ++h)
        slopes[h] = 0.25f / float(h + 1);
      attn::RunArgs args = p.args(/*withLse=*/false);
      if (var.alibi)
        args.params["slopes"] =
            attn::Tensor::contiguous(slopes.data(), attn::DType::F32, {sh.H});
      args.threads = 1 + static_cast<int>(rng() % 2);
      s = kernel.run(args, error);
      if (s != attn::Status::Ok) {
        report("run of " + what + ": " + error);
        continue;
      }
      double e = maxError(var, c, p, slopes);
      if (!(e < 1e-4))
        report(what + ": max error " + std::to_string(e));
      runs.fetch_add(1);
    }
  };

  // Damages a file every 5 to 45 ms and replaces a runtime every half
  // second.
  std::thread vandal([&] {
    std::mt19937 rng(seed ^ 0x5eedu);
    auto nextSwap = Clock::now() + std::chrono::milliseconds(500);
    size_t which = 0;
    while (!stop.load() && Clock::now() < deadline) {
      if (damageOne(folder, rng))
        damaged.fetch_add(1);
      if (Clock::now() >= nextSwap) {
        runtimes.replace(which++);
        nextSwap = Clock::now() + std::chrono::milliseconds(500);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 40));
    }
  });

  std::vector<std::thread> workers;
  for (int t = 0; t < opts.threads; ++t)
    workers.emplace_back(worker, t);
  for (auto &w : workers)
    w.join();
  stop = true;
  vandal.join();

  attn::CacheStats total = runtimes.totals();
  std::printf(
      "attn-cache-stress: %d threads, %zu runtimes at a time, %.1f s: "
      "%llu runs checked, %llu files damaged; %llu compiles, %llu "
      "memory hits, %llu disk hits, %llu damaged entries rebuilt; "
      "%llu failures\n",
      opts.threads, runtimes.size(), opts.seconds,
      (unsigned long long)runs.load(), (unsigned long long)damaged.load(),
      (unsigned long long)total.compiles, (unsigned long long)total.memoryHits,
      (unsigned long long)total.diskHits,
      (unsigned long long)total.corruptEntries,
      (unsigned long long)failures.load());
  if (runs.load() == 0) {
    std::fprintf(stderr, "FAIL: no run finished in %.1f s\n", opts.seconds);
    return 1;
  }
  return failures.load() ? 1 : 0;
}
