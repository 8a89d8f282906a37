import ArgumentParser
import Foundation
import LowbitCore
import LowbitData

extension DataSpec {
  /// The data set a command-line spec names, Fashion-MNIST read from
  /// `$LOWBIT_FASHION_MNIST_DIR` when set (the library itself reads no environment); images and
  /// text made into inputs for `graph` as `options` say.
  static func loaded(_ text: String, options: DataOptions = DataOptions(), graph: Graph? = nil) throws -> Dataset {
    let directory = ProcessInfo.processInfo.environment[fashionMNISTDirectoryVariable] ?? defaultFashionMNISTDirectory
    let data = try parse(text).load(fashionMNISTDirectory: directory, options: options, modelInputs: graph?.inputs ?? [])
    if !data.skipped.isEmpty {
      let shown = data.skipped.prefix(5).map { "  \($0)\n" }.joined()
      let more = data.skipped.count > 5 ? "  ... and \(data.skipped.count - 5) more\n" : ""
      FileHandle.standardError.write(Data(
        "warning: \(text): left out \(data.skipped.count) unreadable inputs (--skip-bad-inputs), \(data.count) remain:\n\(shown)\(more)".utf8))
    }
    return data
  }
}

extension DataOptions.Preset: ExpressibleByArgument {}
extension ImagePreprocessing.Layout: ExpressibleByArgument {}
extension ImagePreprocessing.ChannelOrder: ExpressibleByArgument {}

/// How `images:` and `text:` data become model inputs (docs/data.md).
struct DataInputOptions: ParsableArguments {
  @Option(help: ArgumentHelp(
    "Image preprocessing preset: imagenet (default) or none.",
    discussion: "imagenet: the shorter side resized to round(crop * 256 / 224), the center crop (the model's input size, else 224), pixels / 255, ImageNet mean and std; none: pixels / 255 only."))
  var preprocess: DataOptions.Preset?

  @Option(help: "Resize images first: N (the shorter side, aspect kept) or HxW (PIL bilinear, antialiased).")
  var resize: String?

  @Option(help: "Center crop: N or HxW (default: the model's input height and width).")
  var crop: String?

  @Option(help: "Per-channel mean subtracted after scaling pixels to [0, 1], e.g. 0.485,0.456,0.406.")
  var mean: String?

  @Option(help: "Per-channel standard deviation divided by, e.g. 0.229,0.224,0.225.")
  var std: String?

  @Option(help: "Image layout: nchw or nhwc (default: from the model's input shape).")
  var layout: ImagePreprocessing.Layout?

  @Option(help: "Colour channel order: rgb (default) or bgr.")
  var channelOrder: ImagePreprocessing.ChannelOrder?

  @Option(help: "Hugging Face tokenizer.json for text: data.")
  var tokenizer: String?

  @Option(help: "Tokens per text row, truncated or padded (default: the model's sequence length when fixed, else 128).")
  var maxLength: Int?

  @Flag(help: "Leave out images and text lines that cannot be read, with a warning and a count in the summary, instead of stopping.")
  var skipBadInputs = false

  func validate() throws {
    _ = try options()
  }

  /// The options given on the command line (nil fields where none was given).
  func options() throws -> DataOptions {
    var o = DataOptions()
    o.preprocess = preprocess
    o.resize = try resize.map { try ImageResize(parsing: $0) }
    o.crop = try crop.map { try ImageSize(parsing: $0) }
    o.mean = try mean.map { try Self.channels($0, "--mean") }
    o.std = try std.map { try Self.channels($0, "--std") }
    o.layout = layout
    o.channelOrder = channelOrder
    o.tokenizer = tokenizer
    if let n = maxLength, n < 2 { throw ValidationError("--max-length must be at least 2") }
    o.maxLength = maxLength
    if skipBadInputs { o.skipBadInputs = true }
    return o
  }

  /// Three comma-separated numbers.
  static func channels(_ text: String, _ option: String) throws -> [Float] {
    let values = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard values.count == 3, values.allSatisfy(\.isFinite) else {
      throw ValidationError("\(option) '\(text)': expected three numbers, e.g. 0.485,0.456,0.406")
    }
    return values
  }
}
