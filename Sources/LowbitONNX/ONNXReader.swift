import Foundation
import LowbitCore
import SwiftProtobuf

/// Reads ONNX model files into lowbit `Graph` values.
public enum ONNXReader {
  /// Opset versions of the default domain that lowbit reads.
  public static let supportedOpsets = 7...22

  /// Loads `path`, with external data resolved relative to the file's folder.
  public static func load(contentsOf path: String) throws -> Graph {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw LowbitError.io("model file '\(path)' does not exist")
    }
    guard !isDirectory.boolValue else { throw LowbitError.io("'\(path)' is a folder, not an ONNX file") }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw LowbitError.io("model file '\(path)' cannot be read")
    }
    let folder = (path as NSString).deletingLastPathComponent
    do {
      return try decode(data, baseDirectory: folder.isEmpty ? "." : folder)
    } catch let error as LowbitError {
      throw LowbitError(error.kind, "\(path): \(error.message)", opType: error.opType, node: error.node)
    }
  }

  /// Decodes serialized ModelProto bytes. External data is read from `baseDirectory`.
  public static func decode(_ data: Data, baseDirectory: String? = nil) throws -> Graph {
    guard !data.isEmpty else { throw LowbitError.invalidModel("the file is empty") }
    let model: Onnx_ModelProto
    do {
      var options = BinaryDecodingOptions()
      options.messageDepthLimit = 64
      model = try Onnx_ModelProto(serializedBytes: data, options: options)
    } catch {
      throw LowbitError.invalidModel("not a valid ONNX protobuf (\(error)); the file may be truncated or not an ONNX model")
    }
    guard model.hasGraph else { throw LowbitError.invalidModel("the model holds no graph") }
    var opsets: [String: Int] = [:]
    for entry in model.opsetImport {
      opsets[entry.domain == "ai.onnx" ? "" : entry.domain] = Int(clamping: entry.version)
    }
    guard let opset = opsets[""] else {
      throw LowbitError.invalidModel("the model imports no default-domain opset")
    }
    guard supportedOpsets.contains(opset) else {
      throw LowbitError.unsupported("opset \(opset) is not supported (lowbit reads opsets \(supportedOpsets.lowerBound) to \(supportedOpsets.upperBound))")
    }
    guard model.functions.isEmpty || !model.graph.node.contains(where: { n in
      model.functions.contains { $0.name == n.opType && $0.domain == n.domain } })
    else {
      throw LowbitError.unsupported("model-local functions are not supported")
    }
    var graph = try convert(model.graph, baseDirectory: baseDirectory)
    graph.opsets = opsets
    graph.metadata["ir_version"] = String(model.irVersion)
    if model.hasProducerName { graph.metadata["producer"] = model.producerName }
    if model.hasProducerVersion { graph.metadata["producer_version"] = model.producerVersion }
    return graph
  }

  static func convert(_ g: Onnx_GraphProto, baseDirectory: String?) throws -> Graph {
    guard g.sparseInitializer.isEmpty else {
      throw LowbitError.unsupported("sparse initializers are not supported")
    }
    var initializers: [String: Tensor] = [:]
    for proto in g.initializer {
      guard !proto.name.isEmpty else { throw LowbitError.invalidModel("an initializer has no name") }
      guard initializers[proto.name] == nil else {
        throw LowbitError.invalidModel("initializer '\(proto.name)' is defined twice")
      }
      initializers[proto.name] = try Tensor(proto: proto, baseDirectory: baseDirectory)
    }
    // Graph inputs that carry an initializer are constants with a default: lowbit treats them as
    // initializers (the ONNX convention for IR < 4 and for exporters that list weights as inputs).
    let inputs = try g.input.filter { initializers[$0.name] == nil }.map { try valueInfo($0) }
    let outputs = try g.output.map { try valueInfo($0) }
    var infos: [String: ValueInfo] = [:]
    for v in g.valueInfo { infos[v.name] = try? valueInfo(v) }
    let nodes = try g.node.enumerated().map { index, proto in try node(proto, index: index, baseDirectory: baseDirectory) }
    return Graph(
      name: g.name.isEmpty ? "graph" : g.name, nodes: nodes, inputs: inputs, outputs: outputs,
      initializers: initializers, valueInfo: infos)
  }

  static func valueInfo(_ v: Onnx_ValueInfoProto) throws -> ValueInfo {
    guard !v.name.isEmpty else { throw LowbitError.invalidModel("a graph input or output has no name") }
    guard v.hasType, case .tensorType(let t)? = v.type.value else {
      if !v.hasType { return ValueInfo(name: v.name) }
      throw LowbitError.unsupported("value '\(v.name)' is not a tensor (sequences, maps and optionals are not supported)")
    }
    let dtype = t.hasElemType ? try DType(onnxCode: t.elemType, what: "value '\(v.name)'") : nil
    var shape: [Dim]?
    if t.hasShape {
      shape = try t.shape.dim.enumerated().map { i, d in
        switch d.value {
        case .dimValue(let n)?:
          guard n >= 0, n <= Int64(maximumTensorElements) else {
            throw LowbitError.invalidModel("value '\(v.name)' has an invalid dimension \(n)")
          }
          return .fixed(Int(n))
        case .dimParam(let s)?: return .symbol(s.isEmpty ? "d\(i)" : s)
        case nil: return .symbol("\(v.name)_d\(i)")
        }
      }
    }
    return ValueInfo(name: v.name, dtype: dtype, shape: shape)
  }

  static func node(_ p: Onnx_NodeProto, index: Int, baseDirectory: String?) throws -> Node {
    let name = p.name.isEmpty ? "\(p.opType)_\(index)" : p.name
    var attributes: [String: Attribute] = [:]
    for a in p.attribute {
      do {
        attributes[a.name] = try attribute(a, baseDirectory: baseDirectory)
      } catch let error as LowbitError {
        throw error.at(opType: p.opType, node: name)
      }
    }
    guard !p.opType.isEmpty else {
      throw LowbitError.invalidModel("node \(index) ('\(name)') has no op type")
    }
    return Node(name: name, opType: p.opType, domain: p.domain, inputs: p.input, outputs: p.output,
                attributes: attributes)
  }

  static func attribute(_ a: Onnx_AttributeProto, baseDirectory: String?) throws -> Attribute {
    if a.hasRefAttrName { throw LowbitError.unsupported("attribute '\(a.name)' refers to a function attribute") }
    func intValue(_ v: Int64) throws -> Int {
      guard let i = Int(exactly: v) else { throw LowbitError.invalidModel("attribute '\(a.name)' is out of range") }
      return i
    }
    func text(_ d: Data) -> String { String(decoding: d, as: UTF8.self) }
    switch a.type {
    case .float: return .float(a.f)
    case .int: return .int(try intValue(a.i))
    case .string: return .string(text(a.s))
    case .tensor: return .tensor(try Tensor(proto: a.t, baseDirectory: baseDirectory))
    case .floats: return .floats(a.floats)
    case .ints: return .ints(try a.ints.map(intValue))
    case .strings: return .strings(a.strings.map(text))
    case .graph, .graphs:
      throw LowbitError.unsupported("attribute '\(a.name)' holds a subgraph (control flow such as If/Loop is not supported)")
    default:
      throw LowbitError.unsupported("attribute '\(a.name)' has type \(a.type), which lowbit does not support")
    }
  }
}
