/// Vector loops for the quantization kernels: runs of elements that share one scale and zero
/// point. Every lane computes exactly what the scalar formula does, so results are bit-identical
/// to `QuantizeLinear`/`DequantizeLinear` element by element.
enum QuantizeRuns {
  /// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer,
  /// half to even (the sum lands where the float spacing is 1).
  static let roundingShift: Float = 12_582_912

  /// Largest grid (hi - lo, |z|) the vector loops take: clamped values stay far below 2^22.
  static let largestGrid: Float = 1_048_576

  /// `dst[i] = (clamp(round(src[i] / s) + z, lo, hi) - z) * s` (round half to even; NaN -> q = 0),
  /// DequantizeLinear(QuantizeLinear(x)). Computed as `clamp(v, lo - z, hi - z)` rounded, times s,
  /// with `v = src[i] / s`: rounding is monotone and fixes the integer bounds, so clamping first
  /// gives the same integers. Needs a grid within `largestGrid`. Plain loops, vectorized by LLVM.
  static func fakeQuantize(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int,
    scale s: Float, zero z: Float, lo: Float, hi: Float
  ) {
    let a = lo - z, b = hi - z, nan = -z, shift = roundingShift
    for i in 0..<count {
      var v = src[i] / s
      v = v < a ? a : v
      v = v > b ? b : v
      v = v != v ? nan : v
      dst[i] = ((v + shift) - shift) * s
    }
  }

  /// `dst[i] = round(src[i] / s)` (half to even) for sources whose quotients are integers of
  /// magnitude below 2^22, as dequantized 8- and 16-bit values are; NaN stays NaN.
  static func roundQuotient(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, scale s: Float) {
    let shift = roundingShift
    for i in 0..<count { dst[i] = (src[i] / s + shift) - shift }
  }

  /// Runs `body(start, count, p)` over `0..<total` split into runs that share the parameter
  /// index p, in parallel: one run for per-tensor parameters, runs of `inner` elements for
  /// per-axis ones (`p = (i / inner) % dim`).
  static func forEachRun(total: Int, uniform: Bool, dim: Int, inner: Int, _ body: @Sendable (Int, Int, Int) -> Void) {
    if uniform {
      let chunk = 16_384
      parallelChunks((total + chunk - 1) / chunk, costPerItem: chunk * 4) { range in
        for c in range { body(c * chunk, min(chunk, total - c * chunk), 0) }
      }
      return
    }
    let runs = total / max(inner, 1)
    parallelChunks(runs, costPerItem: inner * 4) { range in
      for r in range { body(r * inner, inner, r % dim) }
    }
  }
}
