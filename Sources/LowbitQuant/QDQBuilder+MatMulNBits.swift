import LowbitCore

extension QDQBuilder {
  /// Weight-only MatMuls as ONNX Runtime's `com.microsoft` MatMulNBits: a MatMul whose float input
  /// is not dequantized and whose weight `B [K, N]` is a blocked DequantizeLinear (per-group
  /// along K, a power-of-two block of 16 or more, integers of at most 8 bits) becomes one node
  /// holding the weight packed `8 / bits` to a byte, `[N, ceil(K / b), b * bits / 8]`, its scales
  /// `[N * ceil(K / b)]` and, unless every one is `2^(bits-1)`, its packed zero points. `bits` is
  /// the narrowest width ONNX Runtime's CPU kernel runs (2, 4 or 8; it refuses 3, 5, 6 and 7 when
  /// the session starts, ORT 1.32) that holds every integer and zero point: a 2-bit grid is
  /// written at 2 bits, a 3-bit one in 4-bit fields (its values use 8 of their 16 codes).
  /// Signed integers `q` are stored as `q + 2^(bits-1)` with that zero point; the padding past K
  /// takes its block's zero point, so it adds nothing. The dequantized weight is the same bits,
  /// so the file computes what the DequantizeLinear -> MatMul pair did.
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

  /// The `bits` values ONNX Runtime's MatMulNBits CPU kernel runs, narrowest first.
  static let matMulNBitsWidths = [2, 4, 8]

  /// The MatMulNBits inputs of a blocked DequantizeLinear of a 2-D integer weight, if it has that form.
  static func pack(_ dq: Node, in g: Graph) -> (weight: Tensor, scales: Tensor, zeroPoints: Tensor?, k: Int, n: Int, bits: Int, block: Int)? {
    guard dq.opType == "DequantizeLinear", case .int(let block)? = dq.attributes["block_size"],
          block >= 16, block & (block - 1) == 0,
          let q = g.initializers[dq.inputs[0]], q.rank == 2, let range = q.dtype.integerRange,
          dq.inputs.count > 1, let s = g.initializers[dq.inputs[1]], s.dtype == .float32
    else { return nil }
    if case .int(let axis)? = dq.attributes["axis"], axis != 0 { return nil }
    let k = q.shape[0], n = q.shape[1], blocks = (k + block - 1) / block
    guard s.shape == [blocks, n] else { return nil }
    var stored = [Int](repeating: 0, count: blocks * n)  // [blocks, n], in q's type
    if dq.inputs.count > 2, !dq.inputs[2].isEmpty {
      guard let z = g.initializers[dq.inputs[2]], z.shape == [blocks, n], z.dtype == q.dtype else { return nil }
      stored = z.ints.map { Int($0) }
    }
    let values = q.ints
    let lowest = min(values.min().map(Int.init) ?? 0, stored.min() ?? 0), highest = max(values.max().map(Int.init) ?? 0, stored.max() ?? 0)
    // Signed integers move up by 2^(bits-1) onto 0..<2^bits.
    func offset(_ bits: Int) -> Int { range.lowerBound < 0 ? 1 << (bits - 1) : 0 }
    guard let bits = matMulNBitsWidths.first(where: { lowest + offset($0) >= 0 && highest + offset($0) < 1 << $0 }) else { return nil }
    let shift = offset(bits)
    let zero = stored.map { $0 + shift }
    // `values` (each < 2^bits) packed `8 / bits` to a byte, low bits first, as `shape`.
    func bytes(_ values: [Int64], shape: [Int]) -> Tensor {
      let perByte = 8 / bits
      var packed = [Int64](repeating: 0, count: (values.count + perByte - 1) / perByte)
      for (i, v) in values.enumerated() { packed[i / perByte] |= v << Int64((i % perByte) * bits) }
      return Tensor(dtype: .uint8, shape: shape, storage: .int(packed))
    }
    let scales = s.floats
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
