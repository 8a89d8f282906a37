/// Tensors held at their element type's own width.
///
/// A tensor's elements are held in one of two forms. The compute form (`Tensor.Storage`) is what
/// kernels read: `Float` for floating types, `Int64` for integer types, `Bool`. The packed form is
/// the little-endian bytes of the element type itself, ONNX's raw-data layout: 1 byte per int8 or
/// uint8, 2 per int16, uint16, float16 and bfloat16, 4 per int32 and uint32, 8 per float64 and
/// uint64, and two 4-bit values per byte (element `2i` in the low nibble, `2i + 1` in the high
/// one). int8 weights thus take 1 byte each instead of 8, and a float64 or uint64 value passes
/// from file to file bit for bit. float32, int64 and bool are always held in compute form (it is
/// already their width).
///
/// Files are read into the packed form, quantized weights are packed when they are made, and
/// `Tensor.storage` decodes on access, so code that reads elements never sees the difference;
/// the interpreter unpacks each input once per use (`unpacked()`).
public struct PackedElements: Sendable, Equatable {
  /// Little-endian bytes; `count` elements of the tensor's type.
  public let bytes: [UInt8]
  public let count: Int
}

extension DType {
  /// Whether tensors of this type are held packed: every type whose width differs from its
  /// compute form's (and uint64, whose values above `Int64.max` only the packed form keeps).
  public var isPacked: Bool {
    switch self {
    case .float32, .int64, .bool: return false
    default: return true
    }
  }

  /// Bytes that `count` elements take in the packed (raw-data) layout.
  public func packedByteCount(_ count: Int) -> Int {
    self == .int4 || self == .uint4 ? (count + 1) / 2 : count * byteWidth
  }
}

extension Tensor {
  /// A tensor over `bytes` in ONNX's raw-data layout for `dtype`; nil when the byte count does
  /// not match `shape`. Types held in compute form are decoded.
  public init?(dtype: DType, shape: [Int], rawBytes bytes: [UInt8]) {
    guard shape.allSatisfy({ $0 >= 0 }) else { return nil }
    let count = shape.reduce(1, *)
    guard bytes.count == dtype.packedByteCount(count) else { return nil }
    let packed = PackedElements(bytes: bytes, count: count)
    if dtype.isPacked {
      self.init(dtype: dtype, shape: shape, elements: .packed(packed))
    } else {
      self.init(dtype: dtype, shape: shape, storage: packed.decode(dtype))
    }
  }

  /// Whether the elements are held packed at the type's width.
  public var isPacked: Bool {
    if case .packed = elements { return true }
    return false
  }

  /// Bytes the elements take in memory (compute form: 4 per Float, 8 per Int64, 1 per Bool).
  public var heldBytes: Int {
    switch elements {
    case .packed(let p): return p.bytes.count
    case .compute(.float(let v)): return v.count * 4
    case .compute(.int(let v)): return v.count * 8
    case .compute(.bool(let v)): return v.count
    }
  }

  /// The same tensor held packed when its type is (`DType.isPacked`); values are first brought
  /// into the type: float16 and bfloat16 round to nearest even, integers wrap.
  public func packed() -> Tensor {
    guard dtype.isPacked, case .compute(let s) = elements else { return self }
    return Tensor(dtype: dtype, shape: shape, elements: .packed(PackedElements(bytes: Tensor.encode(s, as: dtype), count: count)))
  }

  /// The same tensor in compute form.
  public func unpacked() -> Tensor {
    guard case .packed(let p) = elements else { return self }
    return Tensor(dtype: dtype, shape: shape, storage: p.decode(dtype))
  }

  /// The elements in ONNX's raw-data layout (the packed bytes as they are, else encoded).
  public var rawBytes: [UInt8] {
    switch elements {
    case .packed(let p): return p.bytes
    case .compute(let s): return Tensor.encode(s, as: dtype)
    }
  }

  /// `storage` in `dtype`'s raw-data layout.
  static func encode(_ storage: Storage, as dtype: DType) -> [UInt8] {
    switch storage {
    case .float(let v):
      switch dtype {
      case .float64: return ByteLayout.littleEndianBytes(v.map { Double($0).bitPattern })
      case .float16: return ByteLayout.littleEndianBytes(v.map { halfBits($0) })
      case .bfloat16: return ByteLayout.littleEndianBytes(v.map { bfloat16Bits($0) })
      default: return ByteLayout.littleEndianBytes(v.map(\.bitPattern))
      }
    case .bool(let v): return v.map { $0 ? 1 : 0 }
    case .int(let v):
      switch dtype {
      case .int64, .uint64: return ByteLayout.littleEndianBytes(v)
      case .int32, .uint32: return ByteLayout.littleEndianBytes(v.map { UInt32(truncatingIfNeeded: $0) })
      case .int16, .uint16: return ByteLayout.littleEndianBytes(v.map { UInt16(truncatingIfNeeded: $0) })
      case .int4, .uint4:
        var packed = [UInt8](repeating: 0, count: (v.count + 1) / 2)
        for (i, x) in v.enumerated() {
          let nibble = UInt8(truncatingIfNeeded: x) & 0xF
          packed[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
        }
        return packed
      default: return v.map { UInt8(truncatingIfNeeded: $0) }
      }
    }
  }
}

extension PackedElements {
  /// The compute form of these bytes read as `dtype`.
  func decode(_ dtype: DType) -> Tensor.Storage {
    switch dtype {
    case .float32: return .float(values(UInt32.self).map { Float(bitPattern: $0) })
    case .float64: return .float(values(UInt64.self).map { Float(Double(bitPattern: $0)) })
    case .float16: return .float(values(UInt16.self).map { halfValue($0) })
    case .bfloat16: return .float(values(UInt16.self).map { Float(bitPattern: UInt32($0) << 16) })
    case .int64: return .int(values(Int64.self))
    case .uint64: return .int(values(UInt64.self).map { Int64(truncatingIfNeeded: $0) })
    case .int32: return .int(values(Int32.self).map { Int64($0) })
    case .uint32: return .int(values(UInt32.self).map { Int64($0) })
    case .int16: return .int(values(Int16.self).map { Int64($0) })
    case .uint16: return .int(values(UInt16.self).map { Int64($0) })
    case .int8: return .int(bytes.map { Int64(Int8(bitPattern: $0)) })
    case .uint8: return .int(bytes.map { Int64($0) })
    case .bool: return .bool(bytes.map { $0 != 0 })
    case .int4, .uint4:
      let signed = dtype == .int4
      return .int((0..<count).map { i in
        let nibble = Int64(i % 2 == 0 ? bytes[i / 2] & 0xF : bytes[i / 2] >> 4)
        return signed && nibble >= 8 ? nibble - 16 : nibble
      })
    }
  }

  /// The bytes read as `count` little-endian values of `T`.
  private func values<T: FixedWidthInteger>(_: T.Type) -> [T] {
    ByteLayout.load(T.self, from: bytes, offset: 0, count: count)
  }
}

/// The float16 bit pattern nearest to `x` (ties to even; overflow to infinity).
@inline(__always)
func halfBits(_ x: Float) -> UInt16 {
  #if arch(x86_64) || arch(arm64)
    return Float16(x).bitPattern
  #else
    preconditionFailure("float16 needs Swift's Float16")
  #endif
}

@inline(__always)
func halfValue(_ bits: UInt16) -> Float {
  #if arch(x86_64) || arch(arm64)
    return Float(Float16(bitPattern: bits))
  #else
    preconditionFailure("float16 needs Swift's Float16")
  #endif
}

/// The bfloat16 bit pattern nearest to `x`: the upper 16 bits of the float32, rounded to
/// nearest even on the lower 16 (a NaN stays a quiet NaN).
@inline(__always)
func bfloat16Bits(_ x: Float) -> UInt16 {
  if x.isNaN { return 0x7FC0 }
  let bits = x.bitPattern
  let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
  return UInt16(truncatingIfNeeded: rounded >> 16)
}

/// `x` rounded to the nearest float16 value (ties to even; overflow to infinity).
@inline(__always)
func roundedToHalf(_ x: Float) -> Float { halfValue(halfBits(x)) }

/// `x` rounded to the nearest bfloat16 value.
@inline(__always)
func roundedToBFloat16(_ x: Float) -> Float { Float(bitPattern: UInt32(bfloat16Bits(x)) << 16) }
