"""What this process's fused paths did, for tests and benchmarks; the library never reads it.

``calls`` counts C kernel calls, ``launches`` Triton kernel launches, ``plan_builds`` the group
plans built, ``plan_hits`` the steps a cached plan ran without looking at a tensor one by one.
"""

calls = 0
launches = 0
plan_builds = 0
plan_hits = 0
