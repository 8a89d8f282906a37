import LowbitCore

/// The integer grid `[qmin, qmax]` of a b-bit quantizer (white paper sec. 2.2).
///
/// | signed | narrow | qmin           | qmax          |
/// |--------|--------|----------------|---------------|
/// | yes    | no     | -2^(b-1)       | 2^(b-1) - 1   |
/// | yes    | yes    | -(2^(b-1) - 1) | 2^(b-1) - 1   |
/// | no     |        | 0              | 2^b - 1       |
///
/// The narrow signed grid is symmetric around 0 (TensorRT's weights: [-127, 127]).
public struct IntegerGrid: Sendable, Equatable, Hashable, Codable {
  public var bits: Int
  public var signed: Bool
  /// Signed grids only: leave out the lowest integer, -2^(b-1).
  public var narrow: Bool

  /// Bit widths lowbit quantizes to.
  public static let supportedBits = 2...16

  public init(bits: Int, signed: Bool, narrow: Bool = false) {
    precondition(IntegerGrid.supportedBits.contains(bits), "bits \(bits) outside 2...16")
    self.bits = bits
    self.signed = signed
    self.narrow = signed && narrow
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let bits = try c.decode(Int.self, forKey: .bits)
    guard IntegerGrid.supportedBits.contains(bits) else {
      throw DecodingError.dataCorruptedError(forKey: .bits, in: c, debugDescription: "bits \(bits) outside 2...16")
    }
    self.init(
      bits: bits, signed: try c.decode(Bool.self, forKey: .signed),
      narrow: try c.decodeIfPresent(Bool.self, forKey: .narrow) ?? false)
  }

  public var qmin: Int { signed ? -(1 << (bits - 1)) + (narrow ? 1 : 0) : 0 }
  public var qmax: Int { signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1 }
  /// Number of steps between the grid's ends: `qmax - qmin`.
  public var steps: Int { qmax - qmin }

  /// The smallest ONNX integer type that holds the grid, given what the opset allows
  /// (4-bit and 16-bit types need opset 21), with 4-bit types only where `subByte` allows them.
  public func storageType(opset: Int, subByte: Bool = true) -> DType {
    if bits <= 4 && opset >= 21 && subByte { return signed ? .int4 : .uint4 }
    if bits <= 8 { return signed ? .int8 : .uint8 }
    return signed ? .int16 : .uint16
  }
}

/// Scale and zero point of one quantization grid: `x_hat = s * (x_int - z)`.
public struct QuantParams: Sendable, Equatable, Codable {
  public var scale: Float
  public var zeroPoint: Int

  public init(scale: Float, zeroPoint: Int) {
    self.scale = scale
    self.zeroPoint = zeroPoint
  }
}

/// The uniform affine quantizer's arithmetic (white paper eq. 1-3), as pure functions.
///
/// `x_int = clamp(round(x / s) + z; qmin, qmax)` and `x_hat = s * (x_int - z)`, with `round`
/// half to even and `x / s` computed in Float, exactly as ONNX QuantizeLinear does, so that the
/// simulation and a runtime agree bit for bit.
public enum UniformQuantizer {
  /// Eq. 1-2: the integer for `x` (NaN maps to the zero point, as a runtime's saturation does).
  @inlinable
  public static func quantize(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Int {
    let r = (x / p.scale).rounded(.toNearestOrEven)
    guard r.isFinite else { return r.isNaN ? p.zeroPoint : (r > 0 ? grid.qmax : grid.qmin) }
    let v = Double(r) + Double(p.zeroPoint)
    return Int(min(max(v, Double(grid.qmin)), Double(grid.qmax)))
  }

  /// Eq. 3: the real value of an integer.
  @inlinable
  public static func dequantize(_ q: Int, _ p: QuantParams) -> Float {
    p.scale * Float(q - p.zeroPoint)
  }

  /// Quantize then dequantize: the simulated value `x_hat`.
  @inlinable
  public static func fakeQuantize(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Float {
    dequantize(quantize(x, p, grid), p)
  }

  /// Scale and zero point covering `[lower, upper]` (widened to contain 0 so that zero is exact).
  ///
  /// - Asymmetric: `s = (max - min) / (qmax - qmin)`, `z = clamp(round(qmin - min / s))`.
  /// - Symmetric (z = 0): signed grids take `s = max(|min|, |max|) / qmax`; unsigned grids, meant
  ///   for non-negative data, take `s = max / qmax`.
  /// - Power of two: s is rounded up to `2^ceil(log2 s)` (z is recomputed for it).
  /// - Degenerate ranges (all zero, NaN, infinite) give `s = 1` (or the smallest normal scale
  ///   that still spans the range), never zero, NaN or infinity.
  public static func params(
    lower: Float, upper: Float, grid: IntegerGrid, symmetric: Bool, powerOfTwo: Bool = false
  ) -> QuantParams {
    var lo = lower.isFinite ? min(lower, 0) : 0
    var hi = upper.isFinite ? max(upper, 0) : 0
    if lo > hi { swap(&lo, &hi) }
    var scale: Float
    if symmetric {
      let extent = grid.signed ? max(-lo, hi) : hi
      scale = extent / Float(grid.qmax)
    } else {
      scale = (hi - lo) / Float(grid.steps)
    }
    if !scale.isFinite || scale <= 0 {
      scale = 1  // an all-zero or broken range: any positive scale represents it exactly
    } else if scale < Float.leastNormalMagnitude {
      scale = Float.leastNormalMagnitude
    }
    if powerOfTwo { scale = Float(pow2Ceil(Double(scale))) }
    if symmetric { return QuantParams(scale: scale, zeroPoint: 0) }
    let z = (Float(grid.qmin) - lo / scale).rounded(.toNearestOrEven)
    let zero = Int(min(max(z, Float(grid.qmin)), Float(grid.qmax)))
    return QuantParams(scale: scale, zeroPoint: zero)
  }

  /// The real interval the grid represents: `[s (qmin - z), s (qmax - z)]`.
  public static func representableRange(_ p: QuantParams, _ grid: IntegerGrid) -> ClosedRange<Float> {
    dequantize(grid.qmin, p)...dequantize(grid.qmax, p)
  }

  private static func pow2Ceil(_ v: Double) -> Double {
    var e = 0.0
    var x = 1.0
    if v >= 1 { while x < v { x *= 2; e += 1 } } else { while x / 2 >= v { x /= 2; e -= 1 } }
    return x
  }
}

/// Gradients of `x_hat` for training through the quantizer (white paper eq. 37-39): the
/// straight-through estimator treats `round` as the identity inside the grid.
public enum QuantizerGradient {
  /// Where `x` falls relative to the grid's clipping thresholds.
  public enum Region: Sendable, Equatable { case below, inside, above }

  /// The region of `x`: below when `round(x/s) + z < qmin`, above when `> qmax`.
  @inlinable
  public static func region(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Region {
    let q = Double((x / p.scale).rounded(.toNearestOrEven)) + Double(p.zeroPoint)
    if q < Double(grid.qmin) { return .below }
    if q > Double(grid.qmax) { return .above }
    return .inside
  }

  /// d x_hat / d x: 1 inside the grid, 0 outside (STE, eq. 37).
  @inlinable
  public static func input(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Float {
    region(x, p, grid) == .inside ? 1 : 0
  }

  /// d x_hat / d s: `round(x/s) - x/s` inside, `qmin - z` below, `qmax - z` above (eq. 38).
  @inlinable
  public static func scale(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Float {
    switch region(x, p, grid) {
    case .inside: return (x / p.scale).rounded(.toNearestOrEven) - x / p.scale
    case .below: return Float(grid.qmin - p.zeroPoint)
    case .above: return Float(grid.qmax - p.zeroPoint)
    }
  }

  /// d x_hat / d z: 0 inside, `-s` outside (eq. 39).
  @inlinable
  public static func zeroPoint(_ x: Float, _ p: QuantParams, _ grid: IntegerGrid) -> Float {
    region(x, p, grid) == .inside ? 0 : -p.scale
  }
}
