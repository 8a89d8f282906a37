import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// Embedding tables in int8 rows (`EmbeddingTables`): the rewritten Gather equals
/// `DequantizeLinear(Q, s, axis 0)` followed by the original Gather, every row's grid is its own
/// `max |row| / 127`, and a table something else reads stays float.
@Suite struct EmbeddingTablesTests {
  static let (vocabulary, width) = (12, 6)

  /// `e = Gather(T, ids)`, `p = Gather(P, ids)`, `y = (e + p) W`, and a third table `U` read by
  /// a Gather and by the output projection `z = Gather(U, ids) U^T` (tied embeddings). Row 3 of T
  /// is 40 times the rest (one grid per table would be set by it), row 5 is zero.
  static func graph() -> Graph {
    var t = randomTensor([vocabulary, width], seed: 5).floats
    for j in 0..<width {
      t[3 * width + j] *= 40
      t[5 * width + j] = 0
    }
    return Graph(
      nodes: [
        Node(name: "embed", opType: "Gather", inputs: ["T", "ids"], outputs: ["e"]),
        Node(name: "position", opType: "Gather", inputs: ["P", "ids"], outputs: ["p"]),
        Node(name: "sum", opType: "Add", inputs: ["e", "p"], outputs: ["h"]),
        Node(name: "fc", opType: "MatMul", inputs: ["h", "W"], outputs: ["y"]),
        Node(name: "tied", opType: "Gather", inputs: ["U", "ids"], outputs: ["u"]),
        Node(name: "transpose", opType: "Transpose", inputs: ["U"], outputs: ["Ut"], attributes: ["perm": .ints([1, 0])]),
        Node(name: "head", opType: "MatMul", inputs: ["u", "Ut"], outputs: ["z"]),
      ],
      inputs: [ValueInfo(name: "ids", dtype: .int64, shape: [.symbol("N"), .fixed(4)])],
      outputs: [ValueInfo(name: "y", dtype: .float32), ValueInfo(name: "z", dtype: .float32)],
      initializers: [
        "T": Tensor(shape: [vocabulary, width], floats: t), "P": randomTensor([vocabulary, width], seed: 6),
        "W": randomTensor([width, 3], seed: 7), "U": randomTensor([vocabulary, width], seed: 8),
      ])
  }

  @Test func gatheredRowsEqualThePerRowDequantizedTable() throws {
    let g = Self.graph()
    let (q, records) = EmbeddingTables.quantize(g)
    #expect(records.map(\.table) == ["P", "T"])
    #expect(q.initializers["T"] == nil && q.initializers["U"] != nil, "the tied table stays float")
    let ints = try #require(q.initializers["T_int8_rows"]), scales = try #require(q.initializers["T_row_scales"])
    #expect(ints.dtype == .int8 && ints.shape == [Self.vocabulary, Self.width] && scales.shape == [Self.vocabulary, 1])
    let table = g.initializers["T"]!.floats
    for v in 0..<Self.vocabulary {
      let row = table[v * Self.width..<(v + 1) * Self.width]
      let largest = row.map(abs).max()!
      #expect(scales.floats[v] == (largest > 0 ? largest / 127 : 1))
      #expect(ints.ints[v * Self.width..<(v + 1) * Self.width].map { abs($0) }.max()! == (largest > 0 ? 127 : 0))
      for (j, x) in zip(row.indices, row) {
        #expect(abs(x - scales.floats[v] * Float(ints.ints[j])) <= scales.floats[v] / 2 * 1.0001)
      }
    }
    // The reference: DequantizeLinear along axis 0 of each stored table, then the Gather.
    var reference = g
    for table in ["T", "P"] {
      let s = try #require(q.initializers[table + "_row_scales"])
      reference.initializers[table] = nil
      reference.initializers[table + "q"] = q.initializers[table + "_int8_rows"]
      reference.initializers[table + "s"] = Tensor(shape: [Self.vocabulary], floats: s.floats)
      reference.initializers[table + "z"] = Tensor(dtype: .int8, shape: [Self.vocabulary], storage: .int(Array(repeating: 0, count: Self.vocabulary)))
      reference.nodes.insert(Node(
        name: "dq" + table, opType: "DequantizeLinear", inputs: [table + "q", table + "s", table + "z"], outputs: [table],
        attributes: ["axis": .int(0)]), at: 0)
    }
    // Every id, also counted from the end.
    let ids = Tensor(dtype: .int64, shape: [3, 4], storage: .int([0, 3, 5, 11, -1, -9, 2, 7, 3, 3, 10, 1]))
    let ours = try Interpreter(try q.validated()).run(["ids": ids]), expected = try Interpreter(try reference.validated()).run(["ids": ids])
    #expect(ours["y"]!.floats == expected["y"]!.floats)
    #expect(ours["z"]!.floats == expected["z"]!.floats)
  }

  @Test func onByDefaultForOnnxRuntimeOnly() {
    #expect(QuantConfig().embeddingTables)
    for target in [DeploymentTarget.tensorrt, .openvino, .qnn] { #expect(!QuantConfig(target: target).embeddingTables) }
  }
}
