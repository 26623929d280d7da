/* fuzz_image_decode - PNG and JPEG bytes from anyone, through libpng and
 * libjpeg (datasets/image_io.h): refused with a message, or a picture of
 * positive size whose h * w * 3 bytes are all readable (ASan checks them). */
#include <stdlib.h>

#include "fuzz_input.h"
#include "image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *rgb = NULL;
    int h = 0, w = 0;
    ps_error err = {0};
    if (image_decode(data, size, "fuzz-input", &rgb, &h, &w, &err) == 0) {
        FUZZ_CHECK(rgb && h > 0 && w > 0, "decoded to %d x %d", h, w);
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)h * w * 3; i++) sum += rgb[i]; /* every byte must be there */
        (void)sum;
        free(rgb);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "refused without a message");
        FUZZ_CHECK(rgb == NULL, "a refused picture left pixels behind");
    }
    return 0;
}
