import LowbitCore

/// Height and width in pixels, written `N` (a square) or `HxW`.
public struct ImageSize: TextCodable, Sendable, Equatable {
  public var height: Int
  public var width: Int

  public init(height: Int, width: Int) {
    self.height = height
    self.width = width
  }

  /// `N` or `HxW`, each positive.
  public init(parsing text: String) throws {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
    let values = parts.compactMap { Int($0) }
    guard (1...2).contains(parts.count), values.count == parts.count, values.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
      throw LowbitError.invalidArgument("'\(text)' is not an image size: expected N or HxW, positive, at most 65536")
    }
    self.init(height: values[0], width: values.last ?? values[0])
  }

  public var description: String { height == width ? "\(height)" : "\(height)x\(width)" }

}

/// How a decoded image becomes one row of a model input: torchvision's evaluation transform
/// `Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize(mean, std)`, step by step:
///
/// 1. **Resize** (optional): a single number resizes the shorter side to it and the longer side to
///    `trunc(resize * long / short)`, keeping the aspect ratio (torchvision's `Resize(int)`);
///    `HxW` resizes to exactly that. PIL's antialiased bilinear filter on 8-bit pixels
///    (`ImageResampling`), so the pixels equal PIL's.
/// 2. **Center crop** (optional): the `crop` box at `top = round((H - h) / 2)`,
///    `left = round((W - w) / 2)` (half to even, as Python's `round`); a crop larger than the image
///    pads it with black first, `(W - w) // 2` columns on the left and the rest on the right (rows
///    likewise), as torchvision's `CenterCrop` does.
/// 3. **Scale and normalize**: `x = (p / 255 - mean[c]) / std[c]` in float32 per channel `c`
///    (ToTensor, then Normalize), channels in `channelOrder` (mean and std are given in that
///    order), laid out `nchw` (channels first) or `nhwc`.
public struct ImagePreprocessing: Sendable, Equatable {
  /// Where the channels go in a row.
  public enum Layout: String, Codable, Sendable, CaseIterable {
    case nchw, nhwc
  }

  /// The order of the colour channels the model expects.
  public enum ChannelOrder: String, Codable, Sendable, CaseIterable {
    case rgb, bgr
  }

  public var resize: ImageResize?
  public var crop: ImageSize?
  public var mean: [Float]
  public var std: [Float]
  public var layout: Layout
  public var channelOrder: ChannelOrder

  public init(
    resize: ImageResize? = nil, crop: ImageSize? = nil, mean: [Float] = [0, 0, 0], std: [Float] = [1, 1, 1],
    layout: Layout = .nchw, channelOrder: ChannelOrder = .rgb
  ) {
    self.resize = resize
    self.crop = crop
    self.mean = mean
    self.std = std
    self.layout = layout
    self.channelOrder = channelOrder
  }

  /// ImageNet's channel means and standard deviations (RGB), as torchvision's models use them.
  public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
  public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

  /// Throws unless mean and std have three finite values, std nonzero.
  public func validate() throws {
    guard mean.count == 3, std.count == 3 else {
      throw LowbitError.invalidArgument("image mean and std need 3 values each (one per channel), got \(mean.count) and \(std.count)")
    }
    guard (mean + std).allSatisfy(\.isFinite), !std.contains(0) else {
      throw LowbitError.invalidArgument("image mean and std must be finite and std nonzero: mean \(mean), std \(std)")
    }
  }

  /// The shape of one row for an image of `size` (the crop, or the resized size when there is
  /// no crop; nil when neither fixes it).
  public func rowShape(for size: ImageSize) -> [Int] {
    layout == .nchw ? [3, size.height, size.width] : [size.height, size.width, 3]
  }

  /// The row for `image`: resized, cropped, scaled and normalized (see the type's steps).
  public func row(_ image: RGBImage) -> (values: [Float], size: ImageSize) {
    let resized = resize.map { $0.size(width: image.width, height: image.height) }
      ?? ImageSize(height: image.height, width: image.width)
    let box = crop ?? resized
    // Padding (when the crop is larger) and the crop's offset, per axis, as torchvision does.
    func place(_ have: Int, _ want: Int) -> (pad: Int, offset: Int) {
      let pad = want > have ? (want - have) / 2 : 0
      let padded = want > have ? want : have
      let offset = Int((Double(padded - want) / 2).rounded(.toNearestOrEven))
      return (pad, offset)
    }
    let (padTop, top) = place(resized.height, box.height)
    let (padLeft, left) = place(resized.width, box.width)
    // Rows and columns of the resized image the crop covers.
    let rows = max(top - padTop, 0)..<min(top - padTop + box.height, resized.height)
    let columns = max(left - padLeft, 0)..<min(left - padLeft + box.width, resized.width)
    let pixels = ImageResampling.resized(image, width: resized.width, height: resized.height, rows: rows, columns: columns)
    let channels = channelOrder == .rgb ? [0, 1, 2] : [2, 1, 0]
    // Every 8-bit level's value per output channel, `(p / 255 - mean) / std` in float32, and black
    // (level 0) outside the image, where the crop was padded.
    let levels = (0..<3).map { c in (0..<256).map { (Float($0) / 255 - mean[c]) / std[c] } }
    var values = [Float](repeating: 0, count: 3 * box.height * box.width)
    let plane = box.height * box.width
    let (y0, x0) = (rows.lowerBound - top + padTop, columns.lowerBound - left + padLeft)
    // Value (y, x, c) sits at `c * plane + y * width + x` (nchw) or `(y * width + x) * 3 + c` (nhwc).
    let (channelStep, pixelStep) = layout == .nchw ? (plane, 1) : (1, 3)
    for (c, source) in channels.enumerated() {
      let table = levels[c]
      for i in 0..<plane { values[c * channelStep + i * pixelStep] = table[0] }
      for r in 0..<rows.count {
        let row = c * channelStep + ((y0 + r) * box.width + x0) * pixelStep
        let from = r * columns.count * 3 + source
        for k in 0..<columns.count { values[row + k * pixelStep] = table[Int(pixels[from + 3 * k])] }
      }
    }
    return (values, box)
  }
}

/// The resize step: the shorter side to a length (aspect kept), or an exact size.
public enum ImageResize: TextCodable, Sendable, Equatable {
  case shorterSide(Int)
  case exact(ImageSize)

  /// `N` (shorter side) or `HxW` (exact).
  public init(parsing text: String) throws {
    let size = try ImageSize(parsing: text)
    self = text.lowercased().contains("x") ? .exact(size) : .shorterSide(size.height)
  }

  public var description: String {
    switch self {
    case .shorterSide(let n): return "\(n)"
    case .exact(let s): return "\(s.height)x\(s.width)"
    }
  }

  /// The size an image of `width x height` is resized to: torchvision's `Resize` sizes
  /// (`trunc(n * long / short)` for the longer side).
  public func size(width: Int, height: Int) -> ImageSize {
    switch self {
    case .exact(let s): return s
    case .shorterSide(let n):
      if width <= height {
        return ImageSize(height: Int(Double(n * height) / Double(width)), width: n)
      }
      return ImageSize(height: n, width: Int(Double(n * width) / Double(height)))
    }
  }

}

/// A value written as its command-line text (`N` or `HxW`), in JSON as that string or a bare
/// number.
public protocol TextCodable: Codable, CustomStringConvertible {
  init(parsing text: String) throws
}

extension TextCodable {
  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let n = try? c.decode(Int.self) {
      try self.init(parsing: String(n))
    } else {
      try self.init(parsing: try c.decode(String.self))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}
