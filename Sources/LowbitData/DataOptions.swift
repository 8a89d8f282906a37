import LowbitCore

/// What loading an `images:` or `text:` data spec needs besides the spec: how images become
/// inputs and how text is tokenized. Each field left nil takes its default from the preset and
/// the model's input (`imagePreprocessing(for:)`); the same fields are the `data` object of a
/// `--config` file (snake_case keys).
public struct DataOptions: Codable, Sendable, Equatable {
  /// A set of image defaults.
  public enum Preset: String, Codable, Sendable, CaseIterable {
    /// torchvision's ImageNet evaluation transform: the shorter side resized to
    /// `round(crop * 256 / 224)` (256 for a 224 crop), the centre crop, ImageNet mean and std.
    case imagenet
    /// Pixels / 255 only: no resize, mean 0, std 1; a center crop (or black padding) only when the
    /// model's input size or `crop` asks for it.
    case none
  }

  public var preprocess: Preset?
  public var resize: ImageResize?
  public var crop: ImageSize?
  public var mean: [Float]?
  public var std: [Float]?
  public var layout: ImagePreprocessing.Layout?
  public var channelOrder: ImagePreprocessing.ChannelOrder?
  /// A Hugging Face `tokenizer.json`, for `text:` specs.
  public var tokenizer: String?
  /// Tokens per text row (truncated or padded to it).
  public var maxLength: Int?
  /// Leave out images and lines that cannot be read (each listed in `Dataset.skipped`) instead
  /// of failing; images are then all decoded once when the data set is loaded.
  public var skipBadInputs: Bool?

  enum CodingKeys: String, CodingKey {
    case preprocess, resize, crop, mean, std, layout, tokenizer
    case channelOrder = "channel_order", maxLength = "max_length", skipBadInputs = "skip_bad_inputs"
  }

  public init() {}

  /// These options with every field `other` sets taken from it.
  public func overridden(by other: DataOptions) -> DataOptions {
    var c = self
    c.preprocess = other.preprocess ?? preprocess
    c.resize = other.resize ?? resize
    c.crop = other.crop ?? crop
    c.mean = other.mean ?? mean
    c.std = other.std ?? std
    c.layout = other.layout ?? layout
    c.channelOrder = other.channelOrder ?? channelOrder
    c.tokenizer = other.tokenizer ?? tokenizer
    c.maxLength = other.maxLength ?? maxLength
    c.skipBadInputs = other.skipBadInputs ?? skipBadInputs
    return c
  }

  /// The preprocessing for images fed to `input` (the model's image input, when known):
  ///
  /// | setting | given | else |
  /// | --- | --- | --- |
  /// | layout | `layout` | `nhwc` when the input's last dimension is 3 and its second is not, else `nchw` |
  /// | crop | `crop` | the input's height and width when fixed; else 224 (`imagenet`) or none |
  /// | resize | `resize` | `imagenet`: shorter side `round(min(crop) * 256 / 224)`; `none`: no resize |
  /// | mean, std | `mean`, `std` | `imagenet`: ImageNet's; `none`: 0 and 1 |
  ///
  /// The preset is `imagenet` unless given. Throws when the input cannot take 3-channel images
  /// (rank other than 4, or a fixed channel count other than 3), or when no size fixes the rows.
  public func imagePreprocessing(for input: ValueInfo?) throws -> (ImagePreprocessing, size: ImageSize) {
    let preset = preprocess ?? .imagenet
    let dims = input?.shape?.map(\.value)
    let place = input.map { "model input '\($0.name)'" } ?? "images"
    if let dims, dims.count != 4 {
      throw LowbitError.invalidInput("\(place) has shape \(input?.shape ?? []); images need a 4-d input [N, 3, H, W] or [N, H, W, 3]")
    }
    let layout = layout ?? (dims.map { $0[3] == 3 && $0[1] != 3 } == true ? .nhwc : .nchw)
    let (channelAxis, heightAxis) = layout == .nchw ? (1, 2) : (3, 1)
    if let c = dims?[channelAxis], c != 3 {
      throw LowbitError.invalidInput("\(place) has \(c) channels (layout \(layout.rawValue)); images give 3 (RGB or BGR)")
    }
    var modelSize: ImageSize?
    if let h = dims?[heightAxis], let w = dims?[heightAxis + 1] { modelSize = ImageSize(height: h, width: w) }
    let crop = crop ?? modelSize ?? (preset == .imagenet ? ImageSize(height: 224, width: 224) : nil)
    var resize = resize
    if resize == nil, preset == .imagenet, let crop {
      resize = .shorterSide(Int((Double(min(crop.height, crop.width)) * 256 / 224).rounded()))
    }
    var p = ImagePreprocessing(
      resize: resize, crop: crop, mean: preset == .imagenet ? ImagePreprocessing.imageNetMean : [0, 0, 0],
      std: preset == .imagenet ? ImagePreprocessing.imageNetStd : [1, 1, 1], layout: layout,
      channelOrder: channelOrder ?? .rgb)
    if let mean { p.mean = mean }
    if let std { p.std = std }
    try p.validate()
    var size = crop
    if size == nil, case .exact(let s) = resize { size = s }
    guard let size else {
      throw LowbitError.invalidArgument(
        "\(place): the image size is not fixed (the model's height and width are not, and no crop or HxW resize is given); give --crop")
    }
    if let modelSize, modelSize != size {
      throw LowbitError.invalidArgument("\(place) takes \(modelSize) images, but the preprocessing makes \(size)")
    }
    return (p, size)
  }
}
