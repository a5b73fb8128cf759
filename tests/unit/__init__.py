"""Fast unit tests: pure code only, no broker, no network, no wall clock."""
