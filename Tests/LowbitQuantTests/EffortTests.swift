import Foundation
import LowbitCore
import LowbitQuant
import Testing

@Suite struct EffortTests {
  @Test func presetsSetTheirStepsAndDefaultChangesNothing() {
    let base = QuantConfig()
    #expect(Effort.default.applied(to: base) == base)
    let fast = Effort.fast.applied(to: base)
    #expect(!fast.adaRound && !fast.runsQuantizerTuning)
    #expect(fast.biasCorrection.resolved(hasData: true, adaRound: fast.adaRound) == .empirical)
    let best = Effort.best.applied(to: base)
    #expect(best.adaRound && best.adaRoundOptions.unit == .block && best.runsQuantizerTuning)
    var four = base
    four.weightBits = 4
    let fastFour = Effort.fast.applied(to: four)
    #expect(fastFour.adaRound && fastFour.adaRoundOptions.iterations == Effort.fastAdaRoundIterations)
    // Everything else is left as it was.
    var other = base
    other.weightBits = 4
    other.perChannel = true
    #expect(Effort.best.applied(to: other).weightBits == 4 && Effort.fast.applied(to: other).perChannel)
  }

  @Test func adaRoundStepsFollowTheWeightGrid() throws {
    func steps(bits: Int, perChannel: Bool, group: Int? = nil, _ edit: (inout AdaRoundOptions) -> Void = { _ in }) -> Int {
      var c = QuantConfig()
      c.weightBits = bits
      c.perChannel = perChannel
      c.weightGroupSize = group
      edit(&c.adaRoundOptions)
      return c.adaRoundInUse.iterations
    }
    #expect(steps(bits: 8, perChannel: true) == 150 && steps(bits: 16, perChannel: true) == 150)
    #expect(steps(bits: 8, perChannel: false, group: 32) == 150)
    #expect(steps(bits: 8, perChannel: false) == 500 && steps(bits: 4, perChannel: true) == 500)
    // `--adaround-iterations N` is N for every grid.
    #expect(steps(bits: 8, perChannel: true) { $0.setIterations(500) } == 500)
    #expect(steps(bits: 4, perChannel: true) { $0.setIterations(30) } == 30)
    // A config file may set either count; an unset one keeps its default.
    let o = try JSONDecoder().decode(AdaRoundOptions.self, from: Data(#"{"iterations": 40}"#.utf8))
    #expect(o.iterations == 40 && o.perChannelEightBitIterations == 150)
    var bad = AdaRoundOptions()
    bad.perChannelEightBitIterations = 0
    #expect(throws: LowbitError.self) { try bad.validate() }
  }
}
