import Foundation
import LowbitCore

/// The images of a folder, in a fixed order, with labels when the folder or a list names them
/// (the `images:` data spec).
///
/// - Files: every `.jpg`, `.jpeg` and `.png` (any case) under the folder, recursively, sorted
///   by path (byte order of the UTF-8 path, as Python sorts).
/// - Labels `folders`: torchvision's `ImageFolder` layout, one sub-folder per class, classes
///   numbered in sorted order of their names, each class's images found recursively; files
///   directly in the folder belong to no class and are left out; a class without images is an error.
/// - Labels from a list file: `path label` per line (the label after the last space; the path
///   relative to the folder unless absolute; blank lines skipped); the list is the set, in its order.
/// - Order: a Fisher-Yates shuffle driven by `SplitMix64(seed)` of that list (seed 0 unless
///   given), so that taking the first N (`images:DIR:N`, `--calib-size`) draws a spread of the
///   folder reproducibly; `sorted` keeps the listed order.
public struct ImageFolder: Sendable, Equatable {
  /// Paths of the images, in order.
  public let files: [String]
  /// Class index per file, or nil.
  public let labels: [Int]?
  /// Class names in index order (`folders` labels), else empty.
  public let classes: [String]

  /// Where the labels come from.
  public enum Labels: Sendable, Equatable {
    case none
    case folders
    case list(String)
  }

  /// File name endings read as images (compared lowercased).
  public static let extensions = ["jpg", "jpeg", "png"]

  public init(files: [String], labels: [Int]?, classes: [String] = []) {
    self.files = files
    self.labels = labels
    self.classes = classes
  }

  /// Lists `directory` as described on the type; `seed` nil keeps the sorted (or listed) order;
  /// `limit` keeps the first files of the order.
  public static func scan(_ directory: String, labels: Labels, seed: UInt64?, limit: Int?) throws -> ImageFolder {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
      throw LowbitError.io("\(directory): no such folder")
    }
    guard isDirectory.boolValue else { throw LowbitError.io("\(directory): not a folder") }
    var listed: [(path: String, label: Int?)]
    var classes: [String] = []
    switch labels {
    case .none:
      listed = try images(under: directory).map { ($0, nil) }
    case .folders:
      let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
      classes = sortedByBytes(entries.filter { isFolder(join(directory, $0)) })
      guard !classes.isEmpty else {
        throw LowbitError.invalidInput("\(directory): labels=folders needs one sub-folder per class; there are none")
      }
      listed = []
      for (index, name) in classes.enumerated() {
        let found = try images(under: join(directory, name))
        guard !found.isEmpty else {
          throw LowbitError.invalidInput("\(directory): class folder '\(name)' holds no .jpg, .jpeg or .png file")
        }
        listed += found.map { ($0, index) }
      }
    case .list(let file):
      listed = try parseList(file, directory: directory)
    }
    guard !listed.isEmpty else {
      throw LowbitError.invalidInput("\(directory): no .jpg, .jpeg or .png files")
    }
    if let seed {
      var g = SplitMix64(seed: seed)
      for i in stride(from: listed.count - 1, to: 0, by: -1) { listed.swapAt(i, g.uniform(below: i + 1)) }
    }
    if let limit { listed = Array(listed.prefix(limit)) }
    let hasLabels = labels != .none
    return ImageFolder(
      files: listed.map(\.path), labels: hasLabels ? listed.map { $0.label ?? 0 } : nil, classes: classes)
  }

  /// The images that decode, and a message for each that does not (decoded on all cores).
  /// Throws when none is readable.
  public func readable() throws -> (ImageFolder, skipped: [String]) {
    let errors: [String?] = parallelIndexedMap(files.count, costPerItem: 1 << 20) { i in
      do {
        _ = try ImageDecoding.decode(contentsOf: files[i])
        return nil
      } catch {
        return "\(error)"
      }
    }
    let kept = errors.indices.filter { errors[$0] == nil }
    guard !kept.isEmpty else {
      throw LowbitError.invalidInput("no readable image among \(files.count); the first: \(errors.compactMap { $0 }.first ?? "")")
    }
    let folder = ImageFolder(files: kept.map { files[$0] }, labels: labels.map { l in kept.map { l[$0] } }, classes: classes)
    return (folder, errors.compactMap { $0 })
  }

  /// The image files under `directory`, recursively, sorted.
  static func images(under directory: String) throws -> [String] {
    guard let walker = FileManager.default.enumerator(atPath: directory) else {
      throw LowbitError.io("\(directory): cannot list")
    }
    var found: [String] = []
    while let relative = walker.nextObject() as? String {
      let ext = (relative as NSString).pathExtension.lowercased()
      guard extensions.contains(ext) else { continue }
      let path = join(directory, relative)
      if !isFolder(path) { found.append(path) }
    }
    return sortedByBytes(found)
  }

  /// `path label` lines of `file`.
  static func parseList(_ file: String, directory: String) throws -> [(path: String, label: Int?)] {
    let text = String(decoding: try FileIO.read(file), as: UTF8.self)
    var listed: [(path: String, label: Int?)] = []
    for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      guard let space = line.lastIndex(where: { $0 == " " || $0 == "\t" }),
        let label = Int(line[line.index(after: space)...]), label >= 0
      else {
        throw LowbitError.invalidInput("\(file):\(number + 1): expected 'path label' (a non-negative integer label), got '\(line)'")
      }
      let name = line[..<space].trimmingCharacters(in: .whitespaces)
      let path = name.hasPrefix("/") ? name : join(directory, name)
      guard FileManager.default.fileExists(atPath: path), !isFolder(path) else {
        throw LowbitError.io("\(file):\(number + 1): \(path): no such file")
      }
      listed.append((path, label))
    }
    return listed
  }

  static func join(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
  }

  static func isFolder(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
  }

  static func sortedByBytes(_ names: [String]) -> [String] {
    names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
  }
}

/// Rows of an image input: each image decoded, resized, cropped and normalized when its batch is
/// read, the images of a batch on all cores.
struct ImageRows: RowSource {
  let files: [String]
  let preprocessing: ImagePreprocessing
  /// The size every row has (the crop, or the exact resize).
  let size: ImageSize

  var rowShape: [Int] { preprocessing.rowShape(for: size) }

  func rows(at indices: [Int]) throws -> Tensor {
    let width = rowShape.reduce(1, *)
    let rows: [Result<[Float], LowbitError>] = parallelIndexedMap(indices.count, costPerItem: 1 << 20) { k in
      let path = files[indices[k]]
      do {
        let image = try ImageDecoding.decode(contentsOf: path)
        guard image.width > 0, image.height > 0 else { throw LowbitError.invalidInput("\(path): an image of no pixels") }
        return .success(preprocessing.row(image).values)
      } catch let error as LowbitError {
        return .failure(error)
      } catch {
        return .failure(LowbitError.io("\(path): \(error)"))
      }
    }
    var values: [Float] = []
    values.reserveCapacity(indices.count * width)
    for row in rows {
      let v = try row.get()
      guard v.count == width else {
        throw LowbitError.invalidInput("images: a row of \(v.count) values where \(width) were expected")
      }
      values += v
    }
    return Tensor(dtype: .float32, shape: [indices.count] + rowShape, storage: .float(values))
  }
}
