import LowbitDistributed
import Testing

/// Launch detection: a plain process never starts MPI; OpenMPI, PMIx and PMI launchers are
/// recognized; the local rank count comes from the launcher when it says.
@Suite struct MPILaunchTests {
  @Test func detectsTheLaunchers() {
    #expect(!MPILaunch.isLaunched(environment: [:]))
    #expect(!MPILaunch.isLaunched(environment: ["PATH": "/usr/bin", "OMPI_MCA_foo": "1"]))
    #expect(MPILaunch.isLaunched(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
    #expect(MPILaunch.isLaunched(environment: ["PMIX_RANK": "0"]))
    #expect(MPILaunch.isLaunched(environment: ["PMI_RANK": "3"]))
  }

  @Test func localSize() {
    #expect(MPILaunch.localSize(environment: [:]) == nil)
    #expect(MPILaunch.localSize(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2"]) == 2)
    #expect(MPILaunch.localSize(environment: ["MPI_LOCALNRANKS": "4"]) == 4)
    #expect(MPILaunch.localSize(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "zero"]) == nil)
  }

  @Test func mpiIsNotStartedByLinkingIt() {
    #expect(!MPICollective.isActive)
  }
}
