import LowbitCore
import LowbitTestSupport
import Testing

@Suite struct FixedPointMultiplierTests {
  /// `apply` is `round(acc * M)` up to M's 31-bit mantissa: it matches the exactly rounded
  /// product wherever that is not within M's relative error of a half.
  @Test func applyRoundsTheExactProduct() {
    var rng = SplitMix64(seed: 7)
    for _ in 0..<20_000 {
      let real = Double.random(in: 1e-7...4, using: &rng)
      let m = FixedPointMultiplier(real)
      #expect(m.mantissa >= 1 << 30 || m.mantissa == 0)
      let represented = Double(m.mantissa) * pow2(m.exponent - 31)
      #expect(abs(represented / real - 1) <= 0x1p-31)
      let acc = Int32.random(in: -5_000_000...5_000_000, using: &rng)
      let exact = Double(acc) * represented
      let frac = exact - exact.rounded(.down)
      guard abs(frac - 0.5) > 1e-6 else { continue }
      #expect(Double(m.apply(acc)) == exact.rounded(.toNearestOrAwayFromZero), "acc \(acc), M \(real)")
    }
  }

  @Test func edgeCases() {
    #expect(FixedPointMultiplier(0).apply(123_456) == 0)
    #expect(FixedPointMultiplier(1e-12).apply(Int32.max) == 0)  // below 2^-31: zero, as TFLite
    let half = FixedPointMultiplier(0.5)
    #expect(half.mantissa == 1 << 30 && half.exponent == 0)
    #expect(half.apply(3) == 2 && half.apply(-3) == -1)  // halves round up
    #expect(FixedPointMultiplier(1).apply(Int32.min) == Int32.min)
    #expect(FixedPointMultiplier(1000).apply(Int32.max) == Int32.max)  // saturates
    // A mantissa that rounds up to 2^31 moves to the next exponent.
    let almostOne = FixedPointMultiplier(1 - 0x1p-40)
    #expect(almostOne.mantissa == 1 << 30 && almostOne.exponent == 1)
  }

  private func pow2(_ e: Int) -> Double { e >= 0 ? Double(1 << e) : 1 / Double(Int64(1) << -e) }
}
