import LowbitQuant
import LowbitTestSupport
import Testing

@Suite struct UniformQuantizerTests {
  static let grids = [2, 3, 4, 8, 16].flatMap { b in [IntegerGrid(bits: b, signed: true), IntegerGrid(bits: b, signed: false)] }

  @Test(arguments: grids) func gridValuesQuantizeToThemselves(_ grid: IntegerGrid) {
    let p = UniformQuantizer.params(lower: -1.3, upper: 2.1, grid: grid, symmetric: false)
    for q in stride(from: grid.qmin, through: grid.qmax, by: max(1, grid.steps / 97)) {
      let x = UniformQuantizer.dequantize(q, p)
      #expect(UniformQuantizer.quantize(x, p, grid) == q)
      #expect(UniformQuantizer.fakeQuantize(UniformQuantizer.fakeQuantize(x, p, grid), p, grid) == x)
    }
  }

  @Test(arguments: grids) func roundTripErrorIsAtMostHalfAStepInsideTheRange(_ grid: IntegerGrid) {
    var g = SeededGenerator(seed: UInt64(grid.bits))
    for symmetric in [false, true] {
      let p = UniformQuantizer.params(lower: -0.7, upper: 3.2, grid: grid, symmetric: symmetric)
      let range = UniformQuantizer.representableRange(p, grid)
      for _ in 0..<500 {
        let x = Float.random(in: range, using: &g)
        // Exact arithmetic gives s/2; Float adds the rounding of s * (q - z), a few ulps of x.
        let slack = 4 * max(abs(x), range.upperBound).ulp
        #expect(abs(x - UniformQuantizer.fakeQuantize(x, p, grid)) <= p.scale / 2 + slack)
      }
    }
  }

  @Test func paramsFollowTheFormulas() {
    let g8 = IntegerGrid(bits: 8, signed: false)
    let p = UniformQuantizer.params(lower: -1, upper: 3, grid: g8, symmetric: false)
    #expect(p.scale == Float(4) / 255)
    #expect(p.zeroPoint == Int((1 / (4 / Float(255))).rounded()))  // round(0 - (-1)/s) = 64
    let s8 = IntegerGrid(bits: 8, signed: true)
    let q = UniformQuantizer.params(lower: -2, upper: 1, grid: s8, symmetric: true)
    #expect(q.scale == Float(2) / 127 && q.zeroPoint == 0)
    let pot = UniformQuantizer.params(lower: -2, upper: 1, grid: s8, symmetric: true, powerOfTwo: true)
    #expect(pot.scale == 1.0 / 32)  // 2/127 = 0.01575 -> 2^-5
    // A range that excludes zero is widened to include it.
    let pos = UniformQuantizer.params(lower: 2, upper: 6, grid: g8, symmetric: false)
    #expect(pos.zeroPoint == 0 && pos.scale == Float(6) / 255)
  }

  @Test func degenerateRangesGiveAValidScale() {
    for grid in Self.grids {
      for (lo, hi) in [(Float(0), Float(0)), (.nan, .nan), (-.infinity, .infinity), (3, 3), (-1e-44, 1e-44)] {
        for symmetric in [false, true] {
          let p = UniformQuantizer.params(lower: lo, upper: hi, grid: grid, symmetric: symmetric)
          #expect(p.scale.isFinite && p.scale > 0)
          #expect((grid.qmin...grid.qmax).contains(p.zeroPoint))
          #expect(UniformQuantizer.fakeQuantize(0, p, grid) == 0)
        }
      }
    }
  }

  @Test func tiesRoundToEvenAsONNXDoes() {
    let grid = IntegerGrid(bits: 8, signed: true)
    let p = QuantParams(scale: 0.5, zeroPoint: 0)
    #expect(UniformQuantizer.quantize(0.25, p, grid) == 0)  // 0.5 -> 0
    #expect(UniformQuantizer.quantize(0.75, p, grid) == 2)  // 1.5 -> 2
    #expect(UniformQuantizer.quantize(-1.25, p, grid) == -2)  // -2.5 -> -2
    #expect(UniformQuantizer.quantize(1000, p, grid) == 127)
    #expect(UniformQuantizer.quantize(-1000, p, grid) == -128)
  }

  @Test func gradientsFollowThePapersFormulas() {
    let grid = IntegerGrid(bits: 4, signed: false)  // [0, 15]
    let p = QuantParams(scale: 0.1, zeroPoint: 3)
    // Inside: x = 0.26 -> x/s = 2.6, round 3, q = 6.
    #expect(QuantizerGradient.input(0.26, p, grid) == 1)
    #expect(abs(QuantizerGradient.scale(0.26, p, grid) - (3 - 0.26 / 0.1)) < 1e-6)
    #expect(QuantizerGradient.zeroPoint(0.26, p, grid) == 0)
    // Below: x = -1 -> round(-10) + 3 = -7 < 0.
    #expect(QuantizerGradient.input(-1, p, grid) == 0)
    #expect(QuantizerGradient.scale(-1, p, grid) == Float(0 - 3))
    #expect(QuantizerGradient.zeroPoint(-1, p, grid) == -0.1)
    // Above: x = 5 -> 50 + 3 > 15.
    #expect(QuantizerGradient.scale(5, p, grid) == Float(15 - 3))
    #expect(QuantizerGradient.zeroPoint(5, p, grid) == -0.1)
  }

  @Test func finiteDifferencesAgreeWithTheScaleGradientAwayFromKinks() {
    // Outside the grid x_hat = s (qmax - z) is linear in s: the difference quotient is exact.
    let grid = IntegerGrid(bits: 8, signed: true)
    let x: Float = 100, h: Float = 1e-3
    let p = QuantParams(scale: 0.05, zeroPoint: 0)
    let plus = UniformQuantizer.fakeQuantize(x, QuantParams(scale: p.scale + h, zeroPoint: 0), grid)
    let minus = UniformQuantizer.fakeQuantize(x, QuantParams(scale: p.scale - h, zeroPoint: 0), grid)
    #expect(abs((plus - minus) / (2 * h) - QuantizerGradient.scale(x, p, grid)) < 1e-2)
  }
}
