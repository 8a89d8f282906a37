/// What the environment says about how this process was started: MPI launchers set variables
/// before starting each rank, so a plain `lowbit` never initializes MPI and never needs `mpirun`.
public enum MPILaunch {
  /// Variables set by the launchers lowbit recognizes: OpenMPI's `mpirun`
  /// (`OMPI_COMM_WORLD_SIZE`), PMIx launchers such as OpenMPI 4+ and Slurm's `srun --mpi=pmix`
  /// (`PMIX_RANK`), and PMI-1/2 launchers such as MPICH's Hydra and `srun --mpi=pmi2` (`PMI_RANK`).
  public static let variables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"]

  /// Whether an MPI launcher started this process (one of `variables` is set).
  public static func isLaunched(environment: [String: String]) -> Bool {
    variables.contains { environment[$0] != nil }
  }

  /// The number of ranks the launcher started on this machine, when it says
  /// (`OMPI_COMM_WORLD_LOCAL_SIZE`, `MPI_LOCALNRANKS`), else nil.
  public static func localSize(environment: [String: String]) -> Int? {
    for name in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"] {
      if let text = environment[name], let n = Int(text), n > 0 { return n }
    }
    return nil
  }
}
