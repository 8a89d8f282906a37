import Foundation
import LowbitCore

/// How closely a float-graph transform (BatchNorm folding, cross-layer equalization, high-bias
/// absorption) kept the model's function on calibration data.
public struct TransformCheck: Sendable, Codable, Equatable {
  public var transform: String
  /// `max |y' - y| / max |y|` over the elements of every float graph output, `y` the original
  /// model's output and `y'` the transformed model's, on the checked samples.
  public var maxRelativeError: Float
  public var samples: Int
  /// False when the error exceeded `FloatTransformCheck.tolerance`: the transform was undone.
  public var kept: Bool

  /// For the step's log line.
  var summary: String {
    let error = maxRelativeError.isFinite ? String(format: "%.2g", maxRelativeError) : "not finite"
    return kept
      ? "outputs checked on \(samples) samples: max relative error \(error)"
      : "undone: it changed the outputs on \(samples) calibration samples (max relative error \(error) > \(FloatTransformCheck.tolerance))"
  }

  enum CodingKeys: String, CodingKey {
    case transform, samples, kept
    case maxRelativeError = "max_relative_error"
  }
}

/// Checks each float-graph transform against the original model before quantization starts:
/// the transformed graph must compute the same outputs on calibration data within float
/// tolerance (`tolerance`), or the transform is undone. Every transform lowbit applies is exact
/// in real arithmetic; what the check catches is a transform whose premise the data breaks
/// (high-bias absorption with `c` above a channel's minimum) or a graph it misreads.
struct FloatTransformCheck {
  /// Largest `max |y' - y| / max |y|` a kept transform may show: float rounding over a deep
  /// network stays 1-2 orders of magnitude below.
  static let tolerance: Float = 1e-4

  let feeds: [String: Tensor]
  let reference: [String: Tensor]

  /// The original model's outputs on `feeds`; nil without calibration data.
  init?(original: Graph, feeds: [String: Tensor]?) throws {
    guard let feeds else { return nil }
    self.feeds = feeds
    self.reference = try Interpreter(original).run(feeds)
  }

  /// The check of `candidate` as the result of `transform`.
  func check(_ candidate: Graph, transform: String) throws -> TransformCheck {
    let outputs = try Interpreter(candidate).run(feeds)
    var worst: Float = 0
    for (name, y) in reference where y.dtype.isFloatingPoint {
      guard let z = outputs[name], z.shape == y.shape, z.dtype.isFloatingPoint else { worst = .infinity; continue }
      worst = max(worst, Self.maxRelativeError(z.floats, y.floats))
    }
    let samples = feeds.values.first.map { $0.rank > 0 ? $0.shape[0] : 1 } ?? 0
    return TransformCheck(transform: transform, maxRelativeError: worst, samples: samples, kept: worst <= Self.tolerance)
  }

  /// `max |a - b| / max |b|` (0 when both are all zero; infinite where a value is not finite).
  static func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    var diff: Float = 0, scale: Float = 0
    for (x, y) in zip(a, b) {
      guard x.isFinite == y.isFinite else { return .infinity }
      if x.isFinite { diff = max(diff, abs(x - y)) }
      scale = max(scale, abs(y))
    }
    return diff == 0 ? 0 : diff / max(scale, .leastNormalMagnitude)
  }
}
