/// A borrowed run of `count` elements that the workers of one parallel call share
/// (`parallelChunks`, `DispatchQueue.concurrentPerform`): the only way kernels hand memory to a
/// `@Sendable` worker closure, instead of raw pointers or their addresses as integers.
///
/// The buffer does not own its memory. Make it inside `withUnsafe(Mutable)BufferPointer` (or
/// from memory the caller allocated) and use it only in the parallel call made there; workers
/// write disjoint indices, and nobody writes what another worker reads. That contract is what
/// the `@unchecked Sendable` below stands for, and this type is the one place the kernels state it.
///
/// Indexing, `pointer(at:count:)` and `initialize(_:to:)` check bounds in debug builds
/// (`assert`); optimized builds drop the checks, so kernels run at raw-pointer speed.
@frozen
public struct SharedBuffer<Element> {
  /// The first element; an aligned, never dereferenced address when `count` is 0.
  @usableFromInline let start: UnsafeMutablePointer<Element>
  /// Number of elements.
  public let count: Int

  /// Memory workers may read and write.
  @inlinable
  public init(_ buffer: UnsafeMutableBufferPointer<Element>) {
    self.init(start: buffer.baseAddress, count: buffer.count)
  }

  /// Memory workers only read (writing through it is a contract violation).
  @inlinable
  public init(_ buffer: UnsafeBufferPointer<Element>) {
    self.init(start: buffer.baseAddress.map { UnsafeMutablePointer(mutating: $0) }, count: buffer.count)
  }

  /// `count` elements at `start` (which may be nil only when `count` is 0).
  @inlinable
  public init(start: UnsafeMutablePointer<Element>?, count: Int) {
    precondition(count >= 0 && (start != nil || count == 0), "SharedBuffer: no memory for \(count) elements")
    self.start = start ?? UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment)!
    self.count = count
  }

  /// `count` elements at `start`, read only.
  @inlinable
  public init(start: UnsafePointer<Element>?, count: Int) {
    self.init(start: start.map { UnsafeMutablePointer(mutating: $0) }, count: count)
  }

  /// Element `i` (initialized memory).
  @inlinable
  public subscript(i: Int) -> Element {
    get {
      assert(i >= 0 && i < count, "SharedBuffer: index \(i) out of 0..<\(count)")
      return start[i]
    }
    nonmutating set {
      assert(i >= 0 && i < count, "SharedBuffer: index \(i) out of 0..<\(count)")
      start[i] = newValue
    }
  }

  /// Initializes element `i` of uninitialized memory to `value`.
  @inlinable
  public func initialize(_ i: Int, to value: Element) {
    assert(i >= 0 && i < count, "SharedBuffer: index \(i) out of 0..<\(count)")
    (start + i).initialize(to: value)
  }

  /// The address of element `offset`, for a kernel that reads or writes elements
  /// `offset..<offset + count` through it (checked to lie in the buffer in debug builds).
  @inlinable
  public func pointer(at offset: Int = 0, count n: Int = 0) -> UnsafeMutablePointer<Element> {
    assert(offset >= 0 && n >= 0 && offset + n <= count, "SharedBuffer: \(offset)..<\(offset + n) out of 0..<\(count)")
    return start + offset
  }

  /// An array of `count` elements that `body` initializes, each exactly once (typically from
  /// parallel workers, each its own indices), through the buffer it is given. Replaces arrays
  /// declared initialized before they are written.
  @inlinable
  public static func array(count: Int, _ body: (SharedBuffer<Element>) throws -> Void) rethrows -> [Element] {
    try [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
      try body(SharedBuffer(buffer))
      initialized = count
    }
  }
}

// Safety: workers touch disjoint elements or only read (the contract above), and the memory
// outlives the parallel call; the elements themselves must be Sendable.
extension SharedBuffer: @unchecked Sendable where Element: Sendable {}
