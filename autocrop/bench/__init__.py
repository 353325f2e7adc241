"""Benchmarks: quality metrics (GAICD Acc_K/N, SRCC, PCC; FCDB/FLMS IoU, Disp), baselines, speed.

``metrics`` and ``baselines`` are pure numpy; ``runner.run_bench`` measures one dataset through a
:class:`autocrop.cropper.Cropper` (the code path of ``autocrop crop``) and returns a report dict that
``report`` renders and saves. Nothing here reads the config file or the environment: the ``bench``
command hands every folder, model and device in as parameters.
"""
