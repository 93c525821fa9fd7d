//===- attn-cache-bench.cpp - How fast libattn's kernel cache answers -----===//
//
// Measures, for causal ALiBi on the CPU, the median of repeated runs of:
//   memory hit   Runtime::compile of a source it compiled before
//   disk hit     a fresh Runtime (nothing in memory) loading the entry that
//                an earlier one wrote: front end + key + load of the object
//   cold compile a fresh, memory-only Runtime: front end + MLIR pipelines +
//                LLVM O2 + code generation + load (reference and tiled)
// and prints a table and one JSON line. Not a test: timings depend on the
// machine. Uses a scratch cache folder under $TMPDIR.
//
//   attn-cache-bench [--repeats N] [--json FILE]
//
//===----------------------------------------------------------------------===//

#include "attn/attn.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

const char *kAlibi = R"(
attention alibi_causal {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask  = kv_idx <= q_idx;
}
)";

double seconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Result {
  std::string name;
  double median, min, max, target; // seconds
  int repeats;
};

Result measure(const std::string &name, int repeats, double target,
               const std::function<void()> &setup,
               const std::function<void()> &body) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    setup();
    double start = seconds();
    body();
    t.push_back(seconds() - start);
  }
  std::sort(t.begin(), t.end());
  return {name, t[t.size() / 2], t.front(), t.back(), target, repeats};
}

std::string human(double s) {
  char buf[32];
  if (s < 1e-3)
    std::snprintf(buf, sizeof buf, "%.2f us", s * 1e6);
  else if (s < 1)
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  return buf;
}

} // namespace

int main(int argc, char **argv) {
  int repeats = 7;
  std::string jsonPath;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc)
      repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--json" && i + 1 < argc)
      jsonPath = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: attn-cache-bench [--repeats N] [--json FILE]\n");
      return a == "--help" ? 0 : 1;
    }
  }
  const char *tmp = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(tmp ? tmp : "/tmp") + "/attn-cache-bench.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string dir = buf.data();

  attn::CacheConfig disk;
  disk.dir = dir;
  attn::CacheConfig memory;
  memory.diskCache = false;
  attn::CompileOptions reference; // no head dims: the reference kernel
  attn::CompileOptions tiled;
  tiled.headDim = tiled.valueDim = 64;

  std::vector<Result> results;
  try {
    // Memory hits: one runtime, the same source again and again.
    {
      attn::Runtime rt(memory);
      rt.compile(kAlibi, tiled);
      const int calls = 20000;
      results.push_back(measure(
          "memory hit", repeats * 3, 5e-6, [] {},
          [&] {
            for (int i = 0; i < calls; ++i)
              rt.compile(kAlibi, tiled);
          }));
      Result &r = results.back();
      r.median /= calls, r.min /= calls, r.max /= calls;
    }
    // Disk hits: the entry exists; every repeat starts with empty memory.
    {
      attn::Runtime(disk).compile(kAlibi, tiled);
      std::unique_ptr<attn::Runtime> rt;
      results.push_back(measure(
          "disk hit (load)", repeats * 3, 20e-3,
          [&] { rt = std::make_unique<attn::Runtime>(disk); },
          [&] {
            rt->compile(kAlibi, tiled);
            if (rt->stats().diskHits != 1)
              throw attn::Error(attn::Status::Internal, "not a disk hit");
          }));
    }
    // Cold compiles.
    std::pair<const char *, const attn::CompileOptions *> colds[] = {
        {"cold compile, reference", &reference},
        {"cold compile, tiled D=64", &tiled}};
    for (const auto &cold : colds) {
      const attn::CompileOptions *opts = cold.second;
      std::unique_ptr<attn::Runtime> rt;
      results.push_back(measure(
          cold.first, repeats, 1.5,
          [&] { rt = std::make_unique<attn::Runtime>(memory); },
          [&] { rt->compile(kAlibi, *opts); }));
    }
  } catch (const attn::Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::string rm = "rm -rf '" + dir + "'";
  (void)std::system(rm.c_str());

  std::printf("%s\ncausal ALiBi, CPU\n\n", attn::version());
  std::printf("%-26s %12s %12s %12s %10s  %s\n", "", "median", "min", "max",
              "target", "");
  std::string json =
      "{\"version\": \"" + std::string(attn::version()) + "\", \"results\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result &r = results[i];
    std::printf("%-26s %12s %12s %12s %10s  %s\n", r.name.c_str(),
                human(r.median).c_str(), human(r.min).c_str(),
                human(r.max).c_str(), ("<= " + human(r.target)).c_str(),
                r.median <= r.target ? "ok" : "OVER");
    char entry[256];
    std::snprintf(entry, sizeof entry,
                  "%s{\"name\": \"%s\", \"median_s\": %.9g, \"min_s\": %.9g, "
                  "\"max_s\": %.9g, \"target_s\": %g, \"repeats\": %d}",
                  i ? ", " : "", r.name.c_str(), r.median, r.min, r.max,
                  r.target, r.repeats);
    json += entry;
  }
  json += "]}";
  std::printf("\n%s\n", json.c_str());
  if (!jsonPath.empty()) {
    FILE *f = std::fopen(jsonPath.c_str(), "w");
    if (!f) {
      std::perror(jsonPath.c_str());
      return 1;
    }
    std::fprintf(f, "%s\n", json.c_str());
    std::fclose(f);
  }
  return 0;
}
