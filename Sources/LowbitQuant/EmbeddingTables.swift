import LowbitCore

/// Embedding tables stored in 8 bits, one grid per row.
///
/// A Gather along axis 0 from a float constant table `T` of shape `[V, D]` (token, position and
/// segment embeddings) reads no activation grid and is no layer, so quantizer placement leaves it
/// float, and in a BERT-size model it is half the file. Each table read only by such Gathers is
/// replaced by symmetric int8 rows,
///
///     s_v = max_j |T[v, j]| / 127,   Q[v, j] = round(T[v, j] / s_v)   (s_v = 1 for a zero row),
///
/// and the Gather dequantizes only the rows it picks: `Gather(Q, ids)` -> Cast -> Mul by
/// `Gather(S, ids)`, with `S` shaped `[V, 1]` so that the gathered scales broadcast over `D`.
/// That is `DequantizeLinear(Q, s, axis 0)` followed by the Gather, value for value, without
/// dequantizing the whole table on every run (ONNX Runtime moves a DequantizeLinear past a
/// Gather only when it has one scale). One scale per row keeps each token's grid as fine as its
/// own values need: an 8-bit grid over a whole table is set by its largest entry.
public enum EmbeddingTables {
  /// One quantized table.
  public struct Record: Sendable, Equatable, Codable {
    public var table: String
    public var rows: Int
    public var columns: Int
    /// `max |T - s_v Q|` over the table.
    public var maxError: Float
  }

  /// `graph` with every eligible table in int8 rows, and what was done. A table also read by
  /// anything but a Gather along axis 0 (a tied output projection), not 2-D, or holding a
  /// non-finite value stays float.
  public static func quantize(_ graph: Graph) -> (graph: Graph, records: [Record]) {
    let grid = IntegerGrid(bits: 8, signed: true, narrow: true)
    var g = graph
    let readers = graph.consumers()
    var records: [Record] = []
    var after: [String: [Node]] = [:]  // inserted once, at the end: node indices stay those of `graph`
    for (name, t) in graph.initializers.sorted(by: { $0.key < $1.key }) where t.dtype.isFloatingPoint && t.rank == 2 {
      guard let r = readers[name], !r.isEmpty, !graph.outputs.contains(where: { $0.name == name }),
            r.allSatisfy({ graph.nodes[$0].opType == "Gather" && graph.nodes[$0].inputs.first == name
              && (graph.nodes[$0].attributes["axis"] ?? .int(0)) == .int(0) && graph.nodes[$0].inputs[1] != name })
      else { continue }
      let values = t.floats
      guard values.allSatisfy(\.isFinite) else { continue }
      let (rows, columns) = (t.shape[0], t.shape[1])
      let q = TensorQuantizer(grid: grid, symmetric: true, granularity: .perChannel(axis: 0), params: (0..<rows).map { v in
        let largest = values[v * columns..<(v + 1) * columns].map(abs).max() ?? 0
        return UniformQuantizer.params(lower: -largest, upper: largest, grid: grid, symmetric: true)
      })
      let ints = q.quantize(values, shape: t.shape)
      let maxError = values.indices.reduce(Float(0)) { worst, i in
        max(worst, abs(values[i] - UniformQuantizer.dequantize(Int(ints[i]), q.params[i / columns])))
      }
      let intName = g.freshName(name + "_int8_rows"), scaleName = g.freshName(name + "_row_scales")
      g.initializers[name] = nil
      g.initializers[intName] = Tensor(dtype: .int8, shape: t.shape, storage: .int(ints))
      g.initializers[scaleName] = Tensor(shape: [rows, 1], floats: q.params.map(\.scale))
      for k in r {
        let gather = g.nodes[k], out = gather.outputs[0]
        let gathered = g.freshName(out + "_int8"), picked = g.freshName(out + "_row_scales")
        let cast = g.freshName(out + "_rows")
        g.nodes[k].inputs[0] = intName
        g.nodes[k].outputs[0] = gathered
        after[gathered] = [
          Node(name: picked, opType: "Gather", inputs: [scaleName, gather.inputs[1]], outputs: [picked]),
          Node(name: cast, opType: "Cast", inputs: [gathered], outputs: [cast], attributes: ["to": .int(DType.float32.rawValue)]),
          Node(name: g.freshName(out + "_row_dequantize"), opType: "Mul", inputs: [cast, picked], outputs: [out]),
        ]
      }
      records.append(Record(table: name, rows: rows, columns: columns, maxError: maxError))
    }
    g.insertNodes(after)
    return (g, records)
  }
}
