import Foundation
import LowbitCore
import Testing

@testable import LowbitData

/// `.npy` inputs stay on disk and are read a batch of rows at a time.
@Suite final class DataColumnTests {
  let directory: URL
  init() throws { directory = try makeTemporaryDirectory() }
  deinit { try? FileManager.default.removeItem(at: directory) }

  func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  @Test func fileRowsEqualTheWholeArraysRows() throws {
    let x = Tensor(shape: [5, 2, 3], floats: (0..<30).map { Float($0) * 0.5 - 3 })
    let u = Tensor(dtype: .uint8, shape: [5, 4], storage: .int((0..<20).map { Int64($0 * 13 % 256) }))
    try NPY.write(x, to: path("x.npy"))
    try NPY.write(u, to: path("u.npy"))
    for (name, whole) in [("x.npy", x), ("u.npy", u)] {
      let column = try NPY.column(path: path(name))
      #expect(column.path == path(name) && column.shape == whole.shape && column.dtype == whole.dtype)
      #expect(try column.loaded() == whole)
      #expect(try column.rows(1..<4) == DataColumn.rows(whole, 1..<4))
      #expect(try column.rows(4..<5) == DataColumn.rows(whole, 4..<5))
      #expect(try column.prefix(2).rows(0..<2) == DataColumn.rows(whole, 0..<2))
    }
    let onDisk = try DataSpec.parse("npy:\(path("x.npy"))").load()
    let inMemory = try Dataset(inputs: [(nil, x)], source: "inline")
    #expect(onDisk.inputs[0].column.path != nil)
    for range in onDisk.batches(size: 2) {
      #expect(try onDisk.batch(range).inputs[0].tensor == inMemory.batch(range).inputs[0].tensor)
    }
  }

  /// A file cut short or padded is refused when the spec is loaded, and one that shrinks after
  /// that is an I/O error when its rows are read, never a crash.
  @Test func aChangedFileIsAnErrorNotACrash() throws {
    let x = Tensor(shape: [4, 8], floats: (0..<32).map(Float.init))
    let bytes = NPY.encode(x)
    for (name, content) in [("short.npy", Array(bytes.dropLast(4))), ("long.npy", bytes + [0, 0, 0, 0]), ("tiny.npy", Array(bytes.prefix(7)))] {
      try Data(content).write(to: URL(fileURLWithPath: path(name)))
      #expect(throws: LowbitError.self) { try DataSpec.parse("npy:\(self.path(name))").load() }
    }
    try Data(bytes).write(to: URL(fileURLWithPath: path("x.npy")))
    let data = try DataSpec.parse("npy:\(path("x.npy"))").load()
    try Data(bytes.prefix(bytes.count - 64)).write(to: URL(fileURLWithPath: path("x.npy")))
    let error = try #require(throws: LowbitError.self) { try data.batch(2..<4) }
    #expect(error.kind == .io && error.message.contains("x.npy"), "\(error)")
  }

  /// Batches read from a data set equal the feeds built in memory; slices keep their ranges.
  @Test func feedBatchesReadTheirRowsWhenAsked() throws {
    let x = Tensor(shape: [7, 3], floats: (0..<21).map(Float.init))
    try NPY.write(x, to: path("x.npy"))
    let graph = Graph(
      nodes: [Node(name: "r", opType: "Relu", inputs: ["in"], outputs: ["out"])],
      inputs: [ValueInfo(name: "in", dtype: .float32, shape: [.symbol("N"), .fixed(3)])],
      outputs: [ValueInfo(name: "out", dtype: .float32)])
    let data = try DataSpec.parse("npy:\(path("x.npy"))").load()
    let batches = try FeedBatches(data, graph: graph, batchSize: 3, limit: 6)
    #expect(batches.count == 2)
    #expect(try batches.sampleCounts(graph: graph) == [3, 3])
    #expect(try batches.batch(1)["in"] == DataColumn.rows(x, 3..<6))
    let loaded = try batches.loaded()
    #expect(try FeedBatches(loaded).sampleCounts(graph: graph) == [3, 3])
    #expect(try batches.picking([1, 0]).loaded().map { $0["in"]! } == [loaded[1]["in"]!, loaded[0]["in"]!])
    #expect(try batches.suffix(1).first()?["in"] == loaded[1]["in"])
    #expect(try FeedBatches(data, graph: graph, batchSize: 4).sampleCounts(graph: graph) == [4, 3])
  }
}
