"""Named workloads: models, inputs and their accuracy metrics."""
