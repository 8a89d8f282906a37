// Glue between lowbit and libjpeg(-turbo): libjpeg reports a corrupt file by calling error_exit,
// which by default ends the process; here it jumps back to lowbit_jpeg_decode, which frees what it
// allocated and returns the library's message. Swift cannot call setjmp, so this one function is C.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

struct lowbit_jpeg_error {
  struct jpeg_error_mgr manager;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int truncated;
};

static void lowbit_jpeg_error_exit(j_common_ptr info) {
  struct lowbit_jpeg_error *error = (struct lowbit_jpeg_error *)info->err;
  (*info->err->format_message)(info, error->message);
  longjmp(error->jump, 1);
}

static void lowbit_jpeg_silent(j_common_ptr info) { (void)info; }

// Warnings are ignored (as PIL does) except premature end of data, which makes the file an error.
static void lowbit_jpeg_emit(j_common_ptr info, int level) {
  if (level == -1 && info->err->msg_code == JWRN_JPEG_EOF) ((struct lowbit_jpeg_error *)info->err)->truncated = 1;
}

/// Decodes a JPEG held in memory with libjpeg's defaults (integer IDCT, fancy upsampling).
/// On success returns 0 and sets *pixels to a malloc'd buffer of height rows of width x
/// components bytes (components 3: RGB from YCbCr or RGB; 1: grayscale; 4: CMYK/YCCK as CMYK
/// samples as stored; *adobe set when the file has an Adobe marker). The image is refused
/// (returns 2) before any pixel buffer is allocated when width x height exceeds max_pixels.
/// On error returns 1 with the library's message in message.
static inline int lowbit_jpeg_decode(
    const unsigned char *data, unsigned long size, unsigned long max_pixels,
    unsigned char **pixels, int *width, int *height, int *components, int *adobe,
    char *message, size_t message_size) {
  struct jpeg_decompress_struct info;
  struct lowbit_jpeg_error error;
  unsigned char *volatile buffer = NULL;
  *pixels = NULL;
  memset(&info, 0, sizeof info);
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = lowbit_jpeg_error_exit;
  error.manager.output_message = lowbit_jpeg_silent;
  error.manager.emit_message = lowbit_jpeg_emit;
  error.message[0] = 0;
  error.truncated = 0;
  if (setjmp(error.jump)) {
    snprintf(message, message_size, "%s", error.message);
    jpeg_destroy_decompress(&info);
    free(buffer);
    return 1;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, size);
  jpeg_read_header(&info, TRUE);
  switch (info.jpeg_color_space) {
    case JCS_GRAYSCALE: info.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK: case JCS_YCCK: info.out_color_space = JCS_CMYK; break;
    default: info.out_color_space = JCS_RGB; break;
  }
  if ((unsigned long)info.image_width * (unsigned long)info.image_height > max_pixels) {
    snprintf(message, message_size, "%u x %u pixels", info.image_width, info.image_height);
    jpeg_destroy_decompress(&info);
    return 2;
  }
  jpeg_start_decompress(&info);
  size_t stride = (size_t)info.output_width * (size_t)info.output_components;
  buffer = (unsigned char *)malloc(stride * info.output_height + 1);
  if (buffer == NULL) {
    snprintf(message, message_size, "out of memory for %u x %u pixels", info.output_width, info.output_height);
    jpeg_destroy_decompress(&info);
    return 1;
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = buffer + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  if (error.truncated) {
    snprintf(message, message_size, "premature end of data (the file is truncated)");
    jpeg_destroy_decompress(&info);
    free(buffer);
    return 1;
  }
  *width = (int)info.output_width;
  *height = (int)info.output_height;
  *components = info.output_components;
  *adobe = info.saw_Adobe_marker ? 1 : 0;
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  *pixels = buffer;
  return 0;
}
