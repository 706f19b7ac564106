"""``python -m adaptim.algorithms``: rewrite the kernels' generated hyperparameter fields."""

from adaptim.algorithms import write_generated_sources

for path in write_generated_sources():
    print(f"wrote {path}")
