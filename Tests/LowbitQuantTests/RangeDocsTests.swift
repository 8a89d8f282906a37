import LowbitQuant
import Testing

/// Recomputes every worked example of docs/range-setting.md. The numbers are written here by
/// hand, the same as in the document: when one of these fails, fix the code or the document
/// (and this test) together.
@Suite struct RangeDocsTests {
  static let x: [Float] = [-1.0, -0.25, 0, 0.1, 0.2, 0.5, 0.9, 4.0]
  static let unsigned4 = IntegerGrid(bits: 4, signed: false)
  static let signed4 = IntegerGrid(bits: 4, signed: true)

  /// Checks a range to 1e-6, its scale to 1e-6 relative, the zero point exactly and, when
  /// given, the squared error on `x` to 1e-6.
  private func check(
    _ r: ClosedRange<Float>, _ lower: Float, _ upper: Float, scale: Float, zeroPoint: Int,
    error: Double? = nil, grid: IntegerGrid, symmetric: Bool, powerOfTwo: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(
      abs(r.lowerBound - lower) < 1e-6 && abs(r.upperBound - upper) < 1e-6,
      "range \(r)", sourceLocation: sourceLocation)
    let p = UniformQuantizer.params(
      lower: r.lowerBound, upper: r.upperBound, grid: grid, symmetric: symmetric,
      powerOfTwo: powerOfTwo)
    #expect(
      abs(p.scale - scale) <= 1e-6 * scale, "scale \(p.scale)", sourceLocation: sourceLocation)
    #expect(p.zeroPoint == zeroPoint, "zero point \(p.zeroPoint)", sourceLocation: sourceLocation)
    if let error {
      let e = RangeSearch.squaredError(
        Self.x, range: r, grid: grid, symmetric: symmetric, powerOfTwo: powerOfTwo)
      #expect(abs(e - error) < 1e-6, "squared error \(e)", sourceLocation: sourceLocation)
    }
  }

  @Test func minMaxAndTheFormulas() throws {
    let r = RangeSearch.weightRange(Self.x, method: .minMax, grid: Self.unsigned4, symmetric: false)
    check(
      r, -1, 4, scale: 1.0 / 3, zeroPoint: 3, error: 0.0725, grid: Self.unsigned4, symmetric: false)
    let p = UniformQuantizer.params(lower: -1, upper: 4, grid: Self.unsigned4, symmetric: false)
    let xHat = Self.x.map { UniformQuantizer.fakeQuantize($0, p, Self.unsigned4) }
    let expected: [Float] = [-1, -1.0 / 3, 0, 0, 1.0 / 3, 2.0 / 3, 1, 4]
    #expect(zip(xHat, expected).allSatisfy { abs($0 - $1) < 1e-6 })
    // Power of two: 1/3 rounds up to 0.5, z = round(1 / 0.5) = 2.
    check(
      r, -1, 4, scale: 0.5, zeroPoint: 2, grid: Self.unsigned4, symmetric: false, powerOfTwo: true)
    // Signed symmetric grid [-8, 7]: s = 4 / 7.
    check(
      r, -1, 4, scale: 4.0 / 7, zeroPoint: 0, error: 0.1969899, grid: Self.signed4, symmetric: true)
    var observer = RangeObserver(name: "x")
    observer.observe(Self.x)
    #expect(try observer.range(method: .minMax, grid: Self.unsigned4, symmetric: false) == r)
  }

  @Test func runningMinMax() throws {
    var observer = RangeObserver(name: "x")
    observer.observe([-1, -0.25, 0, 0.1])
    observer.observe([0.2, 0.5, 0.9, 4.0])
    let r = try observer.range(method: .runningMinMax, grid: Self.unsigned4, symmetric: false)
    check(r, -0.88, 0.49, scale: 1.37 / 15, zeroPoint: 10, grid: Self.unsigned4, symmetric: false)
    let e = RangeSearch.squaredError(Self.x, range: r, grid: Self.unsigned4, symmetric: false)
    #expect(abs(e - 12.76) < 0.005)
    let p = UniformQuantizer.params(
      lower: r.lowerBound, upper: r.upperBound, grid: Self.unsigned4, symmetric: false)
    #expect(abs(UniformQuantizer.fakeQuantize(4, p, Self.unsigned4) - 0.457) < 0.0005)
  }

  @Test func percentile() throws {
    let r = RangeSearch.weightRange(
      Self.x, method: .percentile, grid: Self.unsigned4, symmetric: false, percentile: 90)
    check(r, -0.475, 1.83, scale: 2.305 / 15, zeroPoint: 3, grid: Self.unsigned4, symmetric: false)
    let e = RangeSearch.squaredError(Self.x, range: r, grid: Self.unsigned4, symmetric: false)
    #expect(abs(e - 4.95) < 0.005)
    let s = RangeSearch.weightRange(
      Self.x, method: .percentile, grid: Self.signed4, symmetric: true, percentile: 90)
    check(s, -1.9, 1.9, scale: 1.9 / 7, zeroPoint: 0, grid: Self.signed4, symmetric: true)
    // The observer's histogram percentile on the same 8 values (two batches).
    var observer = RangeObserver(name: "x")
    observer.observe(Array(Self.x[..<4]))
    observer.observe(Array(Self.x[4...]))
    #expect(
      try observer.range(
        method: .percentile, grid: Self.unsigned4, symmetric: false, percentile: 90)
        == -0.996875...4.0)
  }

  @Test func mse() throws {
    let r = RangeSearch.weightRange(Self.x, method: .mse, grid: Self.unsigned4, symmetric: false)
    check(
      r, -0.92, 4.0, scale: 0.328, zeroPoint: 3, error: 0.0682120, grid: Self.unsigned4,
      symmetric: false)
    let p = UniformQuantizer.params(
      lower: r.lowerBound, upper: r.upperBound, grid: Self.unsigned4, symmetric: false)
    let xHat = Self.x.map { UniformQuantizer.fakeQuantize($0, p, Self.unsigned4) }
    let expected: [Float] = [-0.984, -0.328, 0, 0, 0.328, 0.656, 0.984, 3.936]
    #expect(zip(xHat, expected).allSatisfy { abs($0 - $1) < 1e-6 })
    let s = RangeSearch.weightRange(Self.x, method: .mse, grid: Self.signed4, symmetric: true)
    check(
      s, -3.88, 3.88, scale: 3.88 / 7, zeroPoint: 0, error: 0.1851368, grid: Self.signed4,
      symmetric: true)
    // "A full 100 x 100 search finds the same pair."
    var best = (error: Double.infinity, i: 0, j: 0)
    for i in 1...100 {
      for j in 1...100 {
        let c = (-Float(i) / 100)...(4 * Float(j) / 100)
        let e = RangeSearch.squaredError(Self.x, range: c, grid: Self.unsigned4, symmetric: false)
        if e < best.error { best = (e, i, j) }
      }
    }
    #expect(best.i == 92 && best.j == 100)
    // The observer's histogram gives the same range.
    var observer = RangeObserver(name: "x")
    observer.observe(Array(Self.x[..<4]))
    observer.observe(Array(Self.x[4...]))
    #expect(try observer.range(method: .mse, grid: Self.unsigned4, symmetric: false) == r)
  }

  @Test func crossEntropy() {
    let logits: [Float] = [6.0, 1.0, 0.5, -2.0, 0.5, 2.5, 2.0, -1.0]
    let g = Self.unsigned4
    func ce(_ r: ClosedRange<Float>) -> Double {
      RangeSearch.crossEntropy(logits: logits, classes: 4, range: r, grid: g, symmetric: false)
    }
    let entropy = 0.5124835
    let minMax = RangeSearch.weightRange(logits, method: .minMax, grid: g, symmetric: false)
    check(minMax, -2, 6, scale: 8.0 / 15, zeroPoint: 4, grid: g, symmetric: false)
    #expect(abs(ce(minMax) - 0.5130670) < 1e-6 && abs(ce(minMax) - entropy - 0.000583) < 1e-6)
    let mse = RangeSearch.weightRange(logits, method: .mse, grid: g, symmetric: false)
    check(mse, -1.94, 6.0, scale: 7.94 / 15, zeroPoint: 4, grid: g, symmetric: false)
    #expect(abs(ce(mse) - 0.5130051) < 1e-6 && abs(ce(mse) - entropy - 0.000522) < 1e-6)
    let best = RangeSearch.crossEntropyRange(logits: logits, classes: 4, grid: g, symmetric: false)
    check(best, -1.58, 5.94, scale: 7.52 / 15, zeroPoint: 3, grid: g, symmetric: false)
    #expect(abs(ce(best) - 0.5125073) < 1e-6 && abs(ce(best) - entropy - 0.000024) < 1e-6)
    // H(p): the CE of an (almost) exact 16-bit quantizer approaches it.
    let fine = RangeSearch.crossEntropy(
      logits: logits, classes: 4, range: -6...6, grid: IntegerGrid(bits: 16, signed: true),
      symmetric: true)
    #expect(abs(fine - entropy) < 1e-5)
    let p = UniformQuantizer.params(
      lower: best.lowerBound, upper: best.upperBound, grid: g, symmetric: false)
    let xHat = logits.map { UniformQuantizer.fakeQuantize($0, p, g) }
    let expected: [Float] = [6.016, 1.003, 0.501, -1.504, 0.501, 2.507, 2.005, -1.003]
    #expect(zip(xHat, expected).allSatisfy { abs($0 - $1) < 0.0005 })
  }

  @Test func batchNorm() {
    let gamma: [Float] = [1.0, -0.5, 2.0]
    let beta: [Float] = [0.5, 0.1, -1.0]
    let r = RangeSearch.batchNormRange(gamma: gamma, beta: beta, followedByReLU: false)
    check(r, -13, 11, scale: 1.6, zeroPoint: 8, grid: Self.unsigned4, symmetric: false)
    let relu = RangeSearch.batchNormRange(gamma: gamma, beta: beta, followedByReLU: true)
    check(relu, 0, 11, scale: 11.0 / 15, zeroPoint: 0, grid: Self.unsigned4, symmetric: false)
  }
}
