/// Element types, numbered as ONNX's `TensorProto.DataType`.
///
/// Storage classes, the form kernels compute in: floating types as `Float`, integer types as
/// `Int64` (values stay within the type's range), `bool` as `Bool`. Tensors of the other widths
/// are held packed at their own width between computations (`Tensor+Packing.swift`).
public enum DType: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
  case float32 = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
  case bool = 9, float16 = 10, float64 = 11, uint32 = 12, uint64 = 13, bfloat16 = 16, uint4 = 21, int4 = 22

  /// The storage class a tensor of this type uses.
  public enum StorageClass: Sendable { case float, int, bool }

  public var storageClass: StorageClass {
    switch self {
    case .float32, .float16, .bfloat16, .float64: return .float
    case .bool: return .bool
    default: return .int
    }
  }

  public var isFloatingPoint: Bool { storageClass == .float }

  /// The closed integer range `[min, max]` of an integer type.
  public var integerRange: ClosedRange<Int64>? {
    switch self {
    case .uint8: return 0...255
    case .int8: return -128...127
    case .uint16: return 0...65535
    case .int16: return -32768...32767
    case .int32: return Int64(Int32.min)...Int64(Int32.max)
    case .int64: return Int64.min...Int64.max
    case .uint32: return 0...Int64(UInt32.max)
    case .uint64: return 0...Int64.max
    case .uint4: return 0...15
    case .int4: return -8...7
    default: return nil
    }
  }

  /// Bytes per element in ONNX raw data (4-bit types pack two per byte: reported as 1).
  public var byteWidth: Int {
    switch self {
    case .float32, .int32, .uint32: return 4
    case .uint8, .int8, .bool, .uint4, .int4: return 1
    case .uint16, .int16, .float16, .bfloat16: return 2
    case .int64, .float64, .uint64: return 8
    }
  }

  public var description: String {
    switch self {
    case .float32: return "float32"
    case .uint8: return "uint8"
    case .int8: return "int8"
    case .uint16: return "uint16"
    case .int16: return "int16"
    case .int32: return "int32"
    case .int64: return "int64"
    case .bool: return "bool"
    case .float16: return "float16"
    case .bfloat16: return "bfloat16"
    case .float64: return "float64"
    case .uint32: return "uint32"
    case .uint64: return "uint64"
    case .uint4: return "uint4"
    case .int4: return "int4"
    }
  }
}
