import Foundation
import LowbitCore
import SwiftProtobuf

/// Writes lowbit `Graph` values as ONNX model files.
public enum ONNXWriter {
  /// The IR version a reader needs for `opset` (ONNX's versioning table: opset 21+ needs IR 10,
  /// which also brings the 4-bit types).
  public static func irVersion(forOpset opset: Int) -> Int64 {
    switch opset {
    case ...8: return 4
    case 9: return 4
    case 10: return 5
    case 11: return 6
    case 12...14: return 7
    case 15...18: return 8
    case 19...20: return 9
    case 21: return 10
    default: return 11
    }
  }

  /// Serializes `graph` as a ModelProto; the initializers named in `external` are left out
  /// and point into the file `location` at their offset and length instead.
  public static func encode(_ graph: Graph, external: [String: ExternalPlace] = [:], location: String = "") throws -> Data {
    var model = Onnx_ModelProto()
    let needed = irVersion(forOpset: graph.opset)
    let original = Int64(graph.metadata["ir_version"] ?? "") ?? 0
    let usesFourBit = graph.initializers.values.contains { $0.dtype == .int4 || $0.dtype == .uint4 }
    model.irVersion = max(needed, min(original, 11), usesFourBit ? 10 : 0)
    model.producerName = "lowbit"
    model.producerVersion = lowbitVersion
    model.opsetImport = graph.opsets.sorted { $0.key < $1.key }.map { domain, version in
      var entry = Onnx_OperatorSetIdProto()
      entry.domain = domain
      entry.version = Int64(version)
      return entry
    }
    var g = Onnx_GraphProto()
    g.name = graph.name
    g.input = graph.inputs.map { valueInfoProto($0, symbols: nil) }
    g.output = graph.outputs.map { valueInfoProto($0, symbols: nil) }
    // Intermediate values keep only the dimensions the file's readers can check: numbers and the
    // symbols of the graph's inputs and outputs. Symbols shape inference made up (the size of a
    // run-time Reshape or Slice) are written as unknown, since a runtime takes two values with
    // the same symbol to have the same size and plans its buffers on it.
    let known = Set((graph.inputs + graph.outputs).flatMap { $0.shape ?? [] }.compactMap { d -> String? in
      if case .symbol(let s) = d { return s }
      return nil
    })
    g.valueInfo = graph.valueInfo.keys.sorted().compactMap { name in
      let v = graph.valueInfo[name]!
      return v.dtype == nil ? nil : valueInfoProto(v, symbols: known)
    }
    g.initializer = graph.initializers.keys.sorted().map { name in
      guard let place = external[name] else { return graph.initializers[name]!.proto(name: name) }
      return graph.initializers[name]!.externalProto(name: name, location: location, offset: place.offset, length: place.length)
    }
    g.node = graph.nodes.map(nodeProto)
    model.graph = g
    return try model.serializedBytes()
  }

  /// Writes `graph` to `path` atomically: temporary files in the same folder, renamed into
  /// place, so a failure never leaves a partial model behind. With external data (`ExternalData`)
  /// every initializer of at least `externalDataThreshold` bytes goes to `<file name>.data` next
  /// to the model, each at an offset aligned to `externalDataAlignment`; the data file is renamed
  /// into place before the model.
  public static func write(_ graph: Graph, to path: String, externalData: ExternalData = .automatic) throws {
    let weightBytes = graph.initializers.values.reduce(0) { $0 + $1.dtype.packedByteCount($1.count) }
    let external = externalData == .always || (externalData == .automatic && weightBytes > automaticExternalDataBytes)
    if !external {
      guard weightBytes <= automaticExternalDataBytes else {
        throw LowbitError.invalidArgument(
          "the model's initializers take \(weightBytes >> 20) MiB, more than an ONNX file without external data can hold (2 GiB): write it with external data")
      }
      try writeAtomically(try serialized(graph), to: path)
      return
    }
    let url = URL(fileURLWithPath: path)
    let location = url.lastPathComponent + ".data"
    let dataPath = url.deletingLastPathComponent().appendingPathComponent(location).path
    try checkWritableDestination(path)
    let temporaryData = temporarySibling(of: dataPath)
    var places: [String: ExternalPlace] = [:]
    do {
      guard FileManager.default.createFile(atPath: temporaryData, contents: nil),
            let handle = FileHandle(forWritingAtPath: temporaryData) else {
        throw LowbitError.io("cannot create '\(temporaryData)'")
      }
      defer { try? handle.close() }
      var offset = 0
      for name in graph.initializers.keys.sorted() {
        let t = graph.initializers[name]!
        guard t.dtype.packedByteCount(t.count) >= externalDataThreshold else { continue }
        let padding = (externalDataAlignment - offset % externalDataAlignment) % externalDataAlignment
        if padding > 0 { try handle.write(contentsOf: Data(count: padding)) }
        offset += padding
        let bytes = t.rawBytes
        try handle.write(contentsOf: bytes)
        places[name] = ExternalPlace(offset: offset, length: bytes.count)
        offset += bytes.count
      }
      let model = try serialized(graph, external: places, location: location)
      try handle.synchronize()
      try moveIntoPlace(temporaryData, dataPath)
      try writeAtomically(model, to: path)
    } catch {
      try? FileManager.default.removeItem(atPath: temporaryData)
      if let e = error as? LowbitError { throw e }
      throw LowbitError.io("cannot write '\(dataPath)': \(error.localizedDescription)")
    }
  }

  /// `encode`, with serialization failures as lowbit errors.
  static func serialized(_ graph: Graph, external: [String: ExternalPlace] = [:], location: String = "") throws -> Data {
    do {
      return try encode(graph, external: external, location: location)
    } catch let error as LowbitError {
      throw error
    } catch {
      throw LowbitError.io("cannot serialize the model: \(error)")
    }
  }

  /// The proto of `v`; with `symbols`, a symbolic dimension not among them is left unknown.
  static func valueInfoProto(_ v: ValueInfo, symbols: Set<String>?) -> Onnx_ValueInfoProto {
    var p = Onnx_ValueInfoProto()
    p.name = v.name
    var t = Onnx_TypeProto.Tensor()
    if let dtype = v.dtype { t.elemType = Int32(dtype.rawValue) }
    if let dims = v.shape {
      var shape = Onnx_TensorShapeProto()
      shape.dim = dims.map { d in
        var dim = Onnx_TensorShapeProto.Dimension()
        switch d {
        case .fixed(let n): dim.dimValue = Int64(n)
        case .symbol(let s): if symbols?.contains(s) ?? true { dim.dimParam = s }
        }
        return dim
      }
      t.shape = shape
    }
    var type = Onnx_TypeProto()
    type.tensorType = t
    p.type = type
    return p
  }

  static func nodeProto(_ n: Node) -> Onnx_NodeProto {
    var p = Onnx_NodeProto()
    p.name = n.name
    p.opType = n.opType
    if !n.domain.isEmpty { p.domain = n.domain }
    p.input = n.inputs
    p.output = n.outputs
    p.attribute = n.attributes.keys.sorted().map { key in
      var a = Onnx_AttributeProto()
      a.name = key
      switch n.attributes[key]! {
      case .int(let v): a.type = .int; a.i = Int64(v)
      case .float(let v): a.type = .float; a.f = v
      case .string(let v): a.type = .string; a.s = Data(v.utf8)
      case .tensor(let t): a.type = .tensor; a.t = t.proto(name: "")
      case .ints(let v): a.type = .ints; a.ints = v.map { Int64($0) }
      case .floats(let v): a.type = .floats; a.floats = v
      case .strings(let v): a.type = .strings; a.strings = v.map { Data($0.utf8) }
      }
      return a
    }
    return p
  }
}

/// Where an initializer's bytes lie in the external data file.
public struct ExternalPlace: Sendable, Equatable {
  public var offset: Int
  public var length: Int
}

/// Whether `ONNXWriter.write` puts the weights in a separate data file (ONNX external data).
public enum ExternalData: String, Sendable, CaseIterable {
  /// Only when the initializers pass `automaticExternalDataBytes` (a protobuf file holds at most
  /// 2 GiB).
  case automatic
  case always
  case never
}

/// Bytes of initializers above which `.automatic` writes external data: 2 GiB (protobuf's limit
/// on one message) less 64 MiB for the graph itself.
public let automaticExternalDataBytes = (1 << 31) - (1 << 26)
/// Initializers smaller than this stay in the model file (ONNX's `save_model` default).
public let externalDataThreshold = 1024
/// Offsets of external tensors are multiples of this (a page: runtimes may map them).
public let externalDataAlignment = 4096

/// lowbit's version, written into the files it produces.
public let lowbitVersion = "0.1.0"

/// Throws unless the folder `path` would be written into exists (checked before long work).
public func checkWritableDestination(_ path: String) throws {
  let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
    throw LowbitError.io("cannot write '\(path)': folder '\(folder.path)' does not exist")
  }
  guard FileManager.default.isWritableFile(atPath: folder.path) else {
    throw LowbitError.io("cannot write '\(path)': folder '\(folder.path)' is not writable")
  }
}

/// Writes `data` to a temporary sibling of `path` and renames it into place.
public func writeAtomically(_ data: Data, to path: String) throws {
  try checkWritableDestination(path)
  let temporary = temporarySibling(of: path)
  do {
    try data.write(to: URL(fileURLWithPath: temporary))
    try moveIntoPlace(temporary, path)
  } catch {
    try? FileManager.default.removeItem(atPath: temporary)
    throw LowbitError.io("cannot write '\(path)': \(error.localizedDescription)")
  }
}

/// A hidden name in `path`'s folder for the file before it is renamed into place.
func temporarySibling(of path: String) -> String {
  let url = URL(fileURLWithPath: path)
  return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).partial").path
}

/// rename(2), which replaces `path` atomically on the same file system.
func moveIntoPlace(_ temporary: String, _ path: String) throws {
  guard rename(temporary, path) == 0 else { throw LowbitError.io("renaming into '\(path)' failed with errno \(errno)") }
}
