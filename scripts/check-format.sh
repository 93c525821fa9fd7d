#!/usr/bin/env bash
# Checks that the C and C++ sources are formatted with clang-format (LLVM
# style, .clang-format at the root). With no arguments it checks every
# tracked source file; with a git revision (e.g. origin/main) only the files
# changed since it. Exits non-zero and lists the files that need
# `clang-format-22 -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
CF="${CLANG_FORMAT:-clang-format-22}"
if ! command -v "$CF" >/dev/null; then
  echo "check-format: $CF not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi
if [ $# -ge 1 ]; then
  mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$1" -- '*.cpp' '*.h' '*.hpp' '*.c')
else
  mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.hpp' '*.c')
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! "$CF" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check-format: $f is not formatted (run: $CF -i $f)"
    bad=1
  fi
done
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "check-format: ${#files[@]} files formatted"
