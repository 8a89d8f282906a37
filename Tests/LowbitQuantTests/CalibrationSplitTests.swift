import LowbitCore
import LowbitData
import Testing

@testable import LowbitQuant

@Suite struct CalibrationSplitTests {
  static let graph = Graph(
    nodes: [Node(name: "r", opType: "Relu", inputs: ["x"], outputs: ["y"])],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)])

  /// Batch `b` holds the single value `b`, so a batch names itself.
  static func batches(_ n: Int) -> FeedBatches {
    FeedBatches((0..<n).map { ["x": Tensor(shape: [1, 1], floats: [Float($0)])] })
  }

  static func picked(_ b: FeedBatches) throws -> [Int] { try b.loaded().map { Int($0["x"]!.floats[0]) } }

  /// The last eighth of the samples is held out; the layer-by-layer steps take all fitting
  /// batches when they fit, else a seeded sample spread over the whole set, in order.
  @Test func fittingSampleSpreadsOverTheSet() throws {
    let split = try CalibrationSplit(Self.batches(32), graph: Self.graph)
    #expect(split.isHeldOut && split.fitting.count == 28 && split.heldOut.count == 4)
    #expect(try Self.picked(split.fittingSample(28, seed: 0)) == Array(0..<28))
    #expect(try Self.picked(split.fittingSample(100, seed: 0)) == Array(0..<28))
    let sample = try Self.picked(split.fittingSample(7, seed: 0))
    #expect(sample.count == 7 && sample == sample.sorted() && Set(sample).count == 7)
    #expect(sample.allSatisfy { (0..<28).contains($0) })
    #expect(try Self.picked(split.fittingSample(7, seed: 0)) == sample)
    // Over seeds, every fitting batch is drawn, the last ones as often as the first.
    var drawn = [Int](repeating: 0, count: 28)
    for seed in 0..<200 { for b in try Self.picked(split.fittingSample(7, seed: UInt64(seed))) { drawn[b] += 1 } }
    #expect(drawn.allSatisfy { $0 > 20 }, "\(drawn)")  // 50 expected each
    #expect(try Self.picked(split.fittingSample(0, seed: 0)).count == 1)
  }
}
