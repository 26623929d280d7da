#!/usr/bin/env bash
# bundle.sh OUT PRESIGHT GPU_CHECK - `make gpu-bundle`: one folder, runnable
# as is on a GPU machine that has the NVIDIA driver and the CUDA libraries
# (cuBLASLt, NCCL) but none of presight's other libraries:
#
#   OUT/run.sh                the GPU check: finds the CUDA libraries, runs
#                             bin/gpu_check, writes gpu.json and gpu_check.log
#                             into $OUT if set, else here; then a presight smoke test
#   OUT/bin/gpu_check         the check (CUDA runtime linked in statically)
#   OUT/bin/presight          wrapper: sets LD_LIBRARY_PATH, OPAL_PREFIX, ... and
#   OUT/bin/presight.bin      runs the stripped binary
#   OUT/bin/orted             OpenMPI's daemon (a singleton MPI_Init starts one)
#   OUT/lib/                  every shared library ldd resolves for them, except
#                             the C/C++ runtime and the CUDA/driver libraries
#                             (the machine's own must be used: see run.sh), plus
#                             BLIS for the CPU reference (PRESIGHT_BLAS)
#   OUT/lib/x86_64-linux-gnu/openmpi/lib/openmpi3, OUT/share/openmpi,
#   OUT/pmix2/                OpenMPI's and PMIx's plugins and help files, found
#                             through OPAL_PREFIX / PMIX_INSTALL_PREFIX
#   OUT/config, OUT/data      a tiny config and its text, for the smoke test
#   OUT/MANIFEST.txt          what was copied from where, and the ldd views
#
# The bundle is refused when larger than GPU_BUNDLE_MAX_MB (default 60).
set -euo pipefail
out=${1:?usage: bundle.sh OUT PRESIGHT GPU_CHECK ENGINE TRAIN_BENCH}
presight=${2:?}
check=${3:?}
engine=${4:?}
train_bench=${5:?}
max_mb=${GPU_BUNDLE_MAX_MB:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp="$out.tmp"
multiarch=x86_64-linux-gnu
ompi_lib=/usr/lib/$multiarch/openmpi/lib
pmix_dir=/usr/lib/$multiarch/pmix2

rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/lib" "$tmp/config/model" "$tmp/data"
manifest="$tmp/MANIFEST.txt"
echo "presight gpu-bundle, built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) ($(. /etc/os-release && echo "$PRETTY_NAME"))" >"$manifest"

# Never bundled: the C/C++ runtime (the machine has its own, at least as new:
# mixing a copied glibc with the machine's loader breaks), and the CUDA and
# driver libraries (libcuda must match the kernel driver; cuBLASLt is 540 MB
# and NCCL 220 MB: run.sh finds the machine's).
skip_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec|libpthread|libdl\.so|librt\.so|libresolv|libutil|libnsl|libanl|libstdc\+\+|libgcc_s|libcuda\.so|libcudart|libcublas|libcublasLt|libnccl|libnvidia|libnvrtc|libnvJitLink)'

copy_lib() { # path [dest-dir]
  local src=$1 dest=${2:-$tmp/lib} name
  name=$(basename "$src")
  [ -e "$dest/$name" ] && return 0
  mkdir -p "$dest"
  cp -L "$src" "$dest/$name"
  chmod u+w "$dest/$name"
  echo "lib  $dest/$name <- $(readlink -f "$src")" | sed "s|$tmp/||" >>"$manifest"
}

copy_deps() { # file... : the libraries ldd resolves, recursively (ldd already is)
  local f name path missing=0
  for f in "$@"; do
    while read -r name path; do
      [[ $name =~ $skip_re ]] && continue
      if [ "$path" = "not" ]; then
        [[ $name =~ $skip_re ]] || { echo "bundle: $f needs $name, which is not installed here" >&2; missing=1; }
        continue
      fi
      copy_lib "$path"
    done < <(ldd "$f" 2>/dev/null | awk '/=>/ { print $1, $3 }')
  done
  return $missing
}

# --- binaries
cp "$check" "$tmp/bin/gpu_check"
cp "$presight" "$tmp/bin/presight.bin"
cp "$train_bench" "$tmp/bin/train_bench.bin"
cp "$engine" "$tmp/bin/libpresight-cuda.so" # presight looks for the engine beside itself
strip --strip-unneeded "$tmp/bin/gpu_check" "$tmp/bin/presight.bin" "$tmp/bin/train_bench.bin" "$tmp/bin/libpresight-cuda.so"
for f in gpu_check presight.bin train_bench.bin libpresight-cuda.so; do echo "bin  bin/$f (stripped)" >>"$manifest"; done
copy_deps "$tmp/bin/gpu_check" "$tmp/bin/presight.bin" "$tmp/bin/train_bench.bin" "$tmp/bin/libpresight-cuda.so"

# --- the BLAS of the CPU reference: BLIS (OpenMP), 12 MB (OpenBLAS is 36 MB)
blis=/usr/lib/$multiarch/blis-openmp/libblis.so.4
if [ -e "$blis" ]; then
  copy_lib "$blis"
  copy_deps "$blis"
else
  echo "bundle: $blis is missing (apt-get install libblis4-openmp): the check's CPU reference will need a BLAS there" >&2
fi

# --- OpenMPI's run time: a singleton MPI_Init (presight without mpirun) loads
# plugins from OPAL_PREFIX's pkglibdir and starts bin/orted. Transports for
# other fabrics (UCX, OFI, PSM, verbs) are left out: one node needs sm/vader,
# self and tcp.
if [ -d "$ompi_lib/openmpi3" ]; then
  plug="$tmp/lib/$multiarch/openmpi/lib/openmpi3"
  mkdir -p "$plug"
  for p in "$ompi_lib"/openmpi3/*.so; do
    case $(basename "$p") in
      *ucx* | *ofi* | *psm* | *openib* | *portals* | *usnic* | *verbs* | *monitoring* | *cuda*) continue ;;
    esac
    if copy_deps "$p" 2>/dev/null; then
      copy_lib "$p" "$plug"
    else
      echo "skip $(basename "$p"): a library it needs is not installed here" >>"$manifest"
    fi
  done
  for l in "$ompi_lib"/*.so.*; do [ -e "$l" ] && copy_lib "$l" "$tmp/lib/$multiarch/openmpi/lib"; done
  mkdir -p "$tmp/share"
  cp -rL /usr/share/openmpi "$tmp/share/openmpi"
  echo "dir  share/openmpi <- /usr/share/openmpi" >>"$manifest"
  if [ -x /usr/bin/orted ]; then
    cp -L /usr/bin/orted "$tmp/bin/orted"
    copy_deps "$tmp/bin/orted"
    echo "bin  bin/orted <- /usr/bin/orted" >>"$manifest"
  fi
fi
if [ -d "$pmix_dir/lib/pmix" ]; then
  mkdir -p "$tmp/pmix2/lib/pmix" "$tmp/pmix2/share"
  for p in "$pmix_dir"/lib/pmix/*.so; do copy_deps "$p" 2>/dev/null && copy_lib "$p" "$tmp/pmix2/lib/pmix"; done
  cp -rL "$pmix_dir/share/." "$tmp/pmix2/share/"
  echo "dir  pmix2 <- $pmix_dir" >>"$manifest"
fi

# --- the smoke test's config and text
cp "$here/config/model/tiny.cfg" "$tmp/config/model/tiny.cfg"
cp "$here/config/model/1b.cfg" "$tmp/config/model/1b.cfg"
cp "$here/config/tiny.cfg" "$here/config/gpu-1b.cfg" "$tmp/config/"
cp "$here/tests/fixtures/text/tiny.txt" "$tmp/data/tiny.txt"
cp "$here/cuda/bundle_train.sh" "$tmp/train.sh"

# --- wrappers
cp "$here/cuda/bundle_run.sh" "$tmp/run.sh"
for tool in presight train_bench; do
  cat >"$tmp/bin/$tool" <<EOF
b=\$(cd "\$(dirname "\$0")/.." && pwd)
export LD_LIBRARY_PATH="\$b/lib:\$b/lib/x86_64-linux-gnu/openmpi/lib\${PRESIGHT_CUDA_LIB_PATH:+:\$PRESIGHT_CUDA_LIB_PATH}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export OPAL_PREFIX="\$b" PMIX_INSTALL_PREFIX="\$b/pmix2"
export PRESIGHT_BLAS="\${PRESIGHT_BLAS:-\$b/lib/libblis.so.4}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec "\$b/bin/$tool.bin" "\$@"
EOF
  chmod +x "$tmp/bin/$tool"
done
chmod +x "$tmp/run.sh" "$tmp/train.sh"

{
  echo
  echo "== ldd bin/gpu_check (here)"
  ldd "$tmp/bin/gpu_check" || true
  echo "== ldd bin/presight.bin with the bundle's lib/ first (here)"
  LD_LIBRARY_PATH="$tmp/lib" ldd "$tmp/bin/presight.bin" || true
} >>"$manifest"

size_kb=$(du -sk "$tmp" | cut -f1)
size_mb=$(( (size_kb + 1023) / 1024 ))
if [ "$size_mb" -gt "$max_mb" ]; then
  echo "bundle: $tmp is $size_mb MB, over the $max_mb MB limit; largest files:" >&2
  find "$tmp" -type f -printf '%s %p\n' | sort -rn | head -15 >&2
  exit 1
fi
rm -rf "$out"
mv "$tmp" "$out"
echo "gpu-bundle: $out ($size_mb MB, $(find "$out" -type f | wc -l) files)"
echo "  on the GPU machine: bash $out/run.sh   (writes gpu.json and gpu_check.log into \$OUT, or into the bundle)"
