"""Development helpers, not used when serving: tiny random-init models and synthetic photos for
tests, benchmarks and trying the commands without weights."""
