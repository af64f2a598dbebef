"""Benchmarks of Pare: `python -m bench.run [--quick]` reruns every suite and rewrites bench/RESULTS.md.

Each suite is one module (quality, speed, latency, scale, picogpt) that writes
bench/results/<suite>_<model>.json through `bench.common.write_result`; `bench.report` turns those
files, and only those files, into RESULTS.md and the plots. See bench/README.md.
"""
