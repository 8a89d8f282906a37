import LowbitCore
import LowbitTestSupport
import Testing

@Suite struct MatMulNBitsTests {
  func run(_ inputs: [Tensor?], _ attributes: [String: Attribute]) throws -> Tensor {
    let node = Node(
      name: "mm", opType: "MatMulNBits", domain: "com.microsoft", inputs: inputs.indices.map { "i\($0)" }, outputs: ["y"],
      attributes: attributes)
    let kernel = try #require(Ops.kernel(for: node))
    let outputs = try kernel(KernelContext(node: node, inputs: inputs, opset: 21))
    return outputs[0]
  }

  /// 4-bit weights, K = 20 in blocks of 16 (the last one padded), explicit packed zero points:
  /// `W[k, n] = (u - z) * s` for the nibble `u` at element k of row n, low nibble first.
  @Test func dequantizesPackedNibblesAndMultiplies() throws {
    let k = 20, n = 3, block = 16, blocks = 2
    var rng = SplitMix64(seed: 3)
    let u = (0..<(n * blocks * block)).map { _ in Int.random(in: 0...15, using: &rng) }
    let z = (0..<(n * blocks)).map { _ in Int.random(in: 0...15, using: &rng) }
    let s = (0..<(n * blocks)).map { _ in Float.random(in: 0.01...0.1, using: &rng) }
    let packed = stride(from: 0, to: u.count, by: 2).map { Int64(u[$0] | u[$0 + 1] << 4) }
    let zPacked = (0..<n).map { row in Int64(z[row * 2] | z[row * 2 + 1] << 4) }  // one byte per row of 2 blocks
    let a = randomTensor([2, k], seed: 5)
    let y = try run(
      [a, Tensor(dtype: .uint8, shape: [n, blocks, block / 2], storage: .int(packed)), Tensor(shape: [n * blocks], floats: s),
       Tensor(dtype: .uint8, shape: [n], storage: .int(zPacked))],
      ["K": .int(k), "N": .int(n), "bits": .int(4), "block_size": .int(block)])
    #expect(y.shape == [2, n])
    for r in 0..<2 {
      for col in 0..<n {
        var sum: Float = 0
        for i in 0..<k {
          let b = i / block
          sum += a.floats[r * k + i] * Float(u[(col * blocks + b) * block + i % block] - z[col * blocks + b]) * s[col * blocks + b]
        }
        #expect(abs(y.floats[r * n + col] - sum) <= 1e-5 * max(1, abs(sum)))
      }
    }
  }

  @Test func refusesInconsistentInputs() throws {
    let a = randomTensor([1, 16], seed: 1)
    let b = Tensor(dtype: .uint8, shape: [2, 1, 8], storage: .int(Array(repeating: 0x88, count: 16)))
    let s = Tensor(shape: [2], floats: [1, 1])
    let good: [String: Attribute] = ["K": .int(16), "N": .int(2), "bits": .int(4), "block_size": .int(16)]
    _ = try run([a, b, s], good)
    for (key, value) in [("K", 0), ("N", 3), ("bits", 3), ("block_size", 24), ("block_size", 8), ("K", 1 << 40)] {
      var attrs = good
      attrs[key] = .int(value)
      #expect(throws: LowbitError.self, "\(key) \(value)") { try run([a, b, s], attrs) }
    }
    #expect(throws: LowbitError.self) { try run([randomTensor([1, 15], seed: 1), b, s], good) }
    #expect(throws: LowbitError.self) { try run([a, b, Tensor(shape: [3], floats: [1, 1, 1])], good) }
  }
}
