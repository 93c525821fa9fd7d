//===- GpuKernelPlan.cpp - GPU kernel plans as text -----------------------===//
//
// The MLIR-free text form of GpuKernelPlan (its grammar is in the header)
// and its description for people. fromText checks every field's range, so
// that a damaged cache entry is refused rather than launched.
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/GpuKernelPlan.h"

#include <sstream>
#include <vector>

using namespace attnc;

namespace {

constexpr const char *kMagic = "attn-gpu-plan 1";
/// The most dynamic shared memory any block may ask for (sm_90: 227 KiB).
constexpr int64_t kMaxSharedBytes = 228 * 1024;

std::string yesNo(bool b) { return b ? "1" : "0"; }

} // namespace

const char *attnc::gpuKernelKindName(GpuKernelKind kind) {
  switch (kind) {
  case GpuKernelKind::Simt:
    return "simt";
  case GpuKernelKind::MmaSync:
    return "mma";
  case GpuKernelKind::Wgmma:
    return "wgmma";
  }
  return "?";
}

bool attnc::parseGpuKernelKind(const std::string &name, GpuKernelKind &out) {
  for (GpuKernelKind k :
       {GpuKernelKind::Simt, GpuKernelKind::MmaSync, GpuKernelKind::Wgmma})
    if (name == gpuKernelKindName(k)) {
      out = k;
      return true;
    }
  return false;
}

const char *attnc::gpuElementTypeName(DType type) {
  switch (type) {
  case DType::F16:
    return "f16";
  case DType::BF16:
    return "bf16";
  case DType::F32:
    return "f32";
  default:
    return "?";
  }
}

std::string GpuKernelPlan::toText() const {
  auto n = [](int64_t v) { return std::to_string(v); };
  std::string s = std::string(kMagic) + "\n";
  s += "kind " + std::string(gpuKernelKindName(kind)) + "\n";
  s += "element " + std::string(gpuElementTypeName(elementType)) + "\n";
  s += "head-dims " + n(headDim) + " " + n(valueDim) + "\n";
  s += "chip " + chip + "\n";
  s += "block " + n(rowsPerBlock) + " " + n(threadsPerBlock) + " " + n(warps) +
       " " + n(mTiles) + "\n";
  s += "tile-kv " + n(tileKV) + " " + n(kvStages) + "\n";
  s += "min-blocks-per-sm " + n(minBlocksPerSM) + "\n";
  s += "summary-tables " + n(summaryTables) + "\n";
  s += "shared-bytes " + n(sharedBytes) + "\n";
  s += "persistent " + yesNo(persistent) + "\n";
  s += "marks " + yesNo(marks.present) + " " + yesNo(marks.perBatch) + " " +
       yesNo(marks.perHead) + " " + n(marks.words) + " " +
       n(marks.sharedBytes) + "\n";
  s += "dependent-launch " + yesNo(dependentLaunch) + "\n";
  s += "why-kind " + whyKind + "\n";
  s += "why-persistent " + whyPersistent + "\n";
  s += "why-marks " + whyMarks + "\n";
  return s + "end\n";
}

bool GpuKernelPlan::fromText(const std::string &text, GpuKernelPlan &out,
                             std::string &error) {
  std::istringstream in(text);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  static const char *keys[] = {"kind",
                               "element",
                               "head-dims",
                               "chip",
                               "block",
                               "tile-kv",
                               "min-blocks-per-sm",
                               "summary-tables",
                               "shared-bytes",
                               "persistent",
                               "marks",
                               "dependent-launch",
                               "why-kind",
                               "why-persistent",
                               "why-marks"};
  constexpr size_t numKeys = sizeof keys / sizeof keys[0];
  if (lines.size() != numKeys + 2 || lines.front() != kMagic ||
      lines.back() != "end") {
    error = lines.empty() || lines.front() != kMagic
                ? "not a GPU kernel plan of this version (expected '" +
                      std::string(kMagic) + "')"
                : "the GPU kernel plan has " + std::to_string(lines.size()) +
                      " lines, expected " + std::to_string(numKeys + 2);
    return false;
  }
  GpuKernelPlan p;
  for (size_t i = 0; i < numKeys; ++i) {
    const std::string &line = lines[i + 1];
    std::string key = keys[i];
    if (line.compare(0, key.size() + 1, key + " ") != 0) {
      error = "line " + std::to_string(i + 2) + " of the GPU kernel plan is '" +
              line.substr(0, 40) + "', expected '" + key + " ...'";
      return false;
    }
    std::string rest = line.substr(key.size() + 1);
    std::istringstream fields(rest);
    auto bad = [&](const char *what) {
      error = "line " + std::to_string(i + 2) + " of the GPU kernel plan ('" +
              line.substr(0, 60) + "'): " + what;
      return false;
    };
    auto flag = [&](bool &b) {
      int v = -1;
      fields >> v;
      b = v == 1;
      return static_cast<bool>(fields) && (v == 0 || v == 1);
    };
    auto count = [&](int64_t &v, int64_t lo, int64_t hi) {
      fields >> v;
      return static_cast<bool>(fields) && v >= lo && v <= hi;
    };
    bool ok = true;
    if (key == "kind") {
      ok = parseGpuKernelKind(rest, p.kind);
    } else if (key == "element") {
      p.elementType = rest == "f16"    ? DType::F16
                      : rest == "bf16" ? DType::BF16
                                       : DType::F32;
      ok = rest == "f16" || rest == "bf16" || rest == "f32";
    } else if (key == "head-dims") {
      ok = count(p.headDim, 1, 1 << 20) && count(p.valueDim, 1, 1 << 20);
    } else if (key == "chip") {
      p.chip = rest;
      ok = rest.compare(0, 3, "sm_") == 0 && rest.size() > 3 &&
           rest.find(' ') == std::string::npos;
    } else if (key == "block") {
      ok = count(p.rowsPerBlock, 1, 1024) &&
           count(p.threadsPerBlock, 1, 1024) && count(p.warps, 0, 32) &&
           count(p.mTiles, 0, 64);
    } else if (key == "tile-kv") {
      ok = count(p.tileKV, 1, 1 << 16) && count(p.kvStages, 1, 8);
    } else if (key == "min-blocks-per-sm") {
      ok = count(p.minBlocksPerSM, 0, 64);
    } else if (key == "summary-tables") {
      ok = count(p.summaryTables, 0, 1 << 10);
    } else if (key == "shared-bytes") {
      ok = count(p.sharedBytes, 0, kMaxSharedBytes);
    } else if (key == "persistent") {
      ok = flag(p.persistent);
    } else if (key == "marks") {
      ok = flag(p.marks.present) && flag(p.marks.perBatch) &&
           flag(p.marks.perHead) && count(p.marks.words, 0, 4096) &&
           count(p.marks.sharedBytes, 0, kMaxSharedBytes);
    } else if (key == "dependent-launch") {
      ok = flag(p.dependentLaunch);
    } else if (key == "why-kind") {
      p.whyKind = rest;
    } else if (key == "why-persistent") {
      p.whyPersistent = rest;
    } else if (key == "why-marks") {
      p.whyMarks = rest;
    }
    std::string extra;
    if (ok && key.compare(0, 4, "why-") != 0 && key != "kind" &&
        key != "element" && key != "chip" && (fields >> extra))
      ok = false;
    if (!ok)
      return bad("a malformed or out-of-range value");
  }
  if (p.marks.present && (p.persistent || p.marks.words <= 0)) {
    error = "the GPU kernel plan has a mark kernel with a persistent kernel "
            "or without words";
    return false;
  }
  out = std::move(p);
  return true;
}

std::string GpuKernelPlan::describe() const {
  auto n = [](int64_t v) { return std::to_string(v); };
  std::string s;
  s += "kernel            " + std::string(gpuKernelKindName(kind)) + " (" +
       (kind == GpuKernelKind::Simt      ? "one thread per query row"
        : kind == GpuKernelKind::MmaSync ? "tensor cores, mma.sync m16n8k16"
                                         : "Hopper's warpgroup MMA, "
                                           "wgmma.mma_async") +
       ")\n";
  s += "  why             " + whyKind + "\n";
  s += "element type      " + std::string(gpuElementTypeName(elementType)) +
       ", D = " + n(headDim) + ", Dv = " + n(valueDim) + "\n";
  s += "PTX target        " + chip + "\n";
  s += "block             " + n(rowsPerBlock) + " query rows, " +
       n(threadsPerBlock) + " threads";
  if (kind == GpuKernelKind::Wgmma)
    s += " (" + n(warps / 4) + " warpgroups of " +
         n(rowsPerBlock / (warps / 4)) + " rows)";
  else if (kind == GpuKernelKind::MmaSync)
    s += " (" + n(warps) + " warps of " + n(16 * mTiles) + " rows)";
  s += "\n";
  s += "kv-tiles          " + n(tileKV) + " keys, " + n(kvStages) +
       (kvStages == 1 ? " K and V buffer\n" : " K and V buffers\n");
  if (minBlocksPerSM)
    s += "blocks per SM     at least " + n(minBlocksPerSM) +
         " (.minnctapersm)\n";
  s += "shared memory     " +
       (kind == GpuKernelKind::Simt
            ? std::string("static K and V tiles")
            : n(sharedBytes) + " bytes per block (dynamic)") +
       "\n";
  if (summaryTables)
    s += "mask summaries    " + n(summaryTables) +
         " table(s) of per-kv-tile (min, max), data-dependent mask\n";
  s += "persistent        " + std::string(persistent ? "yes" : "no") + "\n";
  s += "  why             " + whyPersistent + "\n";
  if (marks.present)
    s += "mark kernel       yes: one block per q-tile" +
         std::string(marks.perBatch ? " and batch" : "") +
         (marks.perHead ? " and head" : "") + ", " + n(marks.words) +
         " words per item, " + n(marks.sharedBytes) +
         " bytes of shared memory\n";
  else
    s += "mark kernel       no\n";
  s += "  why             " + whyMarks + "\n";
  s += "dependent launch  " +
       std::string(dependentLaunch
                       ? "yes (programmatic dependent launches where the "
                         "driver has cuLaunchKernelEx)"
                       : "no") +
       "\n";
  return s;
}
