/// A positive real multiplier as an integer accelerator applies it to an int32 accumulator
/// (white paper sec. 2.1; gemmlowp's and TFLite's quantized multiplier):
///
///     M = mantissa * 2^(exponent - 31),   mantissa in [2^30, 2^31)
///
/// `apply(acc)` is `round(acc * M)` in integer arithmetic with one rounding, as TFLite's
/// single-rounding requantization: `(acc * mantissa + 2^(k-1)) >> k`, `k = 31 - exponent` (halves
/// round up). gemmlowp's older scheme rounds twice (a rounding doubling high multiply, then a
/// rounding shift) and can land one step off where `acc` is small. Requantizing a layer uses
/// `M = s_x s_w / s_y` per output channel.
public struct FixedPointMultiplier: Sendable, Equatable {
  public let mantissa: Int32
  public let exponent: Int

  /// The nearest representable multiplier to `real` (> 0 and finite; smaller than 2^-31 gives
  /// zero, which maps every accumulator to 0, as TFLite does).
  public init(_ real: Double) {
    precondition(real.isFinite && real >= 0, "multiplier \(real) is not a finite non-negative number")
    guard real > 0 else {
      (mantissa, exponent) = (0, 0)
      return
    }
    // real = fraction * 2^e with fraction in [0.5, 1).
    var e = Int(real.exponent) + 1
    let fraction = real.significand / 2
    var m = Int64((fraction * Double(1 << 31)).rounded(.toNearestOrAwayFromZero))
    if m == 1 << 31 {
      m /= 2
      e += 1
    }
    if e < -31 {
      (m, e) = (0, 0)
    }
    precondition(e <= 30, "multiplier \(real) is too large for a 32-bit requantization")
    mantissa = Int32(m)
    exponent = e
  }

  /// `round(acc * M)` (halves up), saturated to int32.
  public func apply(_ acc: Int32) -> Int32 {
    let shift = 31 - exponent  // 1...62: the product stays below 2^62 and the sum below 2^63
    let rounded = (Int64(acc) * Int64(mantissa) + (Int64(1) << (shift - 1))) >> Int64(shift)
    return Int32(clamping: rounded)
  }
}
