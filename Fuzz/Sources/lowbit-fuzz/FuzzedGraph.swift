import Foundation
import LowbitCore

/// Reads choices from fuzz bytes, front to back; past the end every choice is 0.
struct FuzzBytes {
  var bytes: [UInt8]
  var position = 0

  mutating func byte() -> Int {
    defer { position += 1 }
    return position < bytes.count ? Int(bytes[position]) : 0
  }

  /// An integer in `range`.
  mutating func int(_ range: ClosedRange<Int>) -> Int {
    let span = range.upperBound - range.lowerBound + 1
    return range.lowerBound + (byte() << 8 | byte()) % span
  }

  mutating func pick<T>(_ items: [T]) -> T { items[int(0...items.count - 1)] }
}

/// A one-node graph made from fuzz bytes: an op the interpreter implements, 1-3 inputs of small
/// random shapes and types (some of them constant initializers, as shape and axes inputs are),
/// attributes drawn from the names ops use with small values, then validated and run on zeros
/// and small integers. Exercises the interpreter's checks of op type, attributes, shapes and
/// dtypes beyond what a mutated protobuf reaches.
enum FuzzedGraph {
  static let attributeNames = [
    "axis", "axes", "perm", "kernel_shape", "strides", "pads", "dilations", "group", "keepdims", "alpha", "beta",
    "transA", "transB", "mode", "to", "epsilon", "split", "starts", "ends", "shape", "value", "count_include_pad",
    "ceil_mode", "auto_pad", "exclusive", "reverse", "blocksize", "direction", "hidden_size", "output_padding",
    "largest", "sorted", "k", "select_last_index", "noop_with_empty_axes", "coordinate_transformation_mode",
    "equation", "size", "bias", "lambd", "upper", "stash_type", "num_groups", "allowzero", "block_size",
  ]
  static let dtypes: [DType] = [.float32, .float32, .int64, .int32, .int8, .uint8, .bool, .float16]

  static func graph(_ bytes: [UInt8]) -> Graph {
    var f = FuzzBytes(bytes: bytes)
    let ops = Ops.supportedOpTypes
    let op = f.pick(ops)
    var inputs: [ValueInfo] = []
    var initializers: [String: Tensor] = [:]
    var names: [String] = []
    for i in 0..<f.int(1...3) {
      let rank = f.int(0...4)
      let dims = (0..<rank).map { _ in f.int(0...5) }
      let dtype = f.pick(dtypes)
      let name = "x\(i)"
      names.append(name)
      if f.int(0...2) == 0 {
        let n = dims.reduce(1, *)
        let values = (0..<n).map { _ in f.int(-3...5) }
        switch dtype.storageClass {
        case .float: initializers[name] = Tensor(dtype: dtype, shape: dims, storage: .float(values.map(Float.init)))
        case .int: initializers[name] = Tensor(dtype: dtype, shape: dims, storage: .int(values.map(Int64.init)))
        case .bool: initializers[name] = Tensor(dtype: dtype, shape: dims, storage: .bool(values.map { $0 > 0 }))
        }
      } else {
        inputs.append(ValueInfo(name: name, dtype: dtype, shape: dims.map { .fixed($0) }))
      }
    }
    var attributes: [String: Attribute] = [:]
    for _ in 0..<f.int(0...4) {
      let name = f.pick(attributeNames)
      switch f.int(0...4) {
      case 0: attributes[name] = .int(f.int(-3...6))
      case 1: attributes[name] = .float(Float(f.int(-4...8)) / 4)
      case 2: attributes[name] = .ints((0..<f.int(0...6)).map { _ in f.int(-3...6) })
      case 3: attributes[name] = .string(f.pick(["NOTSET", "SAME_UPPER", "VALID", "constant", "reflect", "nearest", "linear", "DCR", "CRD", "ij,jk->ik", "forward"]))
      default: attributes[name] = .floats((0..<f.int(0...4)).map { _ in Float(f.int(-4...8)) / 4 })
      }
    }
    let outputs = (0..<f.int(1...2)).map { "y\($0)" }
    let node = Node(name: "fuzzed", opType: op, inputs: names, outputs: outputs, attributes: attributes)
    return Graph(
      name: "fuzz", nodes: [node], inputs: inputs, outputs: outputs.map { ValueInfo(name: $0) }, initializers: initializers,
      opsets: ["": f.int(7...21)])
  }

  /// Builds, validates and runs the graph on zero feeds (`LOWBIT_FUZZ_PRINT` set: prints the
  /// node and its inputs first, to read what a finding is).
  static func run(_ bytes: [UInt8]) throws {
    let made = graph(bytes)
    if ProcessInfo.processInfo.environment["LOWBIT_FUZZ_PRINT"] != nil, let node = made.nodes.first {
      print(node.opType, node.attributes, made.inputs.map { "\($0.name) \($0.dtype.map { "\($0)" } ?? "?") \($0.shape ?? [])" },
            made.initializers.mapValues(\.shape), "opset", made.opset)
    }
    let graph = try made.validated()
    try FuzzTarget.runSmall(graph)
  }
}
