// Glue between lowbit and libpng: libpng reports a corrupt file by longjmp to the caller's
// setjmp, which Swift cannot call, so decoding is this one C function.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <png.h>

struct lowbit_png_source {
  const unsigned char *data;
  size_t size;
  size_t offset;
};

static void lowbit_png_read(png_structp png, png_bytep out, png_size_t count) {
  struct lowbit_png_source *source = (struct lowbit_png_source *)png_get_io_ptr(png);
  if (count > source->size - source->offset) png_error(png, "premature end of data (the file is truncated)");
  memcpy(out, source->data + source->offset, count);
  source->offset += count;
}

static void lowbit_png_error(png_structp png, png_const_charp text) {
  char *message = (char *)png_get_error_ptr(png);
  snprintf(message, 200, "%s", text);
  png_longjmp(png, 1);
}

static void lowbit_png_warning(png_structp png, png_const_charp text) { (void)png; (void)text; }

/// Decodes a PNG held in memory to 8-bit RGB the way PIL's convert("RGB") sees it: palette
/// entries looked up, 1/2/4-bit gray scaled to 0...255, 16-bit samples cut to their high byte,
/// gray replicated into R, G and B, alpha and transparency dropped (not composited), gamma and
/// colour chunks ignored; interlaced files are deinterlaced. On success returns 0 with *pixels a
/// malloc'd buffer of height rows of width x 3 bytes; 16-bit grayscale files are returned as
/// 2-byte big-endian gray (components 2, *sixteen 1) for the caller to convert. Returns 2 before
/// allocating pixels when width x height exceeds max_pixels, 1 on error with message (200 bytes).
static inline int lowbit_png_decode(
    const unsigned char *data, size_t size, unsigned long max_pixels,
    unsigned char **pixels, int *width, int *height, int *components, int *sixteen,
    char *message) {
  struct lowbit_png_source source = {data, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, message, lowbit_png_error, lowbit_png_warning);
  png_infop info = NULL;
  unsigned char *volatile buffer = NULL;
  png_bytep *volatile rows = NULL;
  *pixels = NULL;
  message[0] = 0;
  if (png == NULL) { snprintf(message, 200, "libpng could not start"); return 1; }
  info = png_create_info_struct(png);
  if (info == NULL) { png_destroy_read_struct(&png, NULL, NULL); snprintf(message, 200, "libpng could not start"); return 1; }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(buffer);
    free(rows);
    return 1;
  }
  png_set_read_fn(png, &source, lowbit_png_read);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_set_chunk_malloc_max(png, 64ul << 20);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
  if ((unsigned long)w * (unsigned long)h > max_pixels) {
    snprintf(message, 200, "%u x %u pixels", (unsigned)w, (unsigned)h);
    png_destroy_read_struct(&png, &info, NULL);
    return 2;
  }
  int gray16 = (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) && depth == 16;
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // Expanding a palette also turns its transparency (tRNS) into an alpha channel: drop that too.
  if ((type & PNG_COLOR_MASK_ALPHA) || (type == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS)))
    png_set_strip_alpha(png);
  if (!gray16) {
    if (depth == 16) png_set_strip_16(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t stride = png_get_rowbytes(png, info);
  int channels = png_get_channels(png, info);
  int expected = gray16 ? 2 : 3;
  if (channels * (gray16 ? 2 : 1) != expected || stride != (size_t)w * expected) {
    snprintf(message, 200, "unexpected layout after conversion (%d channels, %zu bytes per row)", channels, stride);
    png_destroy_read_struct(&png, &info, NULL);
    return 1;
  }
  buffer = (unsigned char *)malloc(stride * h + 1);
  rows = (png_bytep *)malloc(sizeof(png_bytep) * (h + 1));
  if (buffer == NULL || rows == NULL) png_error(png, "out of memory for the pixels");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = buffer + stride * y;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  *pixels = buffer;
  *width = (int)w;
  *height = (int)h;
  *components = expected;
  *sixteen = gray16;
  return 0;
}
