import Glibc
import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

/// Softmax of `x` along `axis` by the textbook formula, in Double.
private func referenceSoftmax(_ x: Tensor, axis: Int) -> [Float] {
  let dim = x.shape[axis]
  let inner = x.shape[(axis + 1)...].reduce(1, *)
  var out = [Float](repeating: 0, count: x.count)
  for o in 0..<(x.count / (dim * inner)) {
    for i in 0..<inner {
      let positions = (0..<dim).map { o * dim * inner + $0 * inner + i }
      let lane = positions.map { Double(x.floats[$0]) }
      let m = lane.max()!
      let sum = lane.reduce(0) { $0 + exp($1 - m) }
      for (p, v) in zip(positions, lane) { out[p] = Float(exp(v - m) / sum) }
    }
  }
  return out
}

@Suite("Softmax, LogSoftmax, LayerNormalization, Dropout")
struct SoftmaxLayerNormTests {
  @Test func softmaxRowsSumToOne() throws {
    let x = randomTensor([4, 7], seed: 1, in: -5...5)
    let y = try H.run1("Softmax", [x])
    for r in 0..<4 {
      let row = y.floats[(r * 7)..<((r + 1) * 7)]
      #expect(abs(row.reduce(0, +) - 1) < 1e-6)
      #expect(row.allSatisfy { $0 > 0 })
    }
    #expect(maxRelativeError(y.floats, referenceSoftmax(x, axis: 1)) < 1e-6)
  }

  @Test("Softmax along every axis of a 3-D tensor", arguments: [0, 1, 2, -2])
  func softmaxAlongAxis(axis: Int) throws {
    let x = randomTensor([2, 3, 4], seed: 2, in: -3...3)
    let y = try H.run1("Softmax", [x], attributes: ["axis": .int(axis)])
    #expect(maxRelativeError(y.floats, referenceSoftmax(x, axis: axis < 0 ? axis + 3 : axis)) < 1e-6)
  }

  @Test func softmaxIsStableForLargeInputs() throws {
    let y = try H.run1("Softmax", [H.floats([3], [1000, 1000, -1000])])
    #expect(y.floats == [0.5, 0.5, 0])
    let l = try H.run1("LogSoftmax", [H.floats([2], [1000, 0])])
    #expect(l.floats[0] == 0 && l.floats[1] == -1000)
  }

  @Test func logSoftmaxIsLogOfSoftmax() throws {
    let x = randomTensor([3, 5, 2], seed: 3, in: -4...4)
    let s = try H.run1("Softmax", [x], attributes: ["axis": .int(1)])
    let l = try H.run1("LogSoftmax", [x], attributes: ["axis": .int(1)])
    #expect(maxRelativeError(l.floats, s.floats.map { logf($0) }) < 1e-5)
  }

  @Test func opset11SoftmaxFlattensFromTheAxis() throws {
    let x = randomTensor([2, 3, 4], seed: 4)
    let y = try H.run1("Softmax", [x], opset: 11)
    let flat = x.reshaped([2, 12])
    #expect(maxRelativeError(y.floats, referenceSoftmax(flat, axis: 1)) < 1e-6)
    #expect(y.shape == [2, 3, 4])
  }

  @Test func softmaxEdgeCases() throws {
    #expect(try H.run1("Softmax", [H.floats([2, 0], [])]).shape == [2, 0])
    #expect(try H.run1("Softmax", [Tensor(scalar: 3)]).floats == [1])
    #expect(H.throwsNodeError { try H.run1("Softmax", [H.floats([2], [1, 2])], attributes: ["axis": .int(1)]) })
    #expect(H.throwsNodeError { try H.run1("Softmax", [H.ints([1, 2])]) })
  }

  @Test func largeSoftmaxMatchesReference() throws {
    let x = randomTensor([64, 1000], seed: 5, in: -8...8)
    let y = try H.run1("Softmax", [x])
    #expect(maxRelativeError(y.floats, referenceSoftmax(x, axis: 1)) < 1e-5)
  }

  // MARK: LayerNormalization

  /// `(x - mean) / sqrt(var + eps) * scale + bias` per row of `n`.
  private func referenceLayerNorm(_ x: [Float], n: Int, scale: [Float], bias: [Float], eps: Double) -> [Float] {
    var out: [Float] = []
    for r in 0..<(x.count / n) {
      let row = x[(r * n)..<((r + 1) * n)].map { Double($0) }
      let mean = row.reduce(0, +) / Double(n)
      let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
      for (j, v) in row.enumerated() {
        out.append(Float((v - mean) / (variance + eps).squareRoot() * Double(scale[j]) + Double(bias[j])))
      }
    }
    return out
  }

  @Test func layerNormMatchesDirectFormula() throws {
    let x = randomTensor([2, 3, 8], seed: 6, in: -3...3)
    let scale = randomTensor([8], seed: 7)
    let bias = randomTensor([8], seed: 8)
    let y = try H.run1("LayerNormalization", [x, scale, bias])
    let ref = referenceLayerNorm(x.floats, n: 8, scale: scale.floats, bias: bias.floats, eps: 1e-5)
    #expect(maxRelativeError(y.floats, ref) < 1e-5)
  }

  @Test func layerNormOverSeveralAxesWithStatistics() throws {
    let x = randomTensor([2, 3, 4], seed: 9)
    let scale = randomTensor([3, 4], seed: 10)
    let outs = try H.run("LayerNormalization", [x, scale], attributes: ["axis": .int(1), "epsilon": .float(1e-3)], outputs: 3)
    let ref = referenceLayerNorm(x.floats, n: 12, scale: scale.floats, bias: [Float](repeating: 0, count: 12), eps: 1e-3)
    #expect(maxRelativeError(outs[0].floats, ref) < 1e-5)
    #expect(outs[1].shape == [2, 1, 1] && outs[2].shape == [2, 1, 1])
    let mean0 = x.floats[0..<12].reduce(0, +) / 12
    #expect(abs(outs[1].floats[0] - mean0) < 1e-6)
    let var0 = x.floats[0..<12].reduce(0) { $0 + ($1 - mean0) * ($1 - mean0) } / 12
    #expect(abs(outs[2].floats[0] - 1 / (var0 + 1e-3).squareRoot()) < 1e-4)
  }

  @Test func layerNormBroadcastsScaleAndRejectsBadShapes() throws {
    let x = randomTensor([2, 4], seed: 11)
    let y = try H.run1("LayerNormalization", [x, H.floats([1], [2])])
    let plain = try H.run1("LayerNormalization", [x, H.floats([4], [1, 1, 1, 1])])
    #expect(maxRelativeError(y.floats, plain.floats.map { $0 * 2 }) < 1e-6)
    #expect(H.throwsNodeError { try H.run1("LayerNormalization", [x, H.floats([3], [1, 1, 1])]) })
    #expect(H.throwsNodeError { try H.run1("LayerNormalization", [x, H.floats([2, 4], [Float](repeating: 1, count: 8))], attributes: ["axis": .int(-1)]) })
    #expect(H.throwsNodeError { try H.run1("LayerNormalization", [x, H.floats([4], [1, 1, 1, 1])], attributes: ["axis": .int(2)]) })
  }

  @Test func layerNormOfConstantRowIsBias() throws {
    let y = try H.run1("LayerNormalization", [H.floats([1, 3], [5, 5, 5]), H.floats([3], [1, 1, 1]), H.floats([3], [1, 2, 3])])
    #expect(y.floats == [1, 2, 3])
  }

  // MARK: Dropout

  @Test func dropoutIsIdentityAtInference() throws {
    let x = randomTensor([2, 3], seed: 12)
    let outs = try H.run("Dropout", [x, Tensor(scalar: 0.3)], outputs: 2)
    #expect(outs[0] == x)
    #expect(outs[1].dtype == .bool && outs[1].bools == [Bool](repeating: true, count: 6))
    let off = try H.run("Dropout", [x, nil, H.bools([], [false])], outputs: 1)
    #expect(off[0] == x)
    #expect(H.throwsNodeError { try H.run("Dropout", [x, Tensor(scalar: 0.5), H.bools([], [true])]) })
  }
}
