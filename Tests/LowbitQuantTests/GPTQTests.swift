import Foundation
import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// `rows` inputs of `k` features that move together: `x = z A + noise`, `z` of `factors` dims.
private func correlatedInputs(rows: Int, k: Int, factors: Int, noise: Float, seed: UInt64) -> [Float] {
  var g = SeededGenerator(seed: seed)
  let a = randomFloats(factors * k, in: -1...1, using: &g)
  var x = [Float](repeating: 0, count: rows * k)
  for r in 0..<rows {
    let z = randomFloats(factors, in: -2...2, using: &g)
    for c in 0..<k {
      var v: Float = 0
      for f in 0..<factors { v += z[f] * a[f * k + c] }
      x[r * k + c] = v + noise * Float.random(in: -1...1, using: &g)
    }
  }
  return x
}

/// `H = 2/n X^T X`.
private func hessian(_ x: [Float], rows: Int, k: Int) -> SymmetricMatrix {
  var h = SymmetricMatrix(zeros: k)
  h.addGram(x, rows: rows)
  h.scale(by: 2 / Double(rows))
  return h
}

/// `||X W - X Q||^2` for `W`, `Q` `[k, n]`.
private func outputError(_ x: [Float], rows: Int, k: Int, n: Int, _ w: [Float], _ q: [Float]) -> Double {
  var total = 0.0
  for r in 0..<rows {
    for c in 0..<n {
      var s = 0.0
      for i in 0..<k { s += Double(x[r * k + i]) * (Double(w[i * n + c]) - Double(q[i * n + c])) }
      total += s * s
    }
  }
  return total
}

/// The grids range setting fits to each group of `groupSize` rows of each column of `w` `[k, n]`.
private func groupParams(_ w: [Float], k: Int, n: Int, groupSize: Int, config: QuantConfig) -> [QuantParams] {
  let groups = (k + groupSize - 1) / groupSize
  var params: [QuantParams] = []
  for g in 0..<groups {
    for c in 0..<n {
      params.append(Calibration.weightParams((g * groupSize..<min((g + 1) * groupSize, k)).map { w[$0 * n + c] }, config: config))
    }
  }
  return params
}

/// GPTQ as the paper's eq. 2-3 state it, with nothing of the implementation's reformulation: the
/// inverse Hessian of the rows left is kept explicitly (Gauss-Jordan, then one elimination step
/// per quantized row), and each row's error moves the other rows left by
/// `-(w_q - quant(w_q)) / [H^-1]_qq (H^-1)_{:,q}`. Rows go in `order`; with `refit`, a group's
/// grids are fitted when its first row comes (identity order only).
private func referenceGPTQ(
  _ w0: [Float], k: Int, n: Int, h: SymmetricMatrix, damping: Double, order: [Int], groupSize: Int,
  params initial: [QuantParams], grid: IntegerGrid, refit: (([Float]) -> QuantParams)?
) -> (integers: [Int], params: [QuantParams]) {
  let mean = h.diagonal.reduce(0, +) / Double(k)
  // [H + λ mean I | I] -> [I | H^-1].
  var a = (0..<k).map { i in (0..<(2 * k)).map { j in j < k ? h[i, j] + (i == j ? damping * mean : 0) : (j - k == i ? 1.0 : 0) } }
  for p in 0..<k {
    let pivot = a[p][p]
    for j in 0..<(2 * k) { a[p][j] /= pivot }
    for i in 0..<k where i != p {
      let f = a[i][p]
      for j in 0..<(2 * k) { a[i][j] -= f * a[p][j] }
    }
  }
  var inverse = a.map { Array($0[k...]) }
  var w = w0.map(Double.init)
  var integers = [Int](repeating: 0, count: k * n), params = initial
  var left = Set(0..<k)
  for r in order {
    let group = r / groupSize
    if let refit, r % groupSize == 0 {
      for c in 0..<n { params[group * n + c] = refit((r..<min(r + groupSize, k)).map { Float(w[$0 * n + c]) }) }
    }
    for c in 0..<n {
      let p = params[group * n + c]
      let q = UniformQuantizer.quantize(Float(w[r * n + c]), p, grid)
      integers[r * n + c] = q
      let e = (w[r * n + c] - Double(UniformQuantizer.dequantize(q, p))) / inverse[r][r]
      for j in left where j != r { w[j * n + c] -= e * inverse[j][r] }
    }
    let d = inverse[r][r]
    let column = inverse.map { $0[r] }, row = inverse[r]
    for i in 0..<k { for j in 0..<k { inverse[i][j] -= column[i] * row[j] / d } }
    left.remove(r)
  }
  return (integers, params)
}

@Suite struct GPTQTests {
  /// K = 4, N = 3: GPTQ's integers and grids are the reference's, whatever the block size
  /// (lazy updates only regroup the same sums), with grids fitted per group as each starts, with
  /// one grid per column, and in act order.
  @Test func tinyLayerMatchesTheDirectFormula() throws {
    let (k, n, rows) = (4, 3, 12)
    let x = correlatedInputs(rows: rows, k: k, factors: 2, noise: 0.3, seed: 5)
    let h = hessian(x, rows: rows, k: k)
    var g = SeededGenerator(seed: 9)
    let w = randomFloats(k * n, in: -1...1, using: &g)
    var config = QuantConfig()
    config.weightBits = 3
    config.weightRange = .minMax
    let grid = config.weightGrid
    let refit: @Sendable ([Float]) -> QuantParams = { [config] in Calibration.weightParams($0, config: config) }
    // (rows per group, grids fitted as each group starts, act order with static groups)
    for (groupSize, fitted, actOrder) in [(2, true, false), (2, false, true), (k, false, false), (k, false, true)] {
      let params = groupParams(w, k: k, n: n, groupSize: groupSize, config: config)
      do {
        let chosen: (@Sendable ([Float]) -> QuantParams)? = fitted ? refit : nil
        var order = Array(0..<k)
        if actOrder { order.sort { h[$0, $0] > h[$1, $1] } }
        let reference = referenceGPTQ(
          w, k: k, n: n, h: h, damping: 0.01, order: order, groupSize: groupSize, params: params, grid: grid,
          refit: chosen)
        for block in [1, 2, 4] {
          var options = GPTQOptions()
          options.blockSize = block
          options.actOrder = actOrder
          let problem = GPTQProblem(
            weights: w, rows: k, columns: n, grid: grid, groupSize: groupSize, params: params, refit: chosen)
          let outcome = try #require(GPTQ.quantize(problem, hessian: h, options: options))
          #expect(outcome.integers == reference.integers, "group \(groupSize) act order \(actOrder) block \(block)")
          #expect(outcome.params == reference.params)
          let values = (0..<(k * n)).map { UniformQuantizer.dequantize(reference.integers[$0], reference.params[($0 / n / groupSize) * n + $0 % n]) }
          #expect(outcome.weights == values)
        }
      }
    }
  }

  /// The same problem at a size where rounding choices matter: the reference still agrees.
  @Test func mediumLayerMatchesTheDirectFormulaWithLazyBlocks() throws {
    let (k, n, rows) = (24, 5, 64)
    let x = correlatedInputs(rows: rows, k: k, factors: 4, noise: 0.1, seed: 11)
    let h = hessian(x, rows: rows, k: k)
    var g = SeededGenerator(seed: 12)
    let w = randomFloats(k * n, in: -1...1, using: &g)
    var config = QuantConfig()
    config.weightBits = 4
    let refit: @Sendable ([Float]) -> QuantParams = { [config] in Calibration.weightParams($0, config: config) }
    let params = groupParams(w, k: k, n: n, groupSize: 8, config: config)
    let reference = referenceGPTQ(
      w, k: k, n: n, h: h, damping: 0.01, order: Array(0..<k), groupSize: 8, params: params, grid: config.weightGrid, refit: refit)
    var options = GPTQOptions()
    options.blockSize = 16
    options.actOrder = false
    let outcome = try #require(GPTQ.quantize(
      GPTQProblem(weights: w, rows: k, columns: n, grid: config.weightGrid, groupSize: 8, params: params, refit: refit), hessian: h,
      options: options))
    #expect(outcome.integers == reference.integers)
    #expect(outcome.params == reference.params)
  }

  /// Strongly correlated inputs: the layer's output error `||X W - X Q||^2` with GPTQ is well
  /// below round to nearest's on the same grids, and the proxy losses are `2/n` times those errors.
  @Test func correlatedInputsLoseLessThanRoundToNearest() throws {
    let (k, n, rows, groupSize) = (64, 24, 512, 16)
    let x = correlatedInputs(rows: rows, k: k, factors: 6, noise: 0.05, seed: 21)
    let h = hessian(x, rows: rows, k: k)
    var g = SeededGenerator(seed: 22)
    let w = randomFloats(k * n, in: -1...1, using: &g)
    var config = QuantConfig()
    config.weightBits = 4
    let params = groupParams(w, k: k, n: n, groupSize: groupSize, config: config)
    let problem = GPTQProblem(
      weights: w, rows: k, columns: n, grid: config.weightGrid, groupSize: groupSize, params: params,
      refit: { [config] in Calibration.weightParams($0, config: config) })
    let outcome = try #require(GPTQ.quantize(problem, hessian: h, options: GPTQOptions()))
    let nearest = (0..<(k * n)).map { UniformQuantizer.fakeQuantize(w[$0], params[($0 / n / groupSize) * n + $0 % n], config.weightGrid) }
    let gptqError = outputError(x, rows: rows, k: k, n: n, w, outcome.weights)
    let nearestError = outputError(x, rows: rows, k: k, n: n, w, nearest)
    #expect(gptqError < 0.25 * nearestError, "GPTQ \(gptqError) vs nearest \(nearestError)")
    #expect(abs(outcome.loss - 2 / Double(rows) * gptqError) <= 1e-6 * outcome.loss)
    #expect(abs(outcome.nearestLoss - 2 / Double(rows) * nearestError) <= 1e-6 * outcome.nearestLoss)
    // Every integer on the grid, and each group's grid one range setting gives some weights.
    #expect(outcome.integers.allSatisfy { (config.weightGrid.qmin...config.weightGrid.qmax).contains($0) })
  }

  /// An input that is always zero: its weights go to 0 and the rest is quantized as usual.
  @Test func deadInputsAreZeroed() throws {
    let (k, n, rows) = (8, 4, 32)
    var x = correlatedInputs(rows: rows, k: k, factors: 3, noise: 0.2, seed: 31)
    for r in 0..<rows { x[r * k + 5] = 0 }
    var g = SeededGenerator(seed: 32)
    let w = randomFloats(k * n, in: -1...1, using: &g)
    var config = QuantConfig()
    config.weightBits = 4
    let params = groupParams(w, k: k, n: n, groupSize: k, config: config)
    let outcome = try #require(GPTQ.quantize(
      GPTQProblem(weights: w, rows: k, columns: n, grid: config.weightGrid, groupSize: k, params: params),
      hessian: hessian(x, rows: rows, k: k), options: GPTQOptions()))
    #expect(outcome.deadInputs == 1)
    #expect((0..<n).allSatisfy { outcome.weights[5 * n + $0] == 0 })
  }
}
