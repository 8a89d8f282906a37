import CJPEG
import CPNG
import LowbitCore

#if canImport(Glibc)
  import Glibc
#endif

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`.
public struct RGBImage: Sendable, Equatable {
  public let width: Int
  public let height: Int
  /// `height * width * 3` bytes.
  public let pixels: [UInt8]

  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3, "RGB image of \(width) x \(height) needs \(width * height * 3) bytes")
    self.width = width
    self.height = height
    self.pixels = pixels
  }
}

/// JPEG and PNG files decoded through libjpeg(-turbo) and libpng, converted to RGB as PIL's
/// `Image.open(path).convert("RGB")` converts them (what torchvision's `ImageFolder` loader does):
///
/// | file | RGB |
/// | --- | --- |
/// | JPEG YCbCr or RGB | libjpeg's RGB (integer IDCT, fancy upsampling: PIL's defaults) |
/// | JPEG grayscale, PNG gray 8-bit | the gray value in R, G and B |
/// | PNG gray 1, 2 or 4 bits | scaled to 0...255 (x 255, 85, 17), then as gray |
/// | PNG gray 16 bits | min(value, 255) (PIL's `I;16` to `RGB` clips, it does not scale) |
/// | PNG RGB 16 bits | the high byte of each sample |
/// | JPEG CMYK / YCCK | every sample inverted (`255 - v`, Adobe's convention, which PIL assumes for every four-component JPEG), then `R = nk - C nk / 255` with `nk = 255 - K`, rounded like PIL's `MULDIV255` |
/// | PNG palette | each index looked up in the palette |
/// | alpha, transparency (tRNS) | dropped, not composited |
///
/// EXIF orientation, ICC profiles and PNG gamma are ignored, as they are by PIL's `open` and
/// torchvision's loader. The file kind comes from its first bytes, not its name. Images of more
/// than `maxPixels` pixels (PIL's decompression-bomb limit) are refused before their pixels are
/// allocated; a corrupt or truncated file is a `LowbitError.invalidInput` with the library's
/// message.
public enum ImageDecoding {
  /// PIL's `2 * Image.MAX_IMAGE_PIXELS`, above which it refuses a file as a decompression bomb.
  public static let maxPixels = 178_956_970

  /// The image in `bytes`, read from `name` (for messages).
  public static func decode(_ bytes: [UInt8], name: String) throws -> RGBImage {
    if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try decodeJPEG(bytes, name: name) }
    if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return try decodePNG(bytes, name: name) }
    throw LowbitError.invalidInput("\(name): not a JPEG or PNG file (its first bytes are neither signature)")
  }

  /// The image in the file at `path`.
  public static func decode(contentsOf path: String) throws -> RGBImage {
    try decode(try FileIO.read(path), name: path)
  }

  /// Result of a C decoder: a malloc'd buffer (taken over and freed here) and its geometry.
  private struct Decoded {
    var width: Int32 = 0, height: Int32 = 0, components: Int32 = 0, flag: Int32 = 0
    var status: Int32 = 0
    var message = [CChar](repeating: 0, count: 256)
    var bytes: [UInt8] = []

    var text: String {
      let end = message.firstIndex(of: 0) ?? message.count
      return String(decoding: message[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Copies `count` bytes out of `pointer` and frees it.
    mutating func take(_ pointer: UnsafeMutablePointer<UInt8>?, count: Int) {
      guard let pointer else { return }
      // Safety: the decoder allocated at least `count` bytes (rows x stride) at `pointer`.
      bytes = Array(UnsafeBufferPointer(start: pointer, count: count))
      free(pointer)
    }

    func check(_ name: String, kind: String) throws {
      switch status {
      case 0: return
      case 2:
        throw LowbitError.invalidInput(
          "\(name): \(text) is more than \(ImageDecoding.maxPixels) pixels; refused as a possible decompression bomb")
      default: throw LowbitError.invalidInput("\(name): not a readable \(kind) file (\(text))")
      }
    }
  }

  /// Runs a C decoder over `bytes` with a 256-byte message buffer, takes over the pixel buffer
  /// it allocated and throws its error, named for `kind`.
  private static func decoded(
    _ bytes: [UInt8], name: String, kind: String,
    _ decoder: (UnsafeBufferPointer<UInt8>, inout UnsafeMutablePointer<UInt8>?, inout Decoded, UnsafeMutablePointer<CChar>?) -> Int32
  ) throws -> Decoded {
    var d = Decoded()
    var pointer: UnsafeMutablePointer<UInt8>?
    var message = [CChar](repeating: 0, count: 256)
    d.status = bytes.withUnsafeBufferPointer { data in
      message.withUnsafeMutableBufferPointer { decoder(data, &pointer, &d, $0.baseAddress) }
    }
    d.message = message
    d.take(pointer, count: Int(d.width) * Int(d.height) * Int(d.components))
    try d.check(name, kind: kind)
    return d
  }

  static func decodeJPEG(_ bytes: [UInt8], name: String) throws -> RGBImage {
    let d = try decoded(bytes, name: name, kind: "JPEG") { data, pixels, d, message in
      lowbit_jpeg_decode(
        data.baseAddress, UInt(data.count), UInt(maxPixels), &pixels, &d.width, &d.height, &d.components, &d.flag,
        message, 256)
    }
    let (w, h) = (Int(d.width), Int(d.height))
    switch d.components {
    case 3: return RGBImage(width: w, height: h, pixels: d.bytes)
    case 1: return RGBImage(width: w, height: h, pixels: grayToRGB(d.bytes))
    case 4: return RGBImage(width: w, height: h, pixels: cmykToRGB(d.bytes))
    default: throw LowbitError.unsupported("\(name): JPEG with \(d.components) colour components")
    }
  }

  static func decodePNG(_ bytes: [UInt8], name: String) throws -> RGBImage {
    let d = try decoded(bytes, name: name, kind: "PNG") { data, pixels, d, message in
      lowbit_png_decode(
        data.baseAddress, data.count, UInt(maxPixels), &pixels, &d.width, &d.height, &d.components, &d.flag, message)
    }
    let (w, h) = (Int(d.width), Int(d.height))
    guard d.flag != 0 else { return RGBImage(width: w, height: h, pixels: d.bytes) }
    // 16-bit gray, big-endian: PIL keeps it as `I;16` and clips it to 255 on the way to RGB.
    var gray = [UInt8](repeating: 0, count: w * h)
    for i in gray.indices {
      let v = Int(d.bytes[2 * i]) << 8 | Int(d.bytes[2 * i + 1])
      gray[i] = UInt8(min(v, 255))
    }
    return RGBImage(width: w, height: h, pixels: grayToRGB(gray))
  }

  static func grayToRGB(_ gray: [UInt8]) -> [UInt8] {
    var rgb = [UInt8](repeating: 0, count: gray.count * 3)
    for (i, v) in gray.enumerated() {
      rgb[3 * i] = v
      rgb[3 * i + 1] = v
      rgb[3 * i + 2] = v
    }
    return rgb
  }

  /// PIL's CMYK -> RGB of samples stored inverted: ink `c = 255 - v`, then `c' = nk - c nk / 255`
  /// with `nk = 255 - k` and PIL's rounding division `((t >> 8) + t) >> 8` of `t = c nk + 128`.
  static func cmykToRGB(_ cmyk: [UInt8]) -> [UInt8] {
    let n = cmyk.count / 4
    var rgb = [UInt8](repeating: 0, count: n * 3)
    for i in 0..<n {
      func ink(_ j: Int) -> Int { 255 - Int(cmyk[4 * i + j]) }
      let nk = 255 - ink(3)
      for c in 0..<3 {
        let t = ink(c) * nk + 128
        rgb[3 * i + c] = UInt8(clamping: nk - (((t >> 8) + t) >> 8))
      }
    }
    return rgb
  }
}
