#!/usr/bin/env bash
# Builds the quickstart corpus: the fortune-mod quotation files (literature)
# and a slice of the Python standard library (code), both from Debian
# packages, with a card saying where each part came from and its licence.
set -euo pipefail
out=$1
dir=$(dirname "$out")
mkdir -p "$dir"
if ! dpkg-query -W -f='${Status}' fortunes 2>/dev/null | grep -q "ok installed"; then
  echo "quickstart corpus: installing Debian package 'fortunes'"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fortunes >/dev/null
fi
tmp="$out.tmp"
: >"$tmp"
# Literature: the fortune files are %-separated quotations; keep the text.
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat|*.u8) continue ;; esac
  [ -f "$f" ] && sed 's/^%$//' "$f" >>"$tmp"
done
# Code: the first 2 MB of the Python 3.11 standard library, in a fixed order.
find /usr/lib/python3.11 -maxdepth 1 -name '*.py' | LC_ALL=C sort | xargs cat >"$tmp.code"
head -c 2000000 "$tmp.code" >>"$tmp"
rm -f "$tmp.code"
mv "$tmp" "$out"
cat >"$dir/card.txt" <<CARD
quickstart corpus ($(wc -c <"$out") bytes)
  literature: /usr/share/games/fortunes (Debian package fortunes; fortune-mod, BSD-4-Clause and public-domain quotations)
  code:       /usr/lib/python3.11/*.py, first 2,000,000 bytes (Python standard library, PSF License 2.0)
CARD
echo "quickstart corpus: $(wc -c <"$out") bytes in $out"
