"""The standing chaos suite: a whole cluster of real processes, a verifiable write load and
random faults for N rounds (`make chaos ROUNDS=N SEED=S`, or `python -m tests.chaos`)."""
