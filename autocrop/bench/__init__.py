"""Benchmarks: quality metrics (GAICD Acc_K/N, SRCC, PCC; FCDB/FLMS IoU, Disp), baselines, speed.

``metrics`` and ``baselines`` are pure numpy; ``runner.run_bench`` measures one dataset through the
model's scoring path and returns a report dict that ``report`` renders and saves.
"""
