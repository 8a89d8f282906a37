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
}
