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

  /// `values` (each below 2^bits) packed `8 / bits` to a byte, low bits first.
  func packed(_ values: [Int], bits: Int) -> [Int64] {
    let perByte = 8 / bits
    return stride(from: 0, to: values.count, by: perByte).map { start in
      (0..<perByte).reduce(Int64(0)) { byte, i in start + i < values.count ? byte | Int64(values[start + i] << (i * bits)) : byte }
    }
  }

  /// 2-, 4- and 8-bit weights, K = 20 in blocks of 16 (the last one padded), explicit packed
  /// zero points (each row's start a new byte): `W[k, n] = (u - z) * s` for the `bits`-wide
  /// field `u` at element k of row n, low bits first.
  @Test(arguments: [2, 4, 8])
  func dequantizesPackedFieldsAndMultiplies(bits: Int) throws {
    let k = 20, n = 3, block = 16, blocks = 2
    var rng = SplitMix64(seed: 3)
    let top = (1 << bits) - 1
    let u = (0..<(n * blocks * block)).map { _ in Int.random(in: 0...top, using: &rng) }
    let z = (0..<(n * blocks)).map { _ in Int.random(in: 0...top, using: &rng) }
    let s = (0..<(n * blocks)).map { _ in Float.random(in: 0.01...0.1, using: &rng) }
    let zPacked = (0..<n).flatMap { row in packed(Array(z[(row * blocks)..<(row * blocks + blocks)]), bits: bits) }
    let a = randomTensor([2, k], seed: 5)
    let y = try run(
      [a, Tensor(dtype: .uint8, shape: [n, blocks, block * bits / 8], storage: .int(packed(u, bits: bits))),
       Tensor(shape: [n * blocks], floats: s), Tensor(dtype: .uint8, shape: [zPacked.count], storage: .int(zPacked))],
      ["K": .int(k), "N": .int(n), "bits": .int(bits), "block_size": .int(block)])
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
