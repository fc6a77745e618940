"""Latency of each stage (decode: one token per context length). See conftest.py for the options."""


def test_stage_latency(bench_stage, time_stage_benchmark):
    time_stage_benchmark(bench_stage)
