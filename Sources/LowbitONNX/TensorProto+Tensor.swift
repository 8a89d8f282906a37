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
        0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
      ]
      throw LowbitError.unsupported(
        "\(what) has element type \(names[code] ?? "code \(code)"), which lowbit does not support")
    }
    self = t
  }
}

/// Reads little-endian values of `T` out of raw bytes.
private func readRaw<T: FixedWidthInteger>(_ data: Data, as: T.Type, count: Int) -> [T] {
  var out = [T](repeating: 0, count: count)
  out.withUnsafeMutableBytes { dst in
    data.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<count * MemoryLayout<T>.size])) }
  }
  return out.map { T(littleEndian: $0) }
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
      let needed = dtype == .int4 || dtype == .uint4 ? (count + 1) / 2 : count * dtype.byteWidth
      guard raw.count == needed else {
        throw LowbitError.invalidModel("\(what) has \(raw.count) bytes of data, \(dtype)\(shape) needs \(needed)")
      }
      self.init(dtype: dtype, shape: shape, storage: Tensor.decodeRaw(raw, dtype: dtype, count: count))
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
      try check(proto.doubleData.count); storage = .float(proto.doubleData.map { Float($0) })
    case .float16:
      try check(proto.int32Data.count)
      storage = .float(proto.int32Data.map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0))) })
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
    self.init(dtype: dtype, shape: shape, storage: storage)
  }

  /// Decodes little-endian raw bytes (already checked to be the right length).
  static func decodeRaw(_ raw: Data, dtype: DType, count: Int) -> Storage {
    switch dtype {
    case .float32: return .float(readRaw(raw, as: UInt32.self, count: count).map { Float(bitPattern: $0) })
    case .float64: return .float(readRaw(raw, as: UInt64.self, count: count).map { Float(Double(bitPattern: $0)) })
    case .float16: return .float(readRaw(raw, as: UInt16.self, count: count).map { Float(Float16(bitPattern: $0)) })
    case .int64: return .int(readRaw(raw, as: Int64.self, count: count))
    case .uint64: return .int(readRaw(raw, as: UInt64.self, count: count).map { Int64(truncatingIfNeeded: $0) })
    case .int32: return .int(readRaw(raw, as: Int32.self, count: count).map { Int64($0) })
    case .uint32: return .int(readRaw(raw, as: UInt32.self, count: count).map { Int64($0) })
    case .int16: return .int(readRaw(raw, as: Int16.self, count: count).map { Int64($0) })
    case .uint16: return .int(readRaw(raw, as: UInt16.self, count: count).map { Int64($0) })
    case .int8: return .int(readRaw(raw, as: Int8.self, count: count).map { Int64($0) })
    case .uint8: return .int(readRaw(raw, as: UInt8.self, count: count).map { Int64($0) })
    case .bool: return .bool(readRaw(raw, as: UInt8.self, count: count).map { $0 != 0 })
    case .int4, .uint4:
      let bytes = [UInt8](raw)
      return .int((0..<count).map { i in
        let nibble = Int64(i % 2 == 0 ? bytes[i / 2] & 0xF : bytes[i / 2] >> 4)
        return dtype == .int4 && nibble >= 8 ? nibble - 16 : nibble
      })
    }
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
    var bytes = Data()
    func append<T: FixedWidthInteger>(_ values: [T]) {
      let le = values.map { $0.littleEndian }
      le.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }
    switch storage {
    case .float(let v):
      switch dtype {
      case .float64: append(v.map { Double($0).bitPattern })
      case .float16: append(v.map { Float16($0).bitPattern })
      default: append(v.map { $0.bitPattern })
      }
    case .bool(let v): append(v.map { UInt8($0 ? 1 : 0) })
    case .int(let v):
      switch dtype {
      case .int64: append(v)
      case .uint64: append(v.map { UInt64(truncatingIfNeeded: $0) })
      case .int32: append(v.map { Int32(truncatingIfNeeded: $0) })
      case .uint32: append(v.map { UInt32(truncatingIfNeeded: $0) })
      case .int16: append(v.map { Int16(truncatingIfNeeded: $0) })
      case .uint16: append(v.map { UInt16(truncatingIfNeeded: $0) })
      case .int8: append(v.map { Int8(truncatingIfNeeded: $0) })
      case .int4, .uint4:
        var packed = [UInt8](repeating: 0, count: (v.count + 1) / 2)
        for (i, x) in v.enumerated() {
          let nibble = UInt8(truncatingIfNeeded: x) & 0xF
          packed[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
        }
        bytes.append(contentsOf: packed)
      default: append(v.map { UInt8(truncatingIfNeeded: $0) })
      }
    }
    p.rawData = bytes
    return p
  }
}
