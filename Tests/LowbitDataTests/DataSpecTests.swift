import Foundation
import LowbitCore
import Testing

@testable import LowbitData

@Suite struct DataSpecParsingTests {
  typealias F = DataSpec.NamedFile

  @Test func parsesEveryForm() throws {
    let cases: [(String, DataSpec)] = [
      ("fashion-mnist:test", .fashionMNIST(split: .test, limit: nil)),
      ("fashion-mnist:train", .fashionMNIST(split: .train, limit: nil)),
      ("fashion-mnist:test:1000", .fashionMNIST(split: .test, limit: 1000)),
      ("npy:inputs.npy", .npy(inputs: [F(name: nil, path: "inputs.npy")], labels: nil)),
      (
        "npy:dir/in.npy,dir/labels.npy",
        .npy(inputs: [F(name: nil, path: "dir/in.npy")], labels: "dir/labels.npy")
      ),
      (
        "npy:input_ids=a.npy,attention_mask=b.npy",
        .npy(
          inputs: [F(name: "input_ids", path: "a.npy"), F(name: "attention_mask", path: "b.npy")],
          labels: nil)
      ),
      (
        "npy:input_ids=a.npy,labels=c.npy,attention_mask=b.npy",
        .npy(
          inputs: [F(name: "input_ids", path: "a.npy"), F(name: "attention_mask", path: "b.npy")],
          labels: "c.npy")
      ),
      (
        "npy:input.1=/tmp/x=y.npy",
        .npy(inputs: [F(name: "input.1", path: "/tmp/x=y.npy")], labels: nil)
      ),
      ("npz:file.npz", .npz(path: "file.npz")),
      ("npz:/a:b/file.npz", .npz(path: "/a:b/file.npz")),
      ("images:photos", .images(directory: "photos", limit: nil, labels: .none, seed: 0)),
      ("images:/a:b/photos:500", .images(directory: "/a:b/photos", limit: 500, labels: .none, seed: 0)),
      ("images:train,labels=folders,seed=7", .images(directory: "train", limit: nil, labels: .folders, seed: 7)),
      ("images:val:10,labels=val.txt,sorted", .images(directory: "val", limit: 10, labels: .list("val.txt"), seed: nil)),
    ]
    for (text, expected) in cases {
      let spec = try DataSpec.parse(text)
      #expect(spec == expected, "\(text)")
      #expect(try DataSpec.parse(spec.description) == spec, "\(text)")
    }
  }

  @Test(arguments: [
    "", "inputs.npy", "foo:bar", "mnist:test", "fashion-mnist:", "fashion-mnist:val",
    "fashion-mnist:test:0",
    "fashion-mnist:test:-5", "fashion-mnist:test:ten", "fashion-mnist:test:10:2", "npy:",
    "npy:a.npy,",
    "npy:a.npy,b.npy,c.npy", "npy:a=x.npy,b.npy", "npy:a=x.npy,a=y.npy", "npy:labels=y.npy",
    "npy:=x.npy",
    "npy:a=", "npz:", "images:", "images:d:0", "images:d,labels=", "images:d,seed=x", "images:d,shuffle",
  ])
  func refusesBadForms(text: String) {
    #expect(throws: LowbitError.self) { try DataSpec.parse(text) }
  }

  @Test func unknownSchemeNamesTheForms() {
    do {
      _ = try DataSpec.parse("csv:data.csv")
      Issue.record("expected an error")
    } catch let error as LowbitError {
      #expect(error.kind == .invalidArgument)
      #expect(error.message.contains("csv") && error.message.contains("npy:"))
    } catch {
      Issue.record("unexpected \(error)")
    }
  }
}

@Suite final class DataSpecLoadingTests {
  let directory: URL
  init() throws { directory = try makeTemporaryDirectory() }
  deinit { try? FileManager.default.removeItem(at: directory) }

  func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  func write(_ name: String, _ tensor: Tensor) throws { try NPY.write(tensor, to: path(name)) }

  @Test func loadsOneUnnamedInput() throws {
    try write("x.npy", Tensor(shape: [4, 2], floats: (0..<8).map(Float.init)))
    let data = try DataSpec.parse("npy:\(path("x.npy"))").load()
    #expect(data.count == 4)
    #expect(data.inputs.count == 1 && data.inputs[0].name == nil)
    #expect(data.labels == nil)
    try data.validateFinite()
  }

  @Test func loadsInputAndLabels() throws {
    try write("x.npy", Tensor(shape: [3, 2], floats: Array(repeating: 1, count: 6)))
    try write("y.npy", Tensor(dtype: .uint8, shape: [3], storage: .int([2, 0, 1])))
    try write("yf.npy", Tensor(shape: [3, 1], floats: [2, 0, 1]))
    for labels in ["y.npy", "yf.npy"] {
      let data = try DataSpec.parse("npy:\(path("x.npy")),\(path(labels))").load()
      #expect(data.labels == Tensor(shape: [3], ints: [2, 0, 1]))
    }
  }

  @Test func loadsNamedInputs() throws {
    try write("a.npy", Tensor(shape: [2, 5], ints: Array(0..<10)))
    try write("b.npy", Tensor(shape: [2, 5], bools: Array(repeating: true, count: 10)))
    try write("c.npy", Tensor(shape: [2], ints: [1, 0]))
    let data = try DataSpec.parse(
      "npy:input_ids=\(path("a.npy")),attention_mask=\(path("b.npy")),labels=\(path("c.npy"))"
    ).load()
    #expect(data.inputs.map(\.name) == ["input_ids", "attention_mask"])
    #expect(data.inputs[1].column.dtype == .bool)
    #expect(data.labels?.ints == [1, 0])
  }

  @Test func loadsNPZ() throws {
    let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
    try NPZ.write(
      [("pixels", x), ("labels", Tensor(shape: [2], ints: [5, 6]))], to: path("d.npz"))
    let data = try DataSpec.parse("npz:\(path("d.npz"))").load()
    #expect(try data.inputs.count == 1 && data.inputs[0].name == nil && data.inputs[0].column.loaded() == x)
    #expect(data.labels?.ints == [5, 6])
    try NPZ.write([("a", x), ("b", x)], to: path("two.npz"))
    #expect(try DataSpec.parse("npz:\(path("two.npz"))").load().inputs.map(\.name) == ["a", "b"])
    try NPZ.write([("labels", Tensor(shape: [2], ints: [5, 6]))], to: path("labels-only.npz"))
    #expect(throws: LowbitError.self) {
      try DataSpec.parse("npz:\(path("labels-only.npz"))").load()
    }
  }

  @Test func refusesMismatchedOrBadData() throws {
    try write("x3.npy", Tensor(shape: [3, 2], floats: Array(repeating: 0, count: 6)))
    try write("x4.npy", Tensor(shape: [4, 2], floats: Array(repeating: 0, count: 8)))
    try write("y4.npy", Tensor(shape: [4], ints: [0, 1, 2, 3]))
    try write("yhalf.npy", Tensor(shape: [3], floats: [0, 1.5, 2]))
    try write("ybool.npy", Tensor(shape: [3], bools: [true, false, true]))
    try write("y2d.npy", Tensor(shape: [3, 2], ints: Array(0..<6)))
    try write("scalar.npy", Tensor(scalar: 1))
    try write("empty.npy", Tensor(shape: [0, 2], floats: []))
    let bad = [
      "npy:\(path("x3.npy")),\(path("y4.npy"))",
      "npy:a=\(path("x3.npy")),b=\(path("x4.npy"))",
      "npy:\(path("x3.npy")),\(path("yhalf.npy"))",
      "npy:\(path("x3.npy")),\(path("ybool.npy"))",
      "npy:\(path("x3.npy")),\(path("y2d.npy"))",
      "npy:\(path("scalar.npy"))",
      "npy:\(path("empty.npy"))",
      "npy:\(path("missing.npy"))",
      "npz:\(path("missing.npz"))",
      "npz:\(path("x3.npy"))",
    ]
    for text in bad {
      #expect(throws: LowbitError.self, "\(text)") { try DataSpec.parse(text).load() }
    }
  }

  @Test func validateFiniteNamesFileAndIndex() throws {
    var values = [Float](repeating: 0, count: 12)
    values[7] = .nan
    try write("nan.npy", Tensor(shape: [2, 3, 2], floats: values))
    let data = try DataSpec.parse("npy:\(path("nan.npy"))").load()
    do {
      try data.validateFinite()
      Issue.record("expected an error")
    } catch let error as LowbitError {
      #expect(error.kind == .invalidInput)
      #expect(
        error.message.contains("nan.npy") && error.message.contains("[1, 0, 1]")
          && error.message.contains("NaN"))
    }
    values[7] = 0
    values[11] = -.infinity
    let inf = try Dataset(
      inputs: [("x", Tensor(shape: [2, 3, 2], floats: values))], source: "inline")
    #expect(throws: LowbitError.self) { try inf.validateFinite() }
  }

  @Test func batchesSliceAlongTheFirstDimension() throws {
    let x = Tensor(shape: [5, 2], floats: (0..<10).map(Float.init))
    let mask = Tensor(shape: [5, 2], bools: (0..<10).map { $0 % 3 == 0 })
    let data = try Dataset(
      inputs: [("x", x), ("mask", mask)], labels: Tensor(shape: [5], ints: [0, 1, 2, 3, 4]),
      source: "inline")
    #expect(data.batches(size: 2) == [0..<2, 2..<4, 4..<5])
    #expect(data.batches(size: 5) == [0..<5])
    #expect(data.batches(size: 8) == [0..<5])
    let batch = try data.batch(2..<4)
    #expect(batch.inputs[0].tensor == Tensor(shape: [2, 2], floats: [4, 5, 6, 7]))
    #expect(batch.inputs[1].tensor == Tensor(shape: [2, 2], bools: [false, false, true, false]))
    #expect(batch.labels == Tensor(shape: [2], ints: [2, 3]))
    #expect(data.prefix(3).count == 3)
    #expect(data.prefix(3).labels?.ints == [0, 1, 2])
  }
}

/// Fashion-MNIST through its spec; serialized because one test sets the directory variable.
@Suite(.serialized, .enabled(if: IDXTests.hasFashionMNIST))
struct FashionMNISTSpecTests {
  @Test func loadsNormalizedTestSamples() throws {
    let data = try DataSpec.parse("fashion-mnist:test:100").load()
    #expect(data.count == 100)
    #expect(data.inputs[0].column.shape == [100, 1, 28, 28])
    #expect(data.inputs[0].name == nil)
    #expect(data.labels?.shape == [100])
    #expect(data.labels?.ints.first == 9)
    let pixels = try data.inputs[0].column.loaded().floats
    #expect(abs(pixels.min()! - (-0.2860 / 0.3530)) < 1e-5)
    #expect(abs(pixels.max()! - (1 - 0.2860) / 0.3530) < 1e-5)
    try data.validateFinite()
  }

  @Test func loadsTheWholeTestSplit() throws {
    let data = try DataSpec.parse("fashion-mnist:test").load()
    #expect(data.count == 10000)
    // python3: ((x / 255 - 0.2860) / 0.3530).mean() over the test images
    let images = try data.inputs[0].column.loaded()
    let mean = images.floats.reduce(0.0) { $0 + Double($1) } / Double(images.count)
    #expect(abs(mean - 0.0024058943690791544) < 1e-5)
    #expect(throws: LowbitError.self) { try DataSpec.parse("fashion-mnist:test:10001").load() }
  }

  @Test func missingFilesSayHowToInstall() throws {
    let empty = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: empty) }
    do {
      _ = try DataSpec.parse("fashion-mnist:train").load(fashionMNISTDirectory: empty.path)
      Issue.record("expected an error")
    } catch let error as LowbitError {
      #expect(error.kind == .io)
      #expect(error.message.contains("apt-get install dataset-fashion-mnist"))
      #expect(error.message.contains(empty.path))
    }
  }
}
