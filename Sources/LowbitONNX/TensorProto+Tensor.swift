import Foundation
import LowbitCore

/// Largest tensor lowbit will materialize from a file (elements); larger declared sizes are refused
/// before any allocation.
let maximumTensorElements = 1 << 31

/// Product of dims with overflow and sanity checks; `what` names the tensor in errors.
func elementCount(_ dims: [Int64], what: String) throws -> Int {
  var total = 1
  for d in dims {
    guard d >= 0, d <= Int64(maximumTensorElements) else {
      throw LowbitError.invalidModel("\(what) has an invalid dimension \(d) in \(dims)")
    }
    let (p, overflow) = total.multipliedReportingOverflow(by: Int(d))
    guard !overflow, p <= maximumTensorElements else {
      throw LowbitError.invalidModel("\(what) declares \(dims), too many elements")
    }
    total = p
  }
  return total
}

extension DType {
  /// The lowbit type for an ONNX `TensorProto.DataType` code, or an error naming it.
  init(onnxCode code: Int32, what: String) throws {
    guard let t = DType(rawValue: Int(code)) else {
      let names: [Int32: String] = [
        0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128",
      ]
      throw LowbitError.unsupported(
        "\(what) has element type \(names[code] ?? "code \(code)"), which lowbit does not support")
    }
    self = t
  }
}

extension Tensor {
  /// Decodes an ONNX tensor: raw data, typed fields, or external data under `baseDirectory`.
  init(proto: Onnx_TensorProto, baseDirectory: String?) throws {
    let what = "tensor '\(proto.name)'"
    let dtype = try DType(onnxCode: proto.dataType, what: what)
    let shape = proto.dims.map { Int($0) }
    let count = try elementCount(proto.dims, what: what)
    var raw: Data?
    if proto.dataLocation == .external {
      raw = try Tensor.externalBytes(proto, baseDirectory: baseDirectory, what: what)
    } else if proto.hasRawData {
      raw = proto.rawData
    }
    if let raw = raw {
      guard let t = Tensor(dtype: dtype, shape: shape, rawBytes: [UInt8](raw)) else {
        throw LowbitError.invalidModel("\(what) has \(raw.count) bytes of data, \(dtype)\(shape) needs \(dtype.packedByteCount(count))")
      }
      self = t
      return
    }
    let storage: Storage
    func check(_ n: Int) throws {
      guard n == count else {
        throw LowbitError.invalidModel("\(what) holds \(n) values, shape \(shape) needs \(count)")
      }
    }
    switch dtype {
    case .float32:
      try check(proto.floatData.count); storage = .float(proto.floatData)
    case .float64:
      // Kept bit for bit: the doubles' bytes are the packed form.
      try check(proto.doubleData.count)
      let bytes = proto.doubleData.map { $0.bitPattern.littleEndian }
      self.init(dtype: dtype, shape: shape, rawBytes: bytes.withUnsafeBytes { Array($0) })!
      return
    case .float16, .bfloat16:
      // The 16-bit patterns, one per int32 (ONNX's layout for both types).
      try check(proto.int32Data.count)
      let bits = proto.int32Data.map { UInt16(truncatingIfNeeded: $0).littleEndian }
      self.init(dtype: dtype, shape: shape, rawBytes: bits.withUnsafeBytes { Array($0) })!
      return
    case .int64:
      try check(proto.int64Data.count); storage = .int(proto.int64Data)
    case .uint32, .uint64:
      try check(proto.uint64Data.count); storage = .int(proto.uint64Data.map { Int64(truncatingIfNeeded: $0) })
    case .bool:
      try check(proto.int32Data.count); storage = .bool(proto.int32Data.map { $0 != 0 })
    case .int4, .uint4:
      guard proto.int32Data.count == (count + 1) / 2 else {
        throw LowbitError.invalidModel("\(what) holds \(proto.int32Data.count) packed words, shape \(shape) needs \((count + 1) / 2)")
      }
      var values: [Int64] = []
      for word in proto.int32Data {
        for nibble in [word & 0xF, (word >> 4) & 0xF] {
          values.append(dtype == .int4 && nibble >= 8 ? Int64(nibble) - 16 : Int64(nibble))
        }
      }
      storage = .int(Array(values.prefix(count)))
    default:
      try check(proto.int32Data.count); storage = .int(proto.int32Data.map { Int64($0) })
    }
    self = Tensor(dtype: dtype, shape: shape, storage: storage).packed()
  }

  /// Bytes of an external-data tensor, from `location` (relative, inside the model's folder),
  /// `offset` and `length`, checked against the file's size before reading.
  static func externalBytes(_ proto: Onnx_TensorProto, baseDirectory: String?, what: String) throws -> Data {
    var info: [String: String] = [:]
    for entry in proto.externalData { info[entry.key] = entry.value }
    guard let location = info["location"], !location.isEmpty else {
      throw LowbitError.invalidModel("\(what) is stored externally but names no location")
    }
    guard !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
      throw LowbitError.invalidModel("\(what) names external file '\(location)' outside the model's folder")
    }
    let path = ((baseDirectory ?? ".") as NSString).appendingPathComponent(location)
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw LowbitError.io("\(what): external data file '\(path)' cannot be opened")
    }
    defer { try? handle.close() }
    let size = Int((try? handle.seekToEnd()) ?? 0)
    let offset = Int(info["offset"] ?? "0") ?? -1
    let length = info["length"].map { Int($0) ?? -1 } ?? (size - max(offset, 0))
    guard offset >= 0, length >= 0, offset <= size, length <= size - offset else {
      throw LowbitError.invalidModel("\(what): offset \(offset) and length \(length) do not fit '\(location)' (\(size) bytes)")
    }
    try handle.seek(toOffset: UInt64(offset))
    let data = try handle.read(upToCount: length) ?? Data()
    guard data.count == length else {
      throw LowbitError.io("\(what): read \(data.count) of \(length) bytes from '\(location)'")
    }
    return data
  }

  /// Encodes as an ONNX tensor with little-endian raw data.
  func proto(name: String) -> Onnx_TensorProto {
    var p = Onnx_TensorProto()
    p.name = name
    p.dims = shape.map { Int64($0) }
    p.dataType = Int32(dtype.rawValue)
    p.rawData = Data(rawBytes)
    return p
  }

  /// Encodes as an ONNX tensor whose bytes lie in the external file `location`.
  func externalProto(name: String, location: String, offset: Int, length: Int) -> Onnx_TensorProto {
    var p = Onnx_TensorProto()
    p.name = name
    p.dims = shape.map { Int64($0) }
    p.dataType = Int32(dtype.rawValue)
    p.dataLocation = .external
    p.externalData = [("location", location), ("offset", "\(offset)"), ("length", "\(length)")].map { key, value in
      var entry = Onnx_StringStringEntryProto()
      entry.key = key
      entry.value = value
      return entry
    }
    return p
  }
}
