#!/usr/bin/env bash
# The layered tree (README, "Layout"): a file includes headers of its own
# folder or of the folders below it only.
#  1. Every quoted #include of core/, mpi/, datasets/, stages/, slurm/ and cli/
#     names a header of an allowed folder.
#  2. The build enforces it: with a folder's include paths (the Makefile's
#     INC_<folder>) a header of a folder above does not compile, and MPI's
#     and HDF5's headers are out of core/'s reach; the same probe with an
#     allowed header compiles (the negative control).
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*"; exit 1; }
declare -A below=(
  [core]="core" [mpi]="core mpi" [datasets]="core datasets" [stages]="core mpi datasets stages"
  [slurm]="core mpi datasets stages slurm" [cli]="core mpi datasets stages slurm cli")
bad=0
for folder in "${!below[@]}"; do
  for f in "$folder"/*.[ch]; do
    [ -f "$f" ] || continue
    while read -r header; do
      ok=0
      for allowed in ${below[$folder]}; do [ -f "$allowed/$header" ] && ok=1; done
      [ $ok -eq 1 ] || { echo "  $f includes \"$header\", which is not in ${below[$folder]// /, }"; bad=1; }
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
  done
done
[ $bad -eq 0 ] || fail "wrong-way includes (see above)"
echo "  every quoted include points down the tree"

cc=${CC:-cc}
probe() { # folder header: 0 when a file with folder's include paths compiles #include "header"
  local flags
  flags=$(make -s --no-print-directory print-INC_"$1")
  printf '#include %s\nint probe;\n' "$2" | $cc -std=c11 -D_GNU_SOURCE -fsyntax-only $flags -x c - 2>/dev/null
}
for case in 'core "comm.h"' 'core "dataset.h"' 'core "checkpoint.h"' 'core <mpi.h>' 'core <hdf5.h>' \
            'mpi "dataset.h"' 'mpi "runner.h"' 'datasets "comm.h"' 'datasets "pretrain.h"' 'stages "study.h"' \
            'stages "commands.h"'; do
  set -- $case
  ! probe "$1" "$2" || fail "$1/ can include $2"
done
echo "  wrong-way includes do not compile (core/ sees neither MPI nor HDF5)"
for case in 'core "model.h"' 'mpi "sharding.h"' 'mpi "config.h"' 'datasets "mixture.h"' 'stages "sharding.h"' \
            'stages "dataset.h"' 'slurm "runner.h"' 'cli "study.h"'; do
  set -- $case
  probe "$1" "$2" || fail "$1/ cannot include $2 (the probe itself is broken)"
done
echo "PASS: the layers hold, and the build enforces them"
