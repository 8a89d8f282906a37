import LowbitCore

extension QDQBuilder {
  /// Weight-only MatMuls as ONNX Runtime's `com.microsoft` MatMulNBits: a MatMul whose float input
  /// is not dequantized and whose weight `B [K, N]` is a blocked DequantizeLinear (per-group
  /// along K, a power-of-two block of 16 or more, 4- or 8-bit integers) becomes one node holding
  /// the weight packed two (or one) to a byte, `[N, ceil(K / b), b * bits / 8]`, its scales
  /// `[N * ceil(K / b)]` and, unless every one is `2^(bits-1)`, its packed zero points. Signed
  /// integers `q` are stored as `q + 2^(bits-1)` with that zero point; the padding past K takes
  /// its block's zero point, so it adds nothing. The dequantized weight is the same bits, so the
  /// file computes what the DequantizeLinear -> MatMul pair did.
  public static func usingMatMulNBits(_ graph: Graph) throws -> Graph {
    var g = graph
    let producers = g.producers()
    var changed = false
    for i in g.nodes.indices where g.nodes[i].opType == "MatMul" && g.nodes[i].domain.isEmpty && g.nodes[i].inputs.count == 2 {
      let node = g.nodes[i]
      if let p = producers[node.inputs[0]], g.nodes[p].opType == "DequantizeLinear" { continue }
      guard let p = producers[node.inputs[1]], let packed = pack(g.nodes[p], in: g) else { continue }
      let base = node.inputs[1]
      let names = [g.freshName(base + "_nbits"), g.freshName(base + "_nbits_scales"), g.freshName(base + "_nbits_zero_points")]
      g.initializers[names[0]] = packed.weight
      g.initializers[names[1]] = packed.scales
      var inputs = [node.inputs[0], names[0], names[1]]
      if let z = packed.zeroPoints {
        g.initializers[names[2]] = z
        inputs.append(names[2])
      }
      g.nodes[i] = Node(
        name: node.name, opType: "MatMulNBits", domain: "com.microsoft", inputs: inputs, outputs: node.outputs,
        attributes: [
          "K": .int(packed.k), "N": .int(packed.n), "bits": .int(packed.bits), "block_size": .int(packed.block),
          "accuracy_level": .int(0),
        ])
      changed = true
    }
    guard changed else { return graph }
    g.opsets["com.microsoft"] = 1
    return try g.removingDeadNodes().validated()
  }

  /// The MatMulNBits inputs of a blocked DequantizeLinear of a 2-D integer weight, if it has that form.
  static func pack(_ dq: Node, in g: Graph) -> (weight: Tensor, scales: Tensor, zeroPoints: Tensor?, k: Int, n: Int, bits: Int, block: Int)? {
    guard dq.opType == "DequantizeLinear", case .int(let block)? = dq.attributes["block_size"],
          block >= 16, block & (block - 1) == 0,
          let q = g.initializers[dq.inputs[0]], q.rank == 2, let range = q.dtype.integerRange,
          dq.inputs.count > 1, let s = g.initializers[dq.inputs[1]], s.dtype == .float32
    else { return nil }
    if case .int(let axis)? = dq.attributes["axis"], axis != 0 { return nil }
    let bits: Int
    switch q.dtype {
    case .int4, .uint4: bits = 4
    case .int8, .uint8: bits = 8
    default: return nil
    }
    let k = q.shape[0], n = q.shape[1], blocks = (k + block - 1) / block
    guard s.shape == [blocks, n] else { return nil }
    let shift = range.lowerBound < 0 ? 1 << (bits - 1) : 0  // signed integers move up onto 0..<2^bits
    var zero = [Int](repeating: shift, count: blocks * n)  // [blocks, n]
    if dq.inputs.count > 2, !dq.inputs[2].isEmpty {
      guard let z = g.initializers[dq.inputs[2]], z.shape == [blocks, n], z.dtype == q.dtype else { return nil }
      zero = z.ints.map { Int($0) + shift }
    }
    // Bytes of `values` (each < 2^bits) packed as ONNX packs uint4 (low nibble first) or uint8.
    func bytes(_ values: [Int64], shape: [Int]) -> Tensor {
      let raw = Tensor(dtype: bits == 4 ? .uint4 : .uint8, shape: [values.count], storage: .int(values)).rawBytes
      return Tensor(dtype: .uint8, shape: shape, rawBytes: raw)!
    }
    let values = q.ints, scales = s.floats
    var unsigned = [Int64](repeating: 0, count: n * blocks * block)  // [n, blocks, block]
    var rowScales = [Float](repeating: 0, count: n * blocks)
    for col in 0..<n {
      for b in 0..<blocks {
        rowScales[col * blocks + b] = scales[b * n + col]
        for j in 0..<block {
          let row = b * block + j
          unsigned[(col * blocks + b) * block + j] = Int64(row < k ? Int(values[row * n + col]) + shift : zero[b * n + col])
        }
      }
    }
    var zeroPoints: Tensor?
    if zero.contains(where: { $0 != 1 << (bits - 1) }) {
      // Each column's zero points start a new byte.
      let rowBytes = (blocks * bits + 7) / 8, perRow = rowBytes * 8 / bits
      var z = [Int64](repeating: 0, count: n * perRow)
      for col in 0..<n {
        for b in 0..<blocks { z[col * perRow + b] = Int64(zero[b * n + col]) }
      }
      zeroPoints = bytes(z, shape: [n * rowBytes])
    }
    return (
      bytes(unsigned, shape: [n, blocks, block * bits / 8]), Tensor(shape: [n * blocks], floats: rowScales),
      zeroPoints, k, n, bits, block
    )
  }
}
