/// A dense, row-major tensor: a value with copy-on-write storage (Swift arrays underneath).
///
/// Invariant: `storage.count == shape.reduce(1, *)` and the storage class matches `dtype`.
public struct Tensor: Sendable, Equatable {
  /// Elements, held in the storage class of `dtype` (see `DType.StorageClass`).
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

  public let dtype: DType
  public let shape: [Int]
  public private(set) var storage: Storage

  /// A float32 tensor.
  public init(shape: [Int], floats: [Float]) {
    precondition(shape.allSatisfy { $0 >= 0 } && floats.count == shape.reduce(1, *),
      "Tensor: \(floats.count) values for shape \(shape)")
    self.dtype = .float32
    self.shape = shape
    self.storage = .float(floats)
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
    self.dtype = dtype
    self.shape = shape
    self.storage = storage
  }

  /// A float32 tensor filled with `value`.
  public init(shape: [Int], repeating value: Float) {
    self.init(shape: shape, floats: [Float](repeating: value, count: shape.reduce(1, *)))
  }

  /// A 0-d float32 tensor.
  public init(scalar: Float) { self.init(shape: [], floats: [scalar]) }

  /// Number of elements.
  public var count: Int { storage.count }
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
    Tensor(dtype: dtype, shape: newShape, storage: storage)
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
