"""Design-space studies: sweeps, results store, Pareto fronts, plots."""
