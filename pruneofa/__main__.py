"""`python -m pruneofa ...` and `torchrun -m pruneofa train ...`."""

from pruneofa.cli import main

if __name__ == "__main__":
    main()
