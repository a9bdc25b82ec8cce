"""Latency and throughput benchmarks: FP32 vs INT8, backends, end to end and under load."""
