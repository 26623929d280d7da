#!/usr/bin/env bash
# encoder_check.sh DIR SHA256 - checks a TF.js model directory from nsfwjs
# (model.min.js and its shards, hashed together in name order) against the
# pinned SHA-256; names the file set and the fix when it differs.
set -euo pipefail
dir=$1 want=$2
[ -f "$dir/model.min.js" ] || { echo "encoder data: $dir/model.min.js is missing (run: make encoder-data)" >&2; exit 1; }
got=$(cd "$dir" && cat model.min.js $(ls group*-shard*.min.js | sort) | sha256sum | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "encoder data: $dir (model.min.js + shards) has SHA-256 $got, expected $want;" \
       "the package differs from nsfwjs 4.4.0 (rm -rf data/encoders/npm; make encoder-data)" >&2
  exit 1
fi
