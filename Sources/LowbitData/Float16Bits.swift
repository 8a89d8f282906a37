/// IEEE 754 half-precision conversions on bit patterns, written out so that they behave the same
/// on every platform (Swift's `Float16` is missing on some).
enum Float16Bits {
  /// The Float a half-precision bit pattern stands for (exact: every half is a Float).
  static func float(_ h: UInt16) -> Float {
    let sign: Float = h & 0x8000 != 0 ? -1 : 1
    let exponent = Int(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    switch exponent {
    case 0:  // zero or subnormal: mantissa * 2^-24
      return sign * Float(mantissa) * 0x1p-24
    case 31:  // infinity or NaN (payload kept)
      return Float(bitPattern: UInt32(h & 0x8000) << 16 | 0x7f80_0000 | mantissa << 13)
    default:
      return Float(
        bitPattern: UInt32(h & 0x8000) << 16 | UInt32(exponent + 112) << 23 | mantissa << 13)
    }
  }

  /// The half-precision bit pattern nearest to `f`, ties to even; overflow gives infinity and
  /// NaN stays NaN (quiet).
  static func bits(_ f: Float) -> UInt16 {
    let b = f.bitPattern
    let sign = UInt16(truncatingIfNeeded: b >> 16) & 0x8000
    let exponent = Int((b >> 23) & 0xff)
    let mantissa = b & 0x7f_ffff
    if exponent == 0xff {
      return sign | 0x7c00 | (mantissa != 0 ? 0x200 | UInt16(mantissa >> 13) : 0)
    }
    let e = exponent - 112  // the half's biased exponent
    if e >= 31 { return sign | 0x7c00 }
    if e <= 0 {
      // Subnormal half (or zero): the value in units of 2^-24 is significand * 2^(e - 14).
      if e < -10 { return sign }
      let significand = mantissa | 0x80_0000
      let shift = UInt32(14 - e)
      var h = significand >> shift
      let rest = significand & ((1 << shift) - 1)
      let half = UInt32(1) << (shift - 1)
      if rest > half || (rest == half && h & 1 == 1) { h += 1 }
      return sign | UInt16(h)
    }
    var h = UInt32(e) << 10 | mantissa >> 13
    let rest = mantissa & 0x1fff
    // A carry out of the mantissa bumps the exponent, up to infinity: still correct.
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }
    return sign | UInt16(h)
  }
}
