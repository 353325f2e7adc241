"""Speed of the compiled RoIAlign / RoDAlign kernels vs the pure-torch references.

    .venv/bin/python benchmarks/ops_speed.py [--runs 50] [--threads 1] [--boxes 200] [--json]

Realistic case of the view-ranking model: a 384x256 input at stride 16 -> features [1, 8, 16, 24],
``--boxes`` candidate crops from the GAIC grid (``grid_candidates``, repeated when it has fewer), 9x9 output,
sampling_ratio 2, aligned. For each op and backend: forward under ``torch.inference_mode`` and forward + backward
(gradient w.r.t. the features, as in training); medians over ``--runs`` after 5 warm-up runs.
The two backends are also checked to agree (max abs difference printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _median_ms(fn, runs: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--boxes", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import torch

    from autocrop import ops
    from autocrop.candidates import grid_candidates

    if not ops.compiled_status()[0]:
        raise SystemExit(f"compiled ops unavailable: {ops.compiled_status()[1]}")
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 8, 16, 24, generator=generator)
    boxes = torch.as_tensor(grid_candidates(384, 256), dtype=torch.float32)
    order = torch.randperm(len(boxes), generator=generator)
    boxes = boxes[order[torch.arange(args.boxes) % len(boxes)]]  # the grid has < 200 at 384x256: wrap around
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    params = ((9, 9), 1 / 16, 2, True)

    references = {"roi_align": ops.roi_align_reference, "rod_align": ops.rod_align_reference}
    results = {
        "threads": args.threads, "rois": len(rois), "features": list(features.shape), "output": [9, 9], "ops": {},
    }
    for name, reference in references.items():

        def compiled(f, name=name):
            return ops._CompiledAlign.apply(f, rois, name, *params)

        def torch_ref(f, reference=reference):
            return reference(f, rois, *params)

        entry = {}
        with torch.inference_mode():
            entry["max_abs_diff"] = float((compiled(features) - torch_ref(features)).abs().max())
        for label, fn in (("compiled", compiled), ("torch", torch_ref)):

            def forward(fn=fn):
                with torch.inference_mode():
                    fn(features)

            def forward_backward(fn=fn):
                leaf = features.detach().requires_grad_(True)
                fn(leaf).sum().backward()

            entry[label] = {
                "forward_ms": _median_ms(forward, args.runs),
                "forward_backward_ms": _median_ms(forward_backward, args.runs),
            }
        entry["speedup_forward"] = entry["torch"]["forward_ms"] / entry["compiled"]["forward_ms"]
        fwd_bwd = {label: entry[label]["forward_backward_ms"] for label in ("compiled", "torch")}
        entry["speedup_forward_backward"] = fwd_bwd["torch"] / fwd_bwd["compiled"]
        results["ops"][name] = entry

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"features {results['features']}, {results['rois']} rois, 9x9 output, sampling_ratio 2, "
          f"{args.threads} thread(s), median of {args.runs} runs")
    print(f"{'op':<10} {'backend':<9} {'forward ms':>11} {'fwd+bwd ms':>11}")
    for name, entry in results["ops"].items():
        for label in ("compiled", "torch"):
            times = entry[label]
            print(f"{name:<10} {label:<9} {times['forward_ms']:>11.3f} {times['forward_backward_ms']:>11.3f}")
        print(f"{name:<10} {'speedup':<9} {entry['speedup_forward']:>10.1f}x "
              f"{entry['speedup_forward_backward']:>10.1f}x   (max |compiled - torch| = {entry['max_abs_diff']:.2e})")


if __name__ == "__main__":
    main()
