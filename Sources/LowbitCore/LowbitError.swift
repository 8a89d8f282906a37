/// The one error type of lowbit: bad input, unsupported content or a failed check.
///
/// Messages name where the problem is: `[Conv 'layer1.0.conv1'] weight has 3 dims, expected 4`.
/// `precondition` is kept for programmer errors; nothing a model or data file contains ends in a trap.
public struct LowbitError: Error, CustomStringConvertible, Equatable, Sendable {
  /// What went wrong, coarsely, for callers that branch on it.
  public enum Kind: String, Sendable, Codable {
    /// The file or graph breaks the format's rules (truncated, inconsistent, dangling names).
    case invalidModel
    /// Well-formed content that lowbit does not implement (an op, an attribute value, a dtype).
    case unsupported
    /// Data handed to lowbit is unusable (wrong shape or dtype, NaN/Inf, empty).
    case invalidInput
    /// A file could not be read or written.
    case io
    /// Options or configuration values out of their allowed range.
    case invalidArgument
  }

  public let kind: Kind
  public let message: String
  /// The node's op type, when the problem sits at a node.
  public var opType: String?
  /// The node's name, when the problem sits at a node.
  public var node: String?

  public init(_ kind: Kind, _ message: String, opType: String? = nil, node: String? = nil) {
    self.kind = kind
    self.message = message
    self.opType = opType
    self.node = node
  }

  public var description: String {
    switch (opType, node) {
    case let (op?, name?): return "[\(op) '\(name)'] \(message)"
    case let (op?, nil): return "[\(op)] \(message)"
    case let (nil, name?): return "['\(name)'] \(message)"
    default: return message
    }
  }

  /// The same error placed at a node, unless it already names one.
  public func at(opType: String, node: String) -> LowbitError {
    var copy = self
    if copy.opType == nil { copy.opType = opType }
    if copy.node == nil { copy.node = node }
    return copy
  }

  public static func invalidModel(_ message: String) -> LowbitError { .init(.invalidModel, message) }
  public static func unsupported(_ message: String) -> LowbitError { .init(.unsupported, message) }
  public static func invalidInput(_ message: String) -> LowbitError { .init(.invalidInput, message) }
  public static func io(_ message: String) -> LowbitError { .init(.io, message) }
  public static func invalidArgument(_ message: String) -> LowbitError {
    .init(.invalidArgument, message)
  }
}

extension Array where Element == String {
  /// The first `limit` items joined by commas, then "and k more": the short lists that error
  /// messages and step details name nodes with.
  public func listed(limit: Int = 3) -> String {
    prefix(limit).joined(separator: ", ") + (count > limit ? " and \(count - limit) more" : "")
  }
}
