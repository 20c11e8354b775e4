"""
Benchmark suite: CEM-AH, CEM and the paper's baselines through rl-zoo3 on the paper's environments.

- :mod:`benchmarks.suite.protocol`: envs, algorithms, budgets, seeds (the quick, full and probe suites);
- :mod:`benchmarks.suite.run`: the resumable runner, ``python -m benchmarks.suite.run --suite quick``;
- :mod:`benchmarks.suite.zoo_train`: ``rl_zoo3.train`` plus evaluation timings and the wall-clock cap;
- :mod:`benchmarks.suite.results`: a run's raw files to CSVs and metrics;
- :mod:`benchmarks.suite.report`: ``docs/benchmarks/README.md`` and the plots.
"""
