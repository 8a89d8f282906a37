import LowbitCLI

Lowbit.main()
