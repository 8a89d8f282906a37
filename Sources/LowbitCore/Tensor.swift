/// A dense, row-major tensor: a value with copy-on-write storage (Swift arrays underneath).
///
/// Invariant: `storage.count == shape.reduce(1, *)` and the storage class matches `dtype`.
/// Elements are held in compute form or packed at the type's width (`Tensor+Packing.swift`);
/// two tensors are equal when type, shape and elements are, whatever the form.
public struct Tensor: Sendable, Equatable {
  /// Elements in compute form: the storage class of `dtype` (see `DType.StorageClass`).
  public enum Storage: Sendable, Equatable {
    case float([Float])
    case int([Int64])
    case bool([Bool])

    public var count: Int {
      switch self {
      case .float(let v): return v.count
      case .int(let v): return v.count
      case .bool(let v): return v.count
      }
    }
  }

  /// How the elements are held.
  enum Elements: Sendable, Equatable {
    case compute(Storage)
    case packed(PackedElements)
  }

  public let dtype: DType
  public let shape: [Int]
  let elements: Elements

  /// The elements in compute form (decoded when they are held packed).
  public var storage: Storage {
    switch elements {
    case .compute(let s): return s
    case .packed(let p): return p.decode(dtype)
    }
  }

  init(dtype: DType, shape: [Int], elements: Elements) {
    switch elements {
    case .compute(let s):
      self.init(dtype: dtype, shape: shape, storage: s)
    case .packed(let p):
      precondition(shape.allSatisfy { $0 >= 0 } && p.count == shape.reduce(1, *)
        && p.bytes.count == dtype.packedByteCount(p.count), "Tensor: \(p.bytes.count) bytes for \(dtype)\(shape)")
      self.init(unchecked: dtype, shape: shape, elements: elements)
    }
  }

  private init(unchecked dtype: DType, shape: [Int], elements: Elements) {
    self.dtype = dtype
    self.shape = shape
    self.elements = elements
  }

  public static func == (a: Tensor, b: Tensor) -> Bool {
    guard a.dtype == b.dtype, a.shape == b.shape else { return false }
    if a.elements == b.elements { return true }
    if a.isPacked != b.isPacked { return a.storage == b.storage }
    return false
  }

  /// A float32 tensor.
  public init(shape: [Int], floats: [Float]) {
    precondition(shape.allSatisfy { $0 >= 0 } && floats.count == shape.reduce(1, *),
      "Tensor: \(floats.count) values for shape \(shape)")
    self.init(unchecked: .float32, shape: shape, elements: .compute(.float(floats)))
  }

  /// An int64 tensor.
  public init(shape: [Int], ints: [Int64]) {
    self.init(dtype: .int64, shape: shape, storage: .int(ints))
  }

  /// A bool tensor.
  public init(shape: [Int], bools: [Bool]) {
    self.init(dtype: .bool, shape: shape, storage: .bool(bools))
  }

  /// A tensor of any type; the storage class must match `dtype`.
  public init(dtype: DType, shape: [Int], storage: Storage) {
    precondition(shape.allSatisfy { $0 >= 0 } && storage.count == shape.reduce(1, *),
      "Tensor: \(storage.count) values for shape \(shape)")
    switch (dtype.storageClass, storage) {
    case (.float, .float), (.int, .int), (.bool, .bool): break
    default: preconditionFailure("Tensor: storage does not match dtype \(dtype)")
    }
    self.init(unchecked: dtype, shape: shape, elements: .compute(storage))
  }

  /// A float32 tensor filled with `value`.
  public init(shape: [Int], repeating value: Float) {
    self.init(shape: shape, floats: [Float](repeating: value, count: shape.reduce(1, *)))
  }

  /// A 0-d float32 tensor.
  public init(scalar: Float) { self.init(shape: [], floats: [scalar]) }

  /// Number of elements.
  public var count: Int {
    switch elements {
    case .compute(let s): return s.count
    case .packed(let p): return p.count
    }
  }
  public var rank: Int { shape.count }

  /// The elements of a floating-point tensor.
  public var floats: [Float] {
    guard case .float(let v) = storage else { preconditionFailure("floats of a \(dtype) tensor") }
    return v
  }

  /// The elements of an integer tensor.
  public var ints: [Int64] {
    guard case .int(let v) = storage else { preconditionFailure("ints of a \(dtype) tensor") }
    return v
  }

  /// The elements of a bool tensor.
  public var bools: [Bool] {
    guard case .bool(let v) = storage else { preconditionFailure("bools of a \(dtype) tensor") }
    return v
  }

  /// The same elements under another shape with the same element count.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    Tensor(dtype: dtype, shape: newShape, elements: elements)  // the initializers check the count
  }

  /// Elements as Float whatever the storage class (bool as 0/1).
  public func asFloats() -> [Float] {
    switch storage {
    case .float(let v): return v
    case .int(let v): return v.map { Float($0) }
    case .bool(let v): return v.map { $0 ? 1 : 0 }
    }
  }

  /// Elements as Int64 whatever the storage class (floats truncated toward zero).
  public func asInts() -> [Int64] {
    switch storage {
    case .int(let v): return v
    case .float(let v): return v.map { $0.isFinite ? Int64(max(min($0, 9.2e18), -9.2e18)) : 0 }
    case .bool(let v): return v.map { $0 ? 1 : 0 }
    }
  }

  /// Row-major strides of `shape`.
  public static func strides(of shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
      strides[i] = acc
      acc *= shape[i]
    }
    return strides
  }
}

extension Tensor: CustomStringConvertible {
  public var description: String { "Tensor<\(dtype)>\(shape)" }
}
