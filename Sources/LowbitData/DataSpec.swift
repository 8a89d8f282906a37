import Foundation
import LowbitCore

/// A data set as a user names it on the command line.
///
/// | text | meaning |
/// | --- | --- |
/// | `fashion-mnist:test`, `fashion-mnist:train` | the Fashion-MNIST split, normalized, [N, 1, 28, 28] |
/// | `fashion-mnist:test:1000` | its first 1000 samples |
/// | `npy:x.npy` | one input, bound to the model's first input |
/// | `npy:x.npy,y.npy` | an input and its labels |
/// | `npy:input_ids=a.npy,attention_mask=b.npy` | named inputs |
/// | `npy:input_ids=a.npy,labels=c.npy` | named inputs; the name `labels` marks the labels |
/// | `npz:data.npz` | members by name; member `labels` = labels; a lone other member = the input |
///
/// Paths may not contain commas; in the `npy:` form everything before the first `=` of an item is
/// its name.
public enum DataSpec: Sendable, Equatable, CustomStringConvertible {
  /// A Fashion-MNIST split, optionally only its first `limit` samples.
  case fashionMNIST(split: Split, limit: Int?)
  /// `.npy` files: inputs (named or one unnamed) and an optional labels file.
  case npy(inputs: [NamedFile], labels: String?)
  /// An `.npz` archive.
  case npz(path: String)

  /// A Fashion-MNIST split.
  public enum Split: String, Sendable, CaseIterable {
    case train, test
  }

  /// A file bound to a model input by name, or to the first input when `name` is nil.
  public struct NamedFile: Sendable, Equatable {
    public var name: String?
    public var path: String
    public init(name: String?, path: String) {
      self.name = name
      self.path = path
    }
  }

  /// The environment variable with which the CLI overrides the Fashion-MNIST directory.
  public static let fashionMNISTDirectoryVariable = "LOWBIT_FASHION_MNIST_DIR"
  /// Where `apt-get install dataset-fashion-mnist` puts the files.
  public static let defaultFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

  static let forms =
    "fashion-mnist:test|train[:N], npy:FILE[,LABELS], npy:NAME=FILE,...[,labels=FILE], npz:FILE"

  /// Parses the command-line form; throws `LowbitError.invalidArgument` naming the problem and
  /// the accepted forms. Files are not touched until `load()`.
  public static func parse(_ text: String) throws -> DataSpec {
    guard let colon = text.firstIndex(of: ":") else {
      throw LowbitError.invalidArgument(
        "data spec '\(text)' has no scheme; expected one of: \(forms)")
    }
    let scheme = String(text[..<colon])
    let rest = String(text[text.index(after: colon)...])
    switch scheme {
    case "fashion-mnist":
      let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
      guard (1...2).contains(parts.count), let split = Split(rawValue: parts[0]) else {
        throw LowbitError.invalidArgument(
          "data spec '\(text)': expected fashion-mnist:test or fashion-mnist:train, optionally :N")
      }
      var limit: Int?
      if parts.count == 2 {
        guard let n = Int(parts[1]), n > 0 else {
          throw LowbitError.invalidArgument(
            "data spec '\(text)': '\(parts[1])' is not a positive sample count")
        }
        limit = n
      }
      return .fashionMNIST(split: split, limit: limit)
    case "npy":
      return try parseNPY(rest, text: text)
    case "npz":
      guard !rest.isEmpty else {
        throw LowbitError.invalidArgument("data spec '\(text)': no file after npz:")
      }
      return .npz(path: rest)
    default:
      throw LowbitError.invalidArgument(
        "data spec '\(text)': unknown scheme '\(scheme)'; expected one of: \(forms)")
    }
  }

  private static func parseNPY(_ rest: String, text: String) throws -> DataSpec {
    let items = rest.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    guard !items.contains(where: \.isEmpty) else {
      throw LowbitError.invalidArgument("data spec '\(text)': empty file name")
    }
    let named = items.map { item -> NamedFile in
      guard let eq = item.firstIndex(of: "=") else { return NamedFile(name: nil, path: item) }
      return NamedFile(name: String(item[..<eq]), path: String(item[item.index(after: eq)...]))
    }
    if named.allSatisfy({ $0.name == nil }) {
      guard named.count <= 2 else {
        throw LowbitError.invalidArgument(
          "data spec '\(text)': \(named.count) unnamed files; give names (NAME=FILE) for several inputs"
        )
      }
      return .npy(inputs: [named[0]], labels: named.count == 2 ? named[1].path : nil)
    }
    guard named.allSatisfy({ $0.name != nil }) else {
      throw LowbitError.invalidArgument(
        "data spec '\(text)': mixes named (NAME=FILE) and unnamed files")
    }
    var seen: Set<String> = []
    for file in named {
      guard let name = file.name, !name.isEmpty, !file.path.isEmpty else {
        throw LowbitError.invalidArgument(
          "data spec '\(text)': '\(file.name ?? "")=\(file.path)' needs NAME=FILE")
      }
      guard seen.insert(name).inserted else {
        throw LowbitError.invalidArgument("data spec '\(text)': '\(name)' given twice")
      }
    }
    let inputs = named.filter { $0.name != "labels" }
    guard !inputs.isEmpty else {
      throw LowbitError.invalidArgument("data spec '\(text)': labels but no inputs")
    }
    return .npy(inputs: inputs, labels: named.first { $0.name == "labels" }?.path)
  }

  /// The command-line form of this spec.
  public var description: String {
    switch self {
    case .fashionMNIST(let split, let limit):
      return "fashion-mnist:\(split.rawValue)" + (limit.map { ":\($0)" } ?? "")
    case .npy(let inputs, let labels):
      let files = inputs.map { ($0.name.map { "\($0)=" } ?? "") + $0.path }
      let labelText = labels.map { inputs.contains { $0.name != nil } ? "labels=\($0)" : $0 }
      return "npy:" + (files + (labelText.map { [$0] } ?? [])).joined(separator: ",")
    case .npz(let path):
      return "npz:\(path)"
    }
  }

  /// Reads the files and builds the data set, checking shapes (see `Dataset.init`);
  /// Fashion-MNIST's IDX files are read from `fashionMNISTDirectory`.
  public func load(fashionMNISTDirectory: String = Self.defaultFashionMNISTDirectory) throws -> Dataset {
    switch self {
    case .fashionMNIST(let split, let limit):
      return try FashionMNIST.load(
        split: split, limit: limit, directory: fashionMNISTDirectory, spec: description)
    case .npy(let inputs, let labels):
      let columns = try inputs.map { (name: $0.name, column: try NPY.column(path: $0.path)) }
      return try Dataset(
        columns: columns, labels: try labels.map(NPY.read(contentsOf:)), source: description,
        inputSources: inputs.map(\.path), labelSource: labels)
    case .npz(let path):
      let members = try NPZ.read(contentsOf: path)
      let labels = members.first { $0.0 == "labels" }?.1
      let others = members.filter { $0.0 != "labels" }
      guard !others.isEmpty else {
        throw LowbitError.invalidInput("\(path): no input arrays (only labels)")
      }
      let sources = others.map { "\(path) member '\($0.0).npy'" }
      var inputs: [(name: String?, tensor: Tensor)] = others.map { ($0.0, $0.1) }
      if inputs.count == 1 { inputs[0].name = nil }
      return try Dataset(
        inputs: inputs, labels: labels, source: description, inputSources: sources,
        labelSource: "\(path) member 'labels.npy'")
    }
  }
}
