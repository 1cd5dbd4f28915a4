"""`python -m prober`: the same as the `prober` executable."""

from prober.main import main

main()
