#!/usr/bin/env bash
# Installs the Debian packages presight needs, only those that are missing,
# so that a second run is a quick no-op. Needs root (or sudo) the first time.
set -euo pipefail

packages=(
  build-essential pkg-config
  libopenmpi-dev openmpi-bin          # MPI ranks
  libhdf5-openmpi-dev                 # parallel HDF5 checkpoints and shards
  libconfig-dev                       # config files
  libopenblas-dev libblis-dev         # BLAS (chosen at run time, see README)
  libpcre2-dev                        # tokenizer pre-tokenisation regex
  libcriterion-dev                    # C tests
  libjson-c-dev                       # reading final.json and JSONL (study collect, ingest)
  zlib1g-dev                          # .gz sources
  fortunes                            # quickstart corpus (literature)
  clang                               # fuzz targets (libFuzzer, mk/fuzz.mk)
  python3-torch python3-h5py python3-numpy   # the PyTorch reference test
  python3-torch python3-h5py python3-numpy python3-pil   # the PyTorch reference tests
  nodejs npm                          # reference tokenizers and vocabularies (npm)
  libpng-dev libjpeg-dev libjpeg-turbo-progs   # pictures for the vision encoders; djpeg is the JPEG reference
  python3-pil python3-matplotlib      # the image sets: decoding, FreeType text, charts (make images)
  gnuplot-nox                         # presight report: PNG plots (pngcairo) drawn from the CSV tables
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come from outside Debian (a node install of its own): accept a working one.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
  read -r -a missing <<<"${missing[*]:-}"
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "make deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
