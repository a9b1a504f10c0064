"""Ground truth for attribution methods: a reasoning task whose anchors are known, and a benchmark that
scores the anchors pipeline against them (see docs/ground_truth.md)."""
