"""Orchestration: data sets and protocol, the single-trial runner, later sweeps and reports.

`harness` may import `methods` and `encoders`; neither of them imports `harness`.
"""
