import Foundation
import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct DataTests {
  @Test func splitMix64MatchesTheReferenceStream() {
    // First outputs for seed 0 (the published SplitMix64 test vector).
    var g = SplitMix64(seed: 0)
    #expect([g.next(), g.next(), g.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
  }

  @Test func uniformIsInRangeAndCoversIt() {
    var g = SplitMix64(seed: 7)
    var seen = Set<Int>()
    for _ in 0..<1000 {
      let v = g.uniform(below: 5)
      #expect(v >= 0 && v < 5)
      seen.insert(v)
    }
    #expect(seen.count == 5)
  }

  @Test func shufflingIsAReproducibleDifferentPermutationPerEpoch() throws {
    let s = EpochShuffler(count: 50, seed: 42)
    let e0 = s.order(epoch: 0), e1 = s.order(epoch: 1)
    #expect(e0.sorted() == Array(0..<50))
    #expect(e1.sorted() == Array(0..<50))
    #expect(e0 != e1)
    #expect(e0 == EpochShuffler(count: 50, seed: 42).order(epoch: 0))
    #expect(e0 != EpochShuffler(count: 50, seed: 43).order(epoch: 0))
    let batches = s.batches(epoch: 3, batchSize: 16)
    #expect(batches.map(\.count) == [16, 16, 16, 2])
    #expect(batches.flatMap { $0 } == s.order(epoch: 3))
    #expect(s.batches(epoch: 3, batchSize: 16, dropLast: true).count == 3)
  }

  @Test func augmentationCropsWithZeroPaddingAndFlips() throws {
    let images = randomTensor([3, 2, 6, 5], seed: 50)
    var g = SplitMix64(seed: 1)
    #expect(try ImageAugmentation(padding: 0, horizontalFlip: false).apply(to: images, using: &g) == images)
    // Same seed, same batch; every output is a shifted, maybe mirrored copy of its input.
    var g1 = SplitMix64(seed: 9), g2 = SplitMix64(seed: 9)
    let aug = ImageAugmentation(padding: 2, horizontalFlip: true)
    let a = try aug.apply(to: images, using: &g1), b = try aug.apply(to: images, using: &g2)
    #expect(a == b)
    let x = images.floats, y = a.floats
    for n in 0..<3 {
      var matched = false
      for dy in -2...2 { for dx in -2...2 { for flip in [false, true] {
        var ok = true
        for c in 0..<2 { for row in 0..<6 { for col in 0..<5 {
          let sy = row + dy, sx = (flip ? 4 - col : col) + dx
          let expected: Float = sy >= 0 && sy < 6 && sx >= 0 && sx < 5 ? x[((n * 2 + c) * 6 + sy) * 5 + sx] : 0
          if y[((n * 2 + c) * 6 + row) * 5 + col] != expected { ok = false }
        } } }
        matched = matched || ok
      } } }
      #expect(matched, "image \(n) is not a crop/flip of its input")
    }
    #expect(a != images)
  }

  @Test func gatherBatchTakesSamplesInOrder() {
    let data = Tensor(shape: [4, 2], floats: [0, 1, 2, 3, 4, 5, 6, 7])
    #expect(gatherBatch(data, indices: [2, 0]) == Tensor(shape: [2, 2], floats: [4, 5, 0, 1]))
  }
}
