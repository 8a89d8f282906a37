import Glibc
import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// Seeded heavy-tailed data: Laplace(0, 1) samples plus a few large outliers.
private func heavyTailed(count: Int, seed: UInt64) -> [Float] {
  var g = SeededGenerator(seed: seed)
  var values = (0..<count).map { _ -> Float in
    let u = Double.random(in: -0.5..<0.5, using: &g)
    return Float((u < 0 ? 1 : -1) * log(1 - 2 * abs(u)))
  }
  for (i, v) in [(7, Float(38)), (101, -31), (555, 25), (999, 29.5)] where i < count {
    values[i] = v
  }
  return values
}

private func params(_ r: ClosedRange<Float>, _ grid: IntegerGrid, _ symmetric: Bool) -> QuantParams
{
  UniformQuantizer.params(
    lower: r.lowerBound, upper: r.upperBound, grid: grid, symmetric: symmetric)
}

/// (grid, symmetric) pairs as lowbit configures them: signed grids are symmetric.
private let schemes: [(IntegerGrid, Bool)] = [
  (IntegerGrid(bits: 4, signed: false), false), (IntegerGrid(bits: 4, signed: true), true),
  (IntegerGrid(bits: 8, signed: false), false), (IntegerGrid(bits: 8, signed: true), true),
]

@Suite struct RangeEstimationTests {
  // (a) MSE against min-max on heavy tails: at most half of min-max's squared error.

  @Test func mseBeatsMinMaxOnHeavyTailedWeightsAt4Bits() {
    let w = heavyTailed(count: 10000, seed: 11)
    for (grid, symmetric) in schemes.prefix(2) {
      let minMax = RangeSearch.weightRange(w, method: .minMax, grid: grid, symmetric: symmetric)
      let mse = RangeSearch.weightRange(w, method: .mse, grid: grid, symmetric: symmetric)
      let eMinMax = RangeSearch.squaredError(w, range: minMax, grid: grid, symmetric: symmetric)
      let eMSE = RangeSearch.squaredError(w, range: mse, grid: grid, symmetric: symmetric)
      #expect(eMSE < 0.5 * eMinMax, "\(grid) symmetric \(symmetric): \(eMSE) vs \(eMinMax)")
      #expect(mse.upperBound < minMax.upperBound)  // the outliers get clipped
    }
  }

  @Test func mseBeatsMinMaxOnHeavyTailedActivationsAt4Bits() throws {
    let x = heavyTailed(count: 20000, seed: 12)
    var observer = RangeObserver(name: "act")
    for b in 0..<10 { observer.observe(Array(x[(b * 2000)..<((b + 1) * 2000)])) }
    for (grid, symmetric) in schemes.prefix(2) {
      let minMax = try observer.range(method: .minMax, grid: grid, symmetric: symmetric)
      let mse = try observer.range(method: .mse, grid: grid, symmetric: symmetric)
      let eMinMax = RangeSearch.squaredError(x, range: minMax, grid: grid, symmetric: symmetric)
      let eMSE = RangeSearch.squaredError(x, range: mse, grid: grid, symmetric: symmetric)
      #expect(eMSE < 0.5 * eMinMax, "\(grid) symmetric \(symmetric): \(eMSE) vs \(eMinMax)")
    }
  }

  /// The histogram's error model is close to the exact error: the observer's MSE range is
  /// within 2% of the exact search's squared error on the same data, at 4 and 8 bits.
  @Test func histogramMSEIsCloseToExactMSE() throws {
    let x = heavyTailed(count: 6000, seed: 13)
    var observer = RangeObserver(name: "act")
    observer.observe(Array(x[..<3000]))
    observer.observe(Array(x[3000...]))
    for (grid, symmetric) in schemes {
      let fromHistogram = try observer.range(method: .mse, grid: grid, symmetric: symmetric)
      let exact = RangeSearch.weightRange(x, method: .mse, grid: grid, symmetric: symmetric)
      let eh = RangeSearch.squaredError(x, range: fromHistogram, grid: grid, symmetric: symmetric)
      let ee = RangeSearch.squaredError(x, range: exact, grid: grid, symmetric: symmetric)
      #expect(eh <= ee * 1.02, "\(grid): histogram \(fromHistogram) \(eh), exact \(exact) \(ee)")
    }
  }

  /// Law: min-max is a candidate, so MSE is never worse than min-max on the values themselves.
  @Test(arguments: [2, 3, 4, 6, 8]) func mseIsNeverWorseThanMinMax(bits: Int) {
    var g = SeededGenerator(seed: UInt64(bits))
    for trial in 0..<6 {
      let n = Int.random(in: 1...300, using: &g)
      let shift = Float(trial % 3 - 1) * 0.7
      let w = (0..<n).map { _ in
        Float.random(in: -1...1, using: &g) * Float.random(in: 0...3, using: &g) + shift
      }
      for (grid, symmetric) in [
        (IntegerGrid(bits: bits, signed: false), false),
        (IntegerGrid(bits: bits, signed: true), true),
      ] {
        let minMax = RangeSearch.weightRange(w, method: .minMax, grid: grid, symmetric: symmetric)
        let mse = RangeSearch.weightRange(w, method: .mse, grid: grid, symmetric: symmetric)
        #expect(
          RangeSearch.squaredError(w, range: mse, grid: grid, symmetric: symmetric)
            <= RangeSearch.squaredError(w, range: minMax, grid: grid, symmetric: symmetric))
      }
    }
  }

  // (b) Min-max and running min-max.

  @Test func minMaxIsTheTrueMinAndMax() throws {
    let x = heavyTailed(count: 3000, seed: 21)
    var observer = RangeObserver(name: "act")
    for b in 0..<3 { observer.observe(Array(x[(b * 1000)..<((b + 1) * 1000)])) }
    let truth = x.min()!...x.max()!
    for (grid, symmetric) in schemes {
      #expect(try observer.range(method: .minMax, grid: grid, symmetric: symmetric) == truth)
      #expect(
        RangeSearch.weightRange(x, method: .minMax, grid: grid, symmetric: symmetric) == truth)
    }
    #expect(observer.count == 3000 && observer.batchCount == 3)
  }

  @Test func runningMinMaxFollowsTheMovingAverage() throws {
    var observer = RangeObserver(name: "act")
    observer.observe([-1, 0.5, 2])  // batch 1: [-1, 2] starts the averages
    observer.observe([-3, 1])  // batch 2: [-3, 1]
    observer.observe([0.25, 4, -0.5])  // batch 3: [-0.5, 4]
    let lower = 0.9 * (0.9 * -1.0 + 0.1 * -3.0) + 0.1 * -0.5  // -1.13
    let upper = 0.9 * (0.9 * 2.0 + 0.1 * 1.0) + 0.1 * 4.0  // 2.11
    let r = try observer.range(
      method: .runningMinMax, grid: IntegerGrid(bits: 8, signed: false), symmetric: false)
    #expect(abs(Double(r.lowerBound) - lower) < 1e-6 && abs(Double(r.upperBound) - upper) < 1e-6)
    #expect(abs(lower - -1.13) < 1e-12 && abs(upper - 2.11) < 1e-12)
    #expect(
      try observer.range(
        method: .minMax, grid: IntegerGrid(bits: 8, signed: false), symmetric: false) == -3...4)
    // A different momentum: r = 0.5 r + 0.5 b.
    var half = RangeObserver(name: "act", momentum: 0.5)
    half.observe([0, 2])
    half.observe([-2, 6])
    #expect(half.runningMinimum == -1 && half.runningMaximum == 4)
  }

  // (c) Percentiles.

  @Test func percentile100IsMinMax() throws {
    let x = heavyTailed(count: 5000, seed: 31)
    var observer = RangeObserver(name: "act")
    observer.observe(Array(x[..<2500]))
    observer.observe(Array(x[2500...]))
    for (grid, symmetric) in schemes {
      let p100 = try observer.range(
        method: .percentile, grid: grid, symmetric: symmetric, percentile: 100)
      let minMax = try observer.range(method: .minMax, grid: grid, symmetric: symmetric)
      let w100 = RangeSearch.weightRange(
        x, method: .percentile, grid: grid, symmetric: symmetric, percentile: 100)
      if symmetric {
        #expect(params(p100, grid, true) == params(minMax, grid, true))
        #expect(params(w100, grid, true) == params(minMax, grid, true))
      } else {
        #expect(p100 == minMax && w100 == minMax)
      }
    }
  }

  @Test func percentile99ClipsTheTopPercent() throws {
    // 10,000 distinct values 0.00, 0.01, ..., 99.99 in a scrambled order, over 4 batches.
    let values = (0..<10000).map { Float(($0 * 7919) % 10000) / 100 }
    var observer = RangeObserver(name: "act")
    for b in 0..<4 { observer.observe(Array(values[(b * 2500)..<((b + 1) * 2500)])) }
    let grid = IntegerGrid(bits: 8, signed: false)
    let r = try observer.range(method: .percentile, grid: grid, symmetric: false, percentile: 99)
    let above = values.filter { $0 > r.upperBound }.count
    let below = values.filter { $0 < r.lowerBound }.count
    // Within one histogram bin (width 2^-4 here, about 6 values) of 1% = 100 values.
    #expect(abs(above - 100) <= 7 && abs(below - 100) <= 7, "\(r): \(below) below, \(above) above")
    // Exact on weights: with h = 9999 p / 100, P_99 = 98.99 + 0.01 * 0.01 = 98.9901 and
    // P_1 = 0.99 + 0.99 * 0.01 = 0.9999.
    let w = RangeSearch.weightRange(
      values, method: .percentile, grid: grid, symmetric: false, percentile: 99)
    #expect(abs(w.upperBound - 98.9901) < 1e-4 && abs(w.lowerBound - 0.9999) < 1e-5)
    // Symmetric: the percentile of |x|.
    let signed = values.map { $0 - 50 }
    let s = RangeSearch.weightRange(
      signed, method: .percentile, grid: IntegerGrid(bits: 8, signed: true), symmetric: true,
      percentile: 99)
    #expect(abs(s.upperBound - 49.5) < 0.01 && s.lowerBound == -s.upperBound)
    var so = RangeObserver(name: "act")
    so.observe(signed)
    let sr = try so.range(
      method: .percentile, grid: IntegerGrid(bits: 8, signed: true), symmetric: true, percentile: 99
    )
    #expect(abs(sr.upperBound - 49.5) < 0.07 && sr.lowerBound == -sr.upperBound)
  }

  // (d) Histogram merging.

  @Test func widerBatchesMergeBinsExactly() throws {
    var g = SeededGenerator(seed: 41)
    let batches: [[Float]] = [
      (0..<1000).map { _ in Float.random(in: 0...1, using: &g) },
      (0..<1000).map { _ in Float.random(in: -10...50, using: &g) },
      (0..<1000).map { _ in Float.random(in: -0.5...0.5, using: &g) },
      (0..<500).map { _ in Float.random(in: -700 ... -600, using: &g) },
    ]
    var observer = RangeObserver(name: "act")
    var widths: [Double] = []
    for b in batches {
      observer.observe(b)
      widths.append(observer.histogram.binWidth)
    }
    let all = batches.flatMap { $0 }
    let h = observer.histogram
    #expect(widths[0] < widths[1] && widths[1] == widths[2] && widths[2] < widths[3])
    #expect(h.totalCount == all.count && observer.count == all.count)
    #expect(observer.minimum == all.min()! && observer.maximum == all.max()!)
    // The merged histogram equals the one built directly at the final width.
    let w = h.binWidth
    #expect(w == Double(sign: .plus, exponent: h.widthExponent, significand: 1))
    var direct = [Int](repeating: 0, count: RangeHistogram.binCount)
    for x in all { direct[Int((Double(x) / w).rounded(.down)) - h.firstBin] += 1 }
    #expect(h.counts == direct)
    #expect(h.lowerEdge(ofBin: 0) <= Double(observer.minimum))
    #expect(h.lowerEdge(ofBin: RangeHistogram.binCount - 1) + w > Double(observer.maximum))
    // The data spans at least half of the bins.
    let used = Int((Double(observer.maximum) / w).rounded(.down)) - h.firstBin + 1
    #expect(used >= RangeHistogram.binCount / 2)
  }

  @Test func extremeAndDegenerateDataGiveFiniteRanges() throws {
    let cases: [[[Float]]] = [
      [[0, 0, 0]],
      [[3, 3], [3]],
      [[-2, -2.5], [-7]],
      [[0], [1e30, -1e30]],
      [[Float.leastNonzeroMagnitude, 0], [2 * Float.leastNonzeroMagnitude]],
      [[1], [Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude]],
      [[1000, 1000.0001], [999.9999]],
    ]
    for batches in cases {
      var observer = RangeObserver(name: "act")
      for b in batches { observer.observe(b) }
      let all = batches.flatMap { $0 }
      #expect(observer.histogram.totalCount == all.count)
      for (grid, symmetric) in schemes {
        for method in RangeMethod.allCases where method.isComputableFromValues {
          for r in [
            try observer.range(method: method, grid: grid, symmetric: symmetric),
            RangeSearch.weightRange(all, method: method, grid: grid, symmetric: symmetric),
          ] {
            #expect(r.lowerBound.isFinite && r.upperBound.isFinite, "\(batches) \(method): \(r)")
            let p = params(r, grid, symmetric)
            #expect(p.scale.isFinite && p.scale > 0)
          }
        }
      }
    }
    var zeros = RangeObserver(name: "zeros")
    zeros.observe([0, 0])
    #expect(
      try zeros.range(method: .mse, grid: IntegerGrid(bits: 8, signed: true), symmetric: true)
        == 0...0)
    #expect(
      RangeSearch.weightRange(
        [], method: .mse, grid: IntegerGrid(bits: 8, signed: true), symmetric: true) == 0...0)
  }

  // (e) Cross-entropy.

  @Test func crossEntropyRangeIsNoWorseThanMinMax() {
    // 300 samples of 10 classes: N(0, 1) logits, the labelled class raised by 4 and, every
    // tenth sample, a confident outlier logit of 25.
    var g = SeededGenerator(seed: 51)
    let classes = 10
    let rows = 300
    var logits: [Float] = []
    for r in 0..<rows {
      var row = (0..<classes).map { _ in Float.random(in: -1.7...1.7, using: &g) }
      row[r % classes] += r % 10 == 0 ? 25 : 4
      logits += row
    }
    for (grid, symmetric) in schemes.prefix(2) {
      let minMax = RangeSearch.weightRange(
        logits, method: .minMax, grid: grid, symmetric: symmetric)
      let ce = RangeSearch.crossEntropyRange(
        logits: logits, classes: classes, grid: grid, symmetric: symmetric)
      let ceMinMax = RangeSearch.crossEntropy(
        logits: logits, classes: classes, range: minMax, grid: grid, symmetric: symmetric)
      let ceBest = RangeSearch.crossEntropy(
        logits: logits, classes: classes, range: ce, grid: grid, symmetric: symmetric)
      #expect(ceBest <= ceMinMax, "\(ce): \(ceBest) vs min-max \(ceMinMax)")
      // The float prediction survives quantization in every row.
      let p = params(ce, grid, symmetric)
      for r in 0..<rows {
        let row = logits[(r * classes)..<((r + 1) * classes)]
        let q = row.map { UniformQuantizer.fakeQuantize($0, p, grid) }
        #expect(q.firstIndex(of: q.max()!) == r % classes)
      }
    }
  }

  // (f) BN-based.

  @Test func batchNormRangeFollowsTheFormula() {
    let gamma: [Float] = [0.5, -2, 1.5, 0.1]
    let beta: [Float] = [1, 0.5, -3, 2]
    // lower = min(1 - 3, 0.5 - 12, -3 - 9, 2 - 0.6) = -12, upper = max(4, 12.5, 6, 2.6) = 12.5
    #expect(
      RangeSearch.batchNormRange(gamma: gamma, beta: beta, followedByReLU: false) == -12...12.5)
    #expect(RangeSearch.batchNormRange(gamma: gamma, beta: beta, followedByReLU: true) == 0...12.5)
    // alpha = 2: lower = min(0, -3.5, -6, 1.8) = -6, upper = max(2, 4.5, 0, 2.2) = 4.5
    #expect(
      RangeSearch.batchNormRange(gamma: gamma, beta: beta, alpha: 2, followedByReLU: false)
        == -6...4.5)
    // All channels negative after ReLU: 0...0.
    #expect(RangeSearch.batchNormRange(gamma: [1], beta: [-10], followedByReLU: true) == 0...0)
    #expect(RangeSearch.batchNormRange(gamma: [], beta: [], followedByReLU: false) == 0...0)
  }

  @Test func batchNormRangeReadsFoldedStatistics() throws {
    let graph = Graph(
      nodes: [
        Node(name: "conv", opType: "Conv", inputs: ["x", "w"], outputs: ["c"]),
        Node(
          name: "bn", opType: "BatchNormalization", inputs: ["c", "g", "b", "m", "v"],
          outputs: ["y"]),
      ],
      inputs: [
        ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(2), .fixed(2), .fixed(2)])
      ],
      outputs: [ValueInfo(name: "y")],
      initializers: [
        "w": Tensor(shape: [2, 2, 1, 1], floats: [1, 2, 3, 4]),
        "g": Tensor(shape: [2], floats: [0.5, -2]), "b": Tensor(shape: [2], floats: [1, 0.5]),
        "m": Tensor(shape: [2], floats: [0.1, 0.2]), "v": Tensor(shape: [2], floats: [1, 4]),
      ])
    let stats = try #require(try graph.foldingBatchNorm().statistics["conv"])
    // [min(1 - 3, 0.5 - 12), max(1 + 3, 0.5 + 12)]: the mean and variance play no part.
    #expect(RangeSearch.batchNormRange(stats, followedByReLU: false) == -11.5...12.5)
    #expect(RangeSearch.batchNormRange(stats, alpha: 1, followedByReLU: true) == 0...2.5)
  }

  // (g) Non-finite data and misuse.

  @Test func nonFiniteValuesMakeRangeThrowNamingTheTensor() {
    var observer = RangeObserver(name: "layer3.relu_out")
    observer.observe([1, 2, 3])
    observer.observe([.nan, 4, .infinity])
    #expect(observer.nanCount == 1 && observer.infinityCount == 1 && observer.count == 4)
    #expect(observer.maximum == 4)
    for method in RangeMethod.allCases where method.isComputableFromValues {
      do {
        _ = try observer.range(
          method: method, grid: IntegerGrid(bits: 8, signed: false), symmetric: false)
        Issue.record("\(method) should throw")
      } catch let e as LowbitError {
        #expect(e.kind == .invalidInput)
        #expect(e.description.contains("'layer3.relu_out'") && e.description.contains("NaN"))
      } catch {
        Issue.record("unexpected \(error)")
      }
    }
    #expect(throws: LowbitError.self) { try observer.checkFinite() }
    #expect(throws: LowbitError.self) { try RangeObserver(name: "never").checkFinite() }
  }

  @Test func methodsThatNeedMoreThanValuesThrowFromTheObserver() {
    var observer = RangeObserver(name: "logits")
    observer.observe([1, 2])
    for (method, hint) in [
      (RangeMethod.crossEntropy, "crossEntropyRange"), (.bnBased, "batchNormRange"),
    ] {
      do {
        _ = try observer.range(
          method: method, grid: IntegerGrid(bits: 8, signed: false), symmetric: false)
        Issue.record("\(method) should throw")
      } catch let e as LowbitError {
        #expect(
          e.kind == .invalidArgument && e.message.contains(hint) && e.message.contains("'logits'"))
      } catch {
        Issue.record("unexpected \(error)")
      }
    }
    #expect(throws: LowbitError.self) {
      try observer.range(
        method: .percentile, grid: IntegerGrid(bits: 8, signed: false), symmetric: false,
        percentile: 0)
    }
    #expect(
      RangeMethod.allCases.filter(\.isComputableFromValues) == [
        .minMax, .runningMinMax, .percentile, .mse,
      ])
    #expect(
      RangeMethod(rawValue: "cross-entropy") == .crossEntropy
        && RangeMethod.bnBased.rawValue == "bn-based")
  }

  @Test func bufferAndArrayObservationsAgree() {
    let x = heavyTailed(count: 1000, seed: 61)
    var a = RangeObserver(name: "a")
    var b = RangeObserver(name: "a")
    a.observe(x)
    x.withUnsafeBufferPointer { b.observe($0) }
    #expect(a == b)
  }
}
