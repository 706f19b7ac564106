"""The adaptim lab: runs the textbook comparisons for real and writes a report.

A tool layer on top of the library (the library never imports it). One module per concern:

- :mod:`adaptim.lab.tasks`   the experiments (2-D surfaces, digits MLP/CNN, adding problem,
  online drift, deep sigmoid vs ReLU/He vs batch norm, exploding RNN, AdamW vs Adam+L2);
- :mod:`adaptim.lab.sweep`   per-optimizer learning-rate grids (DeepOBS-style log-spaced sweep);
- :mod:`adaptim.lab.probes`  measurements read from an optimizer (state bytes, effective lr);
- :mod:`adaptim.lab.runner`  plans and executes the runs (sweep, then seeds), survives Ctrl-C;
- :mod:`adaptim.lab.summary` per-run and per-(task, variant, optimizer) numbers;
- :mod:`adaptim.lab.claims`  the verdict on each claim of the mission, computed from the runs;
- :mod:`adaptim.lab.plots`   matplotlib figures (PNG bytes);
- :mod:`adaptim.lab.report`  report.html (self-contained), metrics.json and CSV files;
- :mod:`adaptim.lab.command` the ``adaptim compare`` command line.

Nothing here downloads data: the digits are scikit-learn's bundled ``load_digits``, every other
task is generated.
"""
