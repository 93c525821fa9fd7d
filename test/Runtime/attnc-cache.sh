#!/bin/sh
# `attnc run` goes through the disk cache (a second run loads the kernel),
# and `attnc cache list|stats|clear` show and empty it; clear reports what
# it could not remove.
#   attnc-cache.sh ATTNC EXAMPLES_DIR
set -eu
attnc=$1
ex=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/attnc-cache.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export ATTN_CACHE_DIR="$dir/cache"
unset ATTN_CACHE

run() {
  "$attnc" run "$ex/alibi.attn" --variant alibi --q "$ex/data/q.npy" \
    --k "$ex/data/k.npy" --v "$ex/data/v.npy" \
    --param "slopes=$ex/data/slopes.npy" -o "$dir/o.npy" "$@"
}
expect() { # expect PATTERN TEXT
  printf '%s\n' "$2" | grep -q -- "$1" || {
    printf 'expected /%s/ in:\n%s\n' "$1" "$2" >&2
    exit 1
  }
}

run
run
stats=$("$attnc" cache stats)
expect "entries          1" "$stats"
expect "compiles         1" "$stats"
expect "disk hits        1" "$stats"
expect "disk writes      1" "$stats"
run --reference
list=$("$attnc" cache list)
expect "alibi .*dtype=f32 lowering=reference" "$list"
expect "alibi .*dtype=f32 lowering=tiled d=64 dv=64" "$list"
expect "^2 entries" "$list"

# A damaged object is noticed and rebuilt.
for o in "$ATTN_CACHE_DIR"/v1/*.o; do printf 'garbage' > "$o"; done
run
stats=$("$attnc" cache stats)
expect "corrupt entries  1" "$stats"
expect "compiles         3" "$stats"

clear=$("$attnc" cache clear)
expect "removed 2 entries" "$clear"
expect "^0 entries" "$("$attnc" cache list)"
# What cannot be removed is reported, the rest removed, and the status is 1:
# a read-only folder (where permissions bind: not for root), and a file in
# the way that no one can unlink (a directory where the object should be).
run
if [ "$(id -u)" != 0 ]; then
  chmod a-w "$ATTN_CACHE_DIR/v1"
  if "$attnc" cache clear >"$dir/out" 2>"$dir/err"; then
    chmod u+w "$ATTN_CACHE_DIR/v1"
    echo "cache clear of a read-only folder succeeded" >&2
    exit 1
  fi
  chmod u+w "$ATTN_CACHE_DIR/v1"
  expect "removed 0 entries" "$(cat "$dir/out")"
  expect "^error: cannot remove '.*': Permission denied" "$(cat "$dir/err")"
  expect "^1 entries" "$("$attnc" cache list)"
fi
run --reference
for o in "$ATTN_CACHE_DIR"/v1/*.o; do
  if grep -q reference "${o%.o}.manifest"; then
    rm "$o" && mkdir "$o" && : >"$o/x"
  fi
done
if "$attnc" cache clear >"$dir/out" 2>"$dir/err"; then
  echo "cache clear with an unremovable file succeeded" >&2
  exit 1
fi
expect "removed 1 entries" "$(cat "$dir/out")"
expect "^error: cannot remove '.*\.o': Is a directory" "$(cat "$dir/err")"
expect "^1 entries" "$("$attnc" cache list)"
rm -r "$ATTN_CACHE_DIR"/v1/*.o
expect "removed 1 entries" "$("$attnc" cache clear)"
expect "^0 entries" "$("$attnc" cache list)"

expect "the disk cache is off (ATTN_CACHE=0)" "$(ATTN_CACHE=0 "$attnc" cache stats)"
if "$attnc" cache frobnicate 2>"$dir/err"; then exit 1; fi
expect "usage: attnc cache list|stats|clear" "$(cat "$dir/err")"
echo ok
