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
/// | `images:DIR` | the JPEG and PNG files under DIR (recursively), preprocessed (`DataOptions`), no labels |
/// | `images:DIR:500` | 500 of them: the first of a seeded shuffle (`ImageFolder`) |
/// | `images:DIR,labels=folders` | labels from one sub-folder per class (torchvision's ImageFolder) |
/// | `images:DIR,labels=list.txt` | the files and labels of a `path label` list |
/// | `images:DIR,seed=3` / `images:DIR,sorted` | another shuffle / the sorted order |
/// | `text:FILE` / `text:FILE:N` | one example per line (the first N), tokenized (`DataOptions.tokenizer`) into the model's `input_ids`, `attention_mask` and `token_type_ids` |
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
  /// A folder of images: the first `limit` in the order of `seed` (nil: sorted), with labels.
  case images(directory: String, limit: Int?, labels: ImageFolder.Labels, seed: UInt64?)
  /// A text file, one example per line: its first `limit` examples.
  case text(path: String, limit: Int?)

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
    "fashion-mnist:test|train[:N], npy:FILE[,LABELS], npy:NAME=FILE,...[,labels=FILE], npz:FILE, images:DIR[:N][,labels=folders|FILE][,seed=S|,sorted], text:FILE[:N]"

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
    case "images":
      return try parseImages(rest, text: text)
    case "text":
      let (path, limit) = try splitCount(rest, text: text)
      guard !path.isEmpty else { throw LowbitError.invalidArgument("data spec '\(text)': no file after text:") }
      return .text(path: path, limit: limit)
    default:
      throw LowbitError.invalidArgument(
        "data spec '\(text)': unknown scheme '\(scheme)'; expected one of: \(forms)")
    }
  }

  /// `PATH:N` as `(PATH, N)` (N positive), anything else as `(text, nil)`.
  private static func splitCount(_ item: String, text: String) throws -> (String, Int?) {
    guard let colon = item.lastIndex(of: ":"), let n = Int(item[item.index(after: colon)...]) else { return (item, nil) }
    guard n > 0 else { throw LowbitError.invalidArgument("data spec '\(text)': \(n) is not a positive count") }
    return (String(item[..<colon]), n)
  }

  private static func parseImages(_ rest: String, text: String) throws -> DataSpec {
    let items = rest.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    let (directory, limit) = try splitCount(items[0], text: text)
    guard !directory.isEmpty else { throw LowbitError.invalidArgument("data spec '\(text)': no folder after images:") }
    var labels = ImageFolder.Labels.none
    var seed: UInt64? = 0
    for item in items.dropFirst() {
      if item == "sorted" {
        seed = nil
      } else if item.hasPrefix("labels="), item.count > 7 {
        let value = String(item.dropFirst(7))
        labels = value == "folders" ? .folders : .list(value)
      } else if item.hasPrefix("seed="), let s = UInt64(item.dropFirst(5)) {
        seed = s
      } else {
        throw LowbitError.invalidArgument(
          "data spec '\(text)': '\(item)' is not labels=folders, labels=FILE, seed=N or sorted")
      }
    }
    return .images(directory: directory, limit: limit, labels: labels, seed: seed)
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
    case .images(let directory, let limit, let labels, let seed):
      var text = "images:\(directory)" + (limit.map { ":\($0)" } ?? "")
      switch labels {
      case .none: break
      case .folders: text += ",labels=folders"
      case .list(let file): text += ",labels=\(file)"
      }
      if let seed { if seed != 0 { text += ",seed=\(seed)" } } else { text += ",sorted" }
      return text
    case .text(let path, let limit):
      return "text:\(path)" + (limit.map { ":\($0)" } ?? "")
    }
  }

  /// Reads the files and builds the data set, checking shapes (see `Dataset.init`);
  /// Fashion-MNIST's IDX files are read from `fashionMNISTDirectory`. Images and text become
  /// inputs as `options` and the model's inputs (`modelInputs`, when known) say; their rows are
  /// made when a batch is read.
  public func load(
    fashionMNISTDirectory: String = Self.defaultFashionMNISTDirectory, options: DataOptions = DataOptions(),
    modelInputs: [ValueInfo] = []
  ) throws -> Dataset {
    switch self {
    case .images(let directory, let limit, let labels, let seed):
      var folder = try ImageFolder.scan(directory, labels: labels, seed: seed, limit: limit)
      let (preprocessing, size) = try options.imagePreprocessing(for: modelInputs.first)
      var skipped: [String] = []
      if options.skipBadInputs == true { (folder, skipped) = try folder.readable() }
      let rows = ImageRows(files: folder.files, preprocessing: preprocessing, size: size)
      var data = try Dataset(
        columns: [(nil, DataColumn(rows, dtype: .float32, count: folder.files.count))],
        labels: folder.labels.map { Tensor(shape: [$0.count], ints: $0.map(Int64.init)) }, source: description)
      data.skipped = skipped
      return data
    case .text(let path, let limit):
      return try Self.loadText(path: path, limit: limit, options: options, modelInputs: modelInputs)
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

extension DataSpec {
  /// The inputs a text file gives: for each of the model's inputs named `input_ids`,
  /// `attention_mask` or `token_type_ids` (all three when the model's inputs are not known), a
  /// column of `maxLength` tokens per line, in the input's integer type.
  ///
  /// `maxLength` is `options.maxLength`, else the length the model's `input_ids` fixes, else 128.
  static func loadText(path: String, limit: Int?, options: DataOptions, modelInputs: [ValueInfo]) throws -> Dataset {
    guard let tokenizerPath = options.tokenizer else {
      throw LowbitError.invalidArgument("text:\(path): text needs a tokenizer: give --tokenizer tokenizer.json (Hugging Face format)")
    }
    let tokenizer = try Tokenizer(contentsOf: tokenizerPath)
    var lines = try TextLines.index(path)
    if let limit { lines = lines.prefix(limit) }
    var skipped: [String] = []
    if options.skipBadInputs == true { (lines, skipped) = try lines.readable() }
    let fields = TextRows.Field.allCases
    var wanted: [(TextRows.Field, DType)] = fields.map { ($0, .int64) }
    if !modelInputs.isEmpty {
      wanted = []
      for input in modelInputs {
        guard let field = TextRows.Field(rawValue: input.name) else {
          throw LowbitError.invalidInput(
            "model input '\(input.name)' is none of what text gives (\(fields.map(\.rawValue).joined(separator: ", ")))")
        }
        let dtype = input.dtype ?? .int64
        guard dtype == .int64 || dtype == .int32 else {
          throw LowbitError.invalidInput("model input '\(input.name)' is \(dtype); token inputs must be int64 or int32")
        }
        wanted.append((field, dtype))
      }
    }
    let fixed = modelInputs.first { $0.name == TextRows.Field.inputIDs.rawValue }?.shape.flatMap { $0.count == 2 ? $0[1].value : nil }
    let maxLength = options.maxLength ?? fixed ?? 128
    guard maxLength >= 2 else { throw LowbitError.invalidArgument("text: a max length of \(maxLength) holds no tokens") }
    if let fixed, fixed != maxLength {
      throw LowbitError.invalidArgument("model input 'input_ids' takes \(fixed) tokens, but --max-length is \(maxLength)")
    }
    let columns = wanted.map { field, dtype in
      (name: Optional(field.rawValue), column: DataColumn(
        TextRows(lines: lines, tokenizer: tokenizer, field: field, maxLength: maxLength, dtype: dtype), dtype: dtype,
        count: lines.lines.count))
    }
    var data = try Dataset(columns: columns, source: "text:\(path)", inputSources: columns.map { _ in path })
    data.skipped = skipped
    return data
  }
}
