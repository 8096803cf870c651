"""`python -m t2vkit` (what `torchrun -m t2vkit train ...` runs)."""

from t2vkit.cli import main

if __name__ == "__main__":
    main()
