"""The cost model: training (layout, step time, goodput) and serving; pure numpy, no I/O."""
