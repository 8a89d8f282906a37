import Foundation

/// Resize (opset 10 on) and the older Upsample (opsets 7-9): nearest, linear and cubic
/// interpolation, separable, one axis at a time.
extension Ops {
  static let resizeKernels: [String: Kernel] = ["Resize": resize, "Upsample": upsample]
}

/// How the output coordinate `x` of an axis maps back to the input coordinate, for an input
/// length `n`, output length `m` and scale `s` (`m / n` when sizes are given):
/// - half_pixel: `(x + 1/2) / s - 1/2`; pytorch_half_pixel: the same, `0` when `m = 1`;
/// - half_pixel_symmetric: `n/2 (1 - m / (s n)) + (x + 1/2) / s - 1/2`;
/// - align_corners: `x (n - 1) / (m - 1)`, `0` when `m = 1`;
/// - asymmetric: `x / s`; tf_half_pixel_for_nn: `(x + 1/2) / s`.
/// Each output element is a weighted sum of input elements (its taps) along every resized
/// axis: one tap for nearest, two for linear (`1 - t, t`, the coordinate clamped to
/// `[0, n - 1]`), four for cubic (Keys' kernel with coefficient `a`; taps outside the input
/// take the edge value, or are dropped and the rest renormalized with exclude_outside).
public struct ResizeGeometry: Sendable {
  public enum Mode: String, Sendable { case nearest, linear, cubic }

  public var mode: Mode
  public var coordinates: String
  public var nearestMode: String
  public var cubicCoefficient: Float
  public var excludeOutside: Bool

  /// Per output position `j`, `tapsPerOutput` input indices and weights at `j * tapsPerOutput`.
  public struct Taps: Sendable {
    public var tapsPerOutput: Int
    public var indices: [Int]
    public var weights: [Float]
  }

  /// The input coordinate of output position `x`.
  func sourceCoordinate(_ x: Int, input n: Int, output m: Int, scale s: Float) -> Float {
    let xf = Float(x)
    switch coordinates {
    case "half_pixel": return (xf + 0.5) / s - 0.5
    case "pytorch_half_pixel": return m > 1 ? (xf + 0.5) / s - 0.5 : 0
    case "half_pixel_symmetric":
      let adjustment = Float(m) / (s * Float(n)), center = Float(n) / 2
      return center * (1 - adjustment) + (xf + 0.5) / s - 0.5
    case "align_corners": return m == 1 ? 0 : xf * Float(n - 1) / Float(m - 1)
    case "tf_half_pixel_for_nn": return (xf + 0.5) / s
    default: return xf / s  // asymmetric
    }
  }

  /// The nearest input index of coordinate `c` under `nearestMode` ("simple": Upsample's floor,
  /// ceil when shrinking), clamped to the input.
  func nearestIndex(_ c: Float, input n: Int, scale s: Float) -> Int {
    let f = c.rounded(.down)
    let r: Float
    switch nearestMode {
    case "round_prefer_ceil": r = c == f + 0.5 ? f + 1 : c.rounded(.toNearestOrAwayFromZero)
    case "floor": r = f
    case "ceil": r = c.rounded(.up)
    case "simple": r = s < 1 ? c.rounded(.up) : f
    default: r = c == f + 0.5 ? f : c.rounded(.toNearestOrAwayFromZero)  // round_prefer_floor
    }
    return Int(min(max(r, 0), Float(n - 1)))
  }

  /// The taps of every output position of one axis.
  public func taps(input n: Int, output m: Int, scale s: Float) -> Taps {
    switch mode {
    case .nearest:
      return Taps(tapsPerOutput: 1, indices: (0..<m).map { nearestIndex(sourceCoordinate($0, input: n, output: m, scale: s), input: n, scale: s) },
                  weights: [Float](repeating: 1, count: m))
    case .linear:
      var indices: [Int] = [], weights: [Float] = []
      for j in 0..<m {
        let c = min(max(sourceCoordinate(j, input: n, output: m, scale: s), 0), Float(n - 1))
        let lo = Int(c), hi = min(lo + 1, n - 1), t = c - Float(lo)
        indices += [lo, hi]
        weights += [1 - t, t]
      }
      return Taps(tapsPerOutput: 2, indices: indices, weights: weights)
    case .cubic:
      let a = cubicCoefficient
      var indices: [Int] = [], weights: [Float] = []
      for j in 0..<m {
        let c = sourceCoordinate(j, input: n, output: m, scale: s)
        let f = c.rounded(.down), t = c - f
        let d: [Float] = [t + 1, t, 1 - t, 2 - t]
        var w = d.map { d in d <= 1 ? ((a + 2) * d - (a + 3)) * d * d + 1 : ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
        let base = Int(f) - 1
        var idx = (0..<4).map { base + $0 }
        if excludeOutside {
          for k in 0..<4 where idx[k] < 0 || idx[k] >= n { w[k] = 0 }
          let total = w.reduce(0, +)
          if total != 0 { w = w.map { $0 / total } }
        }
        idx = idx.map { min(max($0, 0), n - 1) }
        indices += idx
        weights += w
      }
      return Taps(tapsPerOutput: 4, indices: indices, weights: weights)
    }
  }

  /// `y[o, j, i] = sum_k w[j, k] x[o, idx[j, k], i]` for `x` viewed as `[outer, n, inner]`.
  public static func apply(_ taps: Taps, to x: [Float], outer: Int, input n: Int, inner: Int) -> [Float] {
    accumulate(taps, x, outer: outer, input: n, inner: inner, transposed: false)
  }

  /// The transpose of `apply`: `dx[o, idx[j, k], i] += w[j, k] dy[o, j, i]` (Resize's gradient).
  public static func applyTransposed(_ taps: Taps, to dy: [Float], outer: Int, input n: Int, inner: Int) -> [Float] {
    accumulate(taps, dy, outer: outer, input: n, inner: inner, transposed: true)
  }

  /// One weighted sum per tap, from the output row to the input row (`transposed`) or back.
  private static func accumulate(_ taps: Taps, _ source: [Float], outer: Int, input n: Int, inner: Int, transposed: Bool) -> [Float] {
    let m = taps.indices.count / taps.tapsPerOutput, k = taps.tapsPerOutput
    var target = [Float](repeating: 0, count: outer * (transposed ? n : m) * inner)
    for o in 0..<outer {
      for j in 0..<m {
        for t in 0..<k {
          let w = taps.weights[j * k + t]
          if w == 0 { continue }
          let inputRow = (o * n + taps.indices[j * k + t]) * inner, outputRow = (o * m + j) * inner
          let (from, to) = transposed ? (outputRow, inputRow) : (inputRow, outputRow)
          for i in 0..<inner { target[to + i] += w * source[from + i] }
        }
      }
    }
    return target
  }
}

/// What one Resize or Upsample node does to its input: the geometry, and per axis the output
/// length and scale (axes left alone have scale 1 and the input length).
public struct ResizePlan: Sendable {
  public var geometry: ResizeGeometry
  public var outputShape: [Int]
  public var scales: [Float]

  /// The resized axes, in order.
  public var axes: [Int] { scales.indices.filter { scales[$0] != 1 || outputShape[$0] != inputShape[$0] } }
  public var inputShape: [Int]

  /// Reads the node's attributes and its scales / sizes inputs for an input of `shape`.
  public init(_ ctx: KernelContext, shape: [Int]) throws {
    let rank = shape.count
    let upsample = ctx.node.opType == "Upsample"
    let modeName = try ctx.string("mode", default: "nearest")
    let mode: ResizeGeometry.Mode
    switch modeName {
    case "nearest": mode = .nearest
    case "linear", "bilinear", "trilinear": mode = .linear
    case "cubic" where !upsample: mode = .cubic
    default: throw ctx.error("mode '\(modeName)' is not nearest, linear or cubic", .unsupported)
    }
    let legacy = upsample || ctx.opset < 11
    let coordinates = legacy ? "asymmetric" : try ctx.string("coordinate_transformation_mode", default: "half_pixel")
    let known = ["half_pixel", "pytorch_half_pixel", "half_pixel_symmetric", "align_corners", "asymmetric", "tf_half_pixel_for_nn"]
    guard known.contains(coordinates) else {
      throw ctx.error("coordinate_transformation_mode '\(coordinates)' is not supported (only \(known.joined(separator: ", ")))", .unsupported)
    }
    let nearestMode = legacy ? "simple" : try ctx.string("nearest_mode", default: "round_prefer_floor")
    guard ["simple", "round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearestMode) else {
      throw ctx.error("nearest_mode '\(nearestMode)' is not supported", .unsupported)
    }
    geometry = ResizeGeometry(
      mode: mode, coordinates: coordinates, nearestMode: nearestMode,
      cubicCoefficient: try ctx.float("cubic_coeff_a", default: -0.75), excludeOutside: try ctx.int("exclude_outside", default: 0) != 0)
    inputShape = shape

    // Which inputs hold scales and sizes.
    var scaleValues: [Float]?, sizeValues: [Int]?
    if upsample && ctx.opset < 9 {
      guard case .floats(let s)? = ctx.node.attributes["scales"] else { throw ctx.error("attribute 'scales' is required") }
      scaleValues = s
    } else {
      let scalesSlot = upsample || ctx.opset < 11 ? 1 : 2
      if let t = ctx.optionalInput(scalesSlot), t.count > 0 {
        guard t.dtype.isFloatingPoint else { throw ctx.error("scales has type \(t.dtype), expected float") }
        scaleValues = t.floats
      }
      if !legacy, let t = ctx.optionalInput(3), t.count > 0 { sizeValues = try ctx.intList(3, what: "sizes") }
    }
    let axes = ctx.opset >= 18 && !upsample ? try ctx.normalizedAxes(ctx.ints("axes") ?? Array(0..<rank), rank: rank) : Array(0..<rank)
    var out = shape, scales = [Float](repeating: 1, count: rank)
    switch (scaleValues, sizeValues) {
    case (let s?, nil):
      guard s.count == axes.count else { throw ctx.error("scales has \(s.count) values for \(axes.count) axes") }
      for (a, v) in zip(axes, s) {
        guard v > 0, v.isFinite else { throw ctx.error("scale \(v) on axis \(a) is not positive", .invalidInput) }
        scales[a] = v
        out[a] = Int((Float(shape[a]) * v).rounded(.down))
      }
    case (nil, let z?):
      guard z.count == axes.count else { throw ctx.error("sizes has \(z.count) values for \(axes.count) axes") }
      let policy = ctx.opset >= 18 ? try ctx.string("keep_aspect_ratio_policy", default: "stretch") : "stretch"
      let ratios = zip(axes, z).map { Float($1) / Float(shape[$0]) }
      for (k, (a, v)) in zip(axes, z).enumerated() {
        guard v >= 0 else { throw ctx.error("size \(v) on axis \(a) is negative", .invalidInput) }
        switch policy {
        case "stretch":
          scales[a] = ratios[k]
          out[a] = v
        case "not_larger", "not_smaller":
          let r = policy == "not_larger" ? ratios.min()! : ratios.max()!
          scales[a] = r
          out[a] = Int((r * Float(shape[a])).rounded(.toNearestOrAwayFromZero))
        default: throw ctx.error("keep_aspect_ratio_policy '\(policy)' is not supported", .unsupported)
        }
      }
    case (nil, nil): throw ctx.error("neither scales nor sizes is given")
    case (.some, .some): throw ctx.error("scales and sizes are both given; exactly one is allowed")
    }
    if shape.contains(0) { throw ctx.error("input shape \(shape) is empty", .invalidInput) }
    outputShape = out
    self.scales = scales
    if mode != .nearest, try ctx.int("antialias", default: 0) != 0, scales.contains(where: { $0 < 1 }) {
      throw ctx.error("antialias when shrinking is not supported", .unsupported)
    }
  }
}

private func resize(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let plan = try ResizePlan(ctx, shape: x.shape)
  _ = try ctx.checkedCount(plan.outputShape)
  var shape = x.shape
  var storage = x.storage
  for axis in plan.axes {
    let n = shape[axis], m = plan.outputShape[axis]
    let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
    let taps = plan.geometry.taps(input: n, output: m, scale: plan.scales[axis])
    switch storage {
    case .float(let v):
      storage = .float(ResizeGeometry.apply(taps, to: v, outer: outer, input: n, inner: inner))
    case .int(let v) where taps.tapsPerOutput == 1:
      storage = .int(gatherRows(v, taps.indices, outer: outer, input: n, inner: inner))
    case .bool(let v) where taps.tapsPerOutput == 1:
      storage = .bool(gatherRows(v, taps.indices, outer: outer, input: n, inner: inner))
    default:
      throw ctx.error("\(plan.geometry.mode) resizing of a \(x.dtype) tensor is not supported", .unsupported)
    }
    shape[axis] = m
  }
  return [Tensor(dtype: x.dtype, shape: shape, storage: storage)]
}

private func upsample(_ ctx: KernelContext) throws -> [Tensor] { try resize(ctx) }

/// `y[o, j, i] = x[o, index[j], i]` for `x` viewed as `[outer, n, inner]`.
private func gatherRows<T>(_ x: [T], _ index: [Int], outer: Int, input n: Int, inner: Int) -> [T] {
  var y: [T] = []
  y.reserveCapacity(outer * index.count * inner)
  for o in 0..<outer {
    for j in index { y.append(contentsOf: x[((o * n + j) * inner)..<((o * n + j + 1) * inner)]) }
  }
  return y
}
