import Foundation
import LowbitCore

/// The Fashion-MNIST data set (Xiao et al., 2017) in its original IDX files.
public enum FashionMNIST {
  /// The mean of the training pixels scaled to [0, 1].
  public static let mean: Float = 0.2860
  /// The standard deviation of the training pixels scaled to [0, 1].
  public static let standardDeviation: Float = 0.3530

  /// The image and label file names of a split, without the `.gz` suffix.
  public static func fileNames(_ split: DataSpec.Split) -> (images: String, labels: String) {
    let stem = split == .test ? "t10k" : "train"
    return ("\(stem)-images-idx3-ubyte", "\(stem)-labels-idx1-ubyte")
  }

  /// Loads a split from `directory` (gzip files, or uncompressed ones of the same name without
  /// `.gz`): images normalized as `(pixel / 255 - mean) / standardDeviation`, float32
  /// [N, 1, 28, 28]; labels int64 [N]. `limit` keeps the first samples and must not exceed the
  /// split's size.
  public static func load(
    split: DataSpec.Split, limit: Int? = nil, directory: String, spec: String? = nil
  ) throws -> Dataset {
    let names = fileNames(split)
    let imagesPath = try locate(names.images, in: directory)
    let labelsPath = try locate(names.labels, in: directory)
    let images = try IDX.read(contentsOf: imagesPath, limit: limit)
    let labels = try IDX.read(contentsOf: labelsPath, limit: limit)
    guard images.rank == 3, images.shape[1] == 28, images.shape[2] == 28, images.dtype == .float32
    else {
      throw LowbitError.invalidInput(
        "\(imagesPath): expected uint8 images of 28 x 28, found \(images.dtype) \(images.shape)")
    }
    guard labels.rank == 1, labels.dtype == .int64 else {
      throw LowbitError.invalidInput(
        "\(labelsPath): expected integer labels [N], found \(labels.dtype) \(labels.shape)")
    }
    if let limit, limit > images.shape[0] {
      throw LowbitError.invalidArgument(
        "fashion-mnist:\(split.rawValue) has \(images.shape[0]) samples; cannot take the first \(limit)"
      )
    }
    let n = images.shape[0]
    let scale = 1 / (255 * standardDeviation)
    let shift = mean / standardDeviation
    var pixels = images.floats  // the last use of `images`: normalized in place, no second copy
    for i in pixels.indices { pixels[i] = pixels[i] * scale - shift }
    return try Dataset(
      inputs: [(nil, Tensor(shape: [n, 1, 28, 28], floats: pixels))], labels: labels,
      source: spec ?? "fashion-mnist:\(split.rawValue)", inputSources: [imagesPath],
      labelSource: labelsPath)
  }

  private static func locate(_ name: String, in directory: String) throws -> String {
    let base = URL(fileURLWithPath: directory).appendingPathComponent(name).path
    for candidate in [base + ".gz", base] where FileManager.default.fileExists(atPath: candidate) {
      return candidate
    }
    throw LowbitError.io(
      "Fashion-MNIST not found: \(base).gz is missing. Install it with `apt-get install dataset-fashion-mnist`, "
        + "or point \(DataSpec.fashionMNISTDirectoryVariable) at a directory holding the IDX files")
  }
}
