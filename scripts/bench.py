"""Benchmark RISE and occlusion against raw onnxruntime time, measured in the same run.

For each case the method runs through the public ``Method.explain`` on the EfficientNet-Lite0 zoo model at
224x224 (skimage's "chelsea" photo). Its wall time is compared with *raw onnxruntime time*: calling
``model.run_inputs(x)`` (one ``session.run`` on the model's own session) on a pre-made, already-preprocessed float32
NCHW batch, on the same session, with exactly the chunks the method used (the one-image clean pass that
``explain`` makes, then the perturbed images in chunks of the batch size, the last partial chunk included). Each
case runs ``--repeats`` (raw, method) pairs back to back and reports the median of each; the ratio is
median(wall) / median(raw). The machine may be shared: before each pair the script waits (``--settle``, up to 10 s)
for other processes to leave the CPUs idle, records how many cores they kept busy during each measurement, and
makes ``--interleaved`` extra runs (default 1) where a raw call of the same size precedes each of the method's
calls, timed apart, giving a ratio that load from other processes affects much less. It also splits the method's
wall time into onnxruntime (``session.run`` inside the run), preprocessing (the rest of ``Model._run``) and the
method side (everything outside the model).

The memory case (RISE with 8000 masks) runs alone in a fresh subprocess so that its peak RSS
(VmHWM of ``/proc/self/status``) is not polluted by the other cases; it also reports the increase
over the process's RSS right after the model is loaded.

Usage: scripts/bench [--batch-size 32] [--repeats 3] [--interleaved 1] [--settle 10] [--threads N] [--quick]
                     [--case rise|occlusion|occlusion-fine|lime ...] [--no-memory] [--json FILE] [--check]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RATIO_TARGET = 1.10
MEMORY_TARGET_BYTES = 1.5e9  # "< 1.5 GB"
IMAGE = "chelsea"
CASES = ("rise", "occlusion", "occlusion-fine", "lime")


# ---------------------------------------------------------------------------------------------------------------
# Machine and model
# ---------------------------------------------------------------------------------------------------------------


def physical_cores() -> int | None:
    """Physical cores from /proc/cpuinfo (what onnxruntime's default intra-op thread count follows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, physical, core = set(), None, None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not key:
            if core is not None:
                cores.add((physical, core))
            physical, core = None, None
    return len(cores) or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def current_rss_bytes() -> int:
    """The process's resident set size now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """Peak RSS of this process so far: VmHWM on Linux (ru_maxrss there also counts the peak of the parent that
    started this process, which survives fork and exec), ru_maxrss elsewhere (bytes on macOS)."""
    try:
        return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class CpuMeter:
    """CPU used by *other* processes (in cores), from /proc/stat minus this process's own CPU time.

    This machine may be shared; a timing taken while something else runs is not worth much, so every pair
    records how busy the rest of the machine was, and :func:`settle` waits (up to a limit) for it to go quiet.
    """

    def __init__(self) -> None:
        self.available = Path("/proc/stat").exists()
        self.tick = os.sysconf("SC_CLK_TCK") if self.available else 100

    def snapshot(self) -> tuple[float, int, int]:
        if not self.available:
            return time.perf_counter(), 0, 0
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return time.perf_counter(), user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])

    def others(self, before: tuple[float, int, int], after: tuple[float, int, int]) -> float | None:
        """Mean number of cores that other processes kept busy between two snapshots."""
        if not self.available or after[0] <= before[0]:
            return None
        busy = (after[1] - before[1]) - (after[2] - before[2])
        return max(0.0, busy / self.tick / (after[0] - before[0]))

    def settle(self, limit: float, quiet: float = 0.25) -> float | None:
        """Wait until other processes use less than ``quiet`` cores over one second, or ``limit`` seconds pass.
        Returns the last reading."""
        if not self.available or limit <= 0:
            return None
        deadline = time.perf_counter() + limit
        while True:
            before = self.snapshot()
            time.sleep(1.0)
            reading = self.others(before, self.snapshot())
            if reading is None or reading < quiet or time.perf_counter() >= deadline:
                return reading


class ChunkCounter:
    """Listens to the model's forward chunks (``model.on_forward_chunk``): counts the onnxruntime calls and, given a
    :class:`RawRunner`, makes one raw call of the same size before each of the method's chunks and times it apart.
    Raw and method calls then alternate every chunk, so a machine whose load changes over seconds slows both
    alike: a ratio robust to other processes."""

    def __init__(self, raw: "RawRunner | None" = None) -> None:
        self.calls = 0
        self.raw = raw
        self.raw_seconds = 0.0
        self.raw_session_seconds = 0.0

    def __call__(self, size: int) -> None:
        self.calls += 1
        if self.raw is not None:
            seconds, session_seconds = self.raw.timed([size])
            self.raw_seconds += seconds
            self.raw_session_seconds += session_seconds


def load_model(batch_size: int, threads: int | None):
    from blackbox_xai.zoo import efficientnet_lite0

    return efficientnet_lite0(batch_size=batch_size, providers="cpu", threads=threads)


def load_image() -> np.ndarray:
    from blackbox_xai.zoo import sample_image

    return sample_image(IMAGE)


def header_info(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime as ort

    configured = model.session.get_session_options().intra_op_num_threads
    cores = physical_cores()
    threads = configured if configured > 0 else cores
    return {
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "providers": model.providers,
        "intra_op_threads": threads,
        "intra_op_threads_source": "set" if configured > 0 else "onnxruntime default (one per physical core)",
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "physical_cores": cores,
        "cpu_model": cpu_model(),
        "batch_size": model.batch_size,
        "repeats": args.repeats,
        "image": IMAGE,
        "input_size": list(model.input_size),
        "quick": args.quick,
        "load_average_start": list(os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------


def explain_chunks(perturbed: int, batch_size: int) -> list[int]:
    """Chunk sizes of the onnxruntime calls ``Method.explain`` makes: the clean image, then the perturbed ones."""
    return [1] + [min(batch_size, perturbed - start) for start in range(0, perturbed, batch_size)]


class RawRunner:
    """Raw onnxruntime calls on a pre-made, preprocessed batch, on the model's own session
    (``model.run_inputs``: no preprocessing, no score checks)."""

    def __init__(self, model: Any, image: np.ndarray) -> None:
        from blackbox_xai.image import resize_pixels

        pixels = resize_pixels(image, model.input_size).astype(np.float32)
        one = model.preprocessor.forward(pixels[None])
        self.batch = np.ascontiguousarray(np.repeat(one, model.batch_size, axis=0), dtype=np.float32)
        assert self.batch.dtype == np.float32 and self.batch.flags.c_contiguous and self.batch.shape[1] == 3
        self.model = model

    def timed(self, chunk_sizes: list[int]) -> tuple[float, float]:
        """(seconds, of which inside session.run) for one call per chunk size (a leading slice of the batch:
        contiguous, no copy)."""
        run, batch, model = self.model.run_inputs, self.batch, self.model
        inside = model.session_seconds
        began = time.perf_counter()
        for size in chunk_sizes:
            run(batch[:size])
        return time.perf_counter() - began, model.session_seconds - inside

    def run(self, chunk_sizes: list[int]) -> float:
        """Seconds to run one call per chunk size."""
        return self.timed(chunk_sizes)[0]


def time_method(model: Any, method: Any, image: np.ndarray, raw: RawRunner | None = None) -> dict[str, Any]:
    """Run one ``explain`` and time it: wall seconds, forward passes, seconds inside ``model._run``
    (preprocessing + onnxruntime) and inside ``session.run`` alone (``model.session_seconds``). With ``raw``, a raw
    call precedes each of the method's chunks (see :class:`ChunkCounter`); its time is taken out of every figure
    and returned apart."""
    gc.collect()
    passes, inside, ort = model.forward_passes, model.forward_seconds, model.session_seconds
    counter = model.on_forward_chunk = ChunkCounter(raw)
    try:
        began = time.perf_counter()
        explanation = method.explain(model, image)
        wall = time.perf_counter() - began
    finally:
        model.on_forward_chunk = None
    result = {"raw_interleaved_s": counter.raw_seconds} if raw is not None else {}
    return {
        **result,
        "wall_s": wall - counter.raw_seconds,
        "forward_passes": model.forward_passes - passes,
        "onnxruntime_calls": counter.calls,
        "in_model_s": model.forward_seconds - inside,
        "ort_in_run_s": model.session_seconds - ort - counter.raw_session_seconds,
        "saliency": explanation.saliency,
    }


def run_case(
    name: str, method: Any, perturbed: int, model: Any, raw: RawRunner, image: np.ndarray,
    args: argparse.Namespace, meter: CpuMeter, progress: bool,
) -> dict[str, Any]:
    chunk_sizes = explain_chunks(perturbed, model.batch_size)
    raw.run(sorted(set(chunk_sizes)))  # warm up every shape the case uses
    pairs = []
    for repeat in range(args.repeats):
        settled = meter.settle(args.settle)
        gc.collect()
        start = meter.snapshot()
        raw_s = raw.run(chunk_sizes)
        middle = meter.snapshot()
        run = time_method(model, method, image)
        end = meter.snapshot()
        run.pop("saliency")
        if run["forward_passes"] != sum(chunk_sizes) or run["onnxruntime_calls"] != len(chunk_sizes):
            raise SystemExit(f"{name}: the method made {run['forward_passes']} forward passes in "
                             f"{run['onnxruntime_calls']} calls, expected {sum(chunk_sizes)} in {len(chunk_sizes)}")
        pair = {"raw_s": raw_s, **run, "ratio": run["wall_s"] / raw_s, "others_cpu_before": settled,
                "others_cpu_raw": meter.others(start, middle), "others_cpu_method": meter.others(middle, end)}
        pairs.append(pair)
        if progress:
            print(f"  {name}: pair {repeat + 1}/{args.repeats}: raw {raw_s:.2f} s, wall {run['wall_s']:.2f} s "
                  f"({pair['ratio']:.3f}x)", file=sys.stderr, flush=True)
    interleaved = []
    for repeat in range(args.interleaved):
        meter.settle(args.settle)
        start = meter.snapshot()
        run = time_method(model, method, image, raw)
        run.pop("saliency")
        run["ratio"] = run["wall_s"] / run["raw_interleaved_s"]
        run["others_cpu"] = meter.others(start, meter.snapshot())
        interleaved.append(run)
        if progress:
            print(f"  {name}: interleaved {repeat + 1}/{args.interleaved}: raw {run['raw_interleaved_s']:.2f} s, "
                  f"wall {run['wall_s']:.2f} s ({run['ratio']:.3f}x)", file=sys.stderr, flush=True)
    median = lambda key: statistics.median(p[key] for p in pairs)  # noqa: E731
    others = [v for p in pairs for v in (p["others_cpu_raw"], p["others_cpu_method"]) if v is not None]
    wall, raw_s, in_model, ort = median("wall_s"), median("raw_s"), median("in_model_s"), median("ort_in_run_s")
    ratio = wall / raw_s
    return {
        "case": name,
        "params": method.get_params(),
        "forward_passes": pairs[0]["forward_passes"],
        "onnxruntime_calls": len(chunk_sizes),
        "wall_s": wall,
        "raw_s": raw_s,
        "ratio": ratio,
        "target_ratio": RATIO_TARGET,
        "ok": ratio <= RATIO_TARGET,
        # Where the wall time goes (medians): session.run inside the method's run, the rest of Model._run
        # (to_model_input), and everything outside the model (masks/perturbation, score conversion, accumulation,
        # explain's image handling).
        "ort_in_run_s": ort,
        "preprocess_s": in_model - ort,
        "method_side_s": wall - in_model,
        "others_cpu_max": max(others) if others else None,
        "ratio_interleaved": statistics.median(r["ratio"] for r in interleaved) if interleaved else None,
        "pairs": pairs,
        "interleaved": interleaved,
    }


def speed_cases(args: argparse.Namespace, size: tuple[int, int]) -> list[tuple[str, Any, int]]:
    """(name, method, number of perturbed images) for the ratio cases."""
    from blackbox_xai.methods.occlusion import Occlusion
    from blackbox_xai.methods.rise import RISE

    n_masks = 200 if args.quick else 4000
    rise = RISE(n_masks=n_masks, cells=7, p_keep=0.5)
    cases: dict[str, tuple[str, Any, int]] = {
        "rise": (f"rise n={n_masks} cells=7 p=0.5 fill={rise.fill}", rise, n_masks),
    }
    for key, window, stride in (("occlusion", 32, 16), ("occlusion-fine", 16, 8)):
        method = Occlusion(window=window, stride=stride)
        windows = len(method.positions(*size))
        cases[key] = (f"occlusion w={window} s={stride} fill={method.fill}", method, windows)
    from blackbox_xai.methods.lime import LIME

    n_samples = 200 if args.quick else 1000
    # LIME evaluates n_samples - 1 perturbed images (the all-on sample is the clean image); quickshift is in the
    # wall time, outside the passes.
    cases["lime"] = (f"lime n={n_samples} quickshift hide=mean", LIME(n_samples=n_samples), n_samples - 1)
    return [cases[key] for key in (args.case or CASES)]


# ---------------------------------------------------------------------------------------------------------------
# Memory case (own subprocess)
# ---------------------------------------------------------------------------------------------------------------


def memory_case_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: only RISE with ``args.memory_masks`` masks. Prints one JSON line."""
    from blackbox_xai.methods.rise import RISE

    image = load_image()  # imports skimage before the baseline, so it does not count as the method's memory
    model = load_model(args.batch_size, args.threads)
    gc.collect()
    rss_after_load = current_rss_bytes()
    peak_after_load = peak_rss_bytes()
    # What onnxruntime alone needs for one full batch (its arena), for comparison: one raw call, then the method.
    raw = RawRunner(model, image)
    raw.run([model.batch_size])
    peak_after_raw = peak_rss_bytes()
    del raw
    gc.collect()
    method = RISE(n_masks=args.memory_masks, cells=7, p_keep=0.5)
    run = time_method(model, method, image)
    peak = peak_rss_bytes()
    print(json.dumps({
        "case": f"rise n={args.memory_masks} fill={method.fill} (memory)",
        "params": method.get_params(),
        "forward_passes": run["forward_passes"],
        "wall_s": run["wall_s"],
        "in_model_s": run["in_model_s"],
        "ort_in_run_s": run["ort_in_run_s"],
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_after_load_bytes": peak_after_load,
        "peak_rss_after_raw_batch_bytes": peak_after_raw,
        "raw_batch_increase_bytes": peak_after_raw - rss_after_load,
        "peak_rss_bytes": peak,
        "increase_bytes": peak - rss_after_load,
        "target_peak_bytes": MEMORY_TARGET_BYTES,
        "ok": peak < MEMORY_TARGET_BYTES,
    }))


def memory_case(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", "--batch-size", str(args.batch_size),
               "--memory-masks", str(args.memory_masks)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"memory case failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(header: dict[str, Any], cases: list[dict[str, Any]], memory: dict[str, Any] | None) -> str:
    mb = lambda b: f"{b / 1e6:,.0f} MB"  # noqa: E731
    cores = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    out = [
        f"blackbox-xai benchmark: EfficientNet-Lite0 (zoo), {header['input_size'][0]}x{header['input_size'][1]}, "
        f"image '{header['image']}'",
        f"onnxruntime {header['onnxruntime']} ({', '.join(header['providers'])}), numpy {header['numpy']}, "
        f"python {header['python']}",
        f"intra-op threads: {header['intra_op_threads']} ({header['intra_op_threads_source']})",
        f"CPUs: {header['cpu_count']} logical, {header['physical_cores']} physical, {header['cpu_affinity']} usable "
        f"({header['cpu_model']})",
        f"batch size {header['batch_size']}; median of {header['repeats']} (raw, method) pairs per case"
        + ("; QUICK run (small n)" if header["quick"] else ""),
        "load average (1 min): {:.2f} at start, {:.2f} at end".format(
            header["load_average_start"][0], header.get("load_average_end", header["load_average_start"])[0]),
        "",
    ]
    rows = [["case", "passes", "raw s", "wall s", "wall/raw", "target", "", "interleaved"]]
    for case in cases:
        inter = case.get("ratio_interleaved")
        rows.append([
            case["case"], f"{case['forward_passes']:,}", f"{case['raw_s']:.2f}", f"{case['wall_s']:.2f}",
            f"{case['ratio']:.3f}x", f"<= {case['target_ratio']:.2f}x", "ok" if case["ok"] else "MISSED",
            "-" if inter is None else f"{inter:.3f}x",
        ])
    out.append(table(rows, right={1, 2, 3, 4, 7}))
    out.append("")
    out.append("where the wall time goes (medians):")
    rows = [["case", "session.run s", "to_model_input s", "method side s", "non-ORT share", "others' CPU"]]
    for case in cases:
        rows.append([
            case["case"], f"{case['ort_in_run_s']:.2f}", f"{case['preprocess_s']:.3f}",
            f"{case['method_side_s']:.3f}",
            f"{(case['preprocess_s'] + case['method_side_s']) / case['wall_s']:.1%}", cores(case["others_cpu_max"]),
        ])
    out.append(table(rows, right={1, 2, 3, 4, 5}))
    out.append("")
    if memory is not None:
        rows = [["case", "passes", "wall s", "RSS after load", "peak RSS", "increase", "target", "",
                 "raw batch alone"]]
        rows.append([
            memory["case"], f"{memory['forward_passes']:,}", f"{memory['wall_s']:.2f}",
            mb(memory["rss_after_load_bytes"]), mb(memory["peak_rss_bytes"]), mb(memory["increase_bytes"]),
            f"< {mb(memory['target_peak_bytes'])}", "ok" if memory["ok"] else "MISSED",
            "+" + mb(memory["raw_batch_increase_bytes"]),
        ])
        out.append(table(rows, right={1, 2, 3, 4, 5, 8}))
        out.append("")
    out += [
        "raw s: session.run on a pre-made, preprocessed float32 NCHW batch, on the model's session, with the "
        "method's chunks",
        "  (the clean image, then the perturbed images by batch size, last partial chunk included); "
        "wall/raw = median wall / median raw",
        "interleaved: wall/raw from runs where a raw call of the same size precedes each method chunk (timed "
        "apart): robust to load from other processes",
        "session.run s: onnxruntime time inside the method's own run; to_model_input s: the rest of Model._run; "
        "method side s:",
        "  everything outside the model (masks, perturbation, score conversion, accumulation, image I/O and "
        "resizing)",
        "others' CPU: most cores other processes kept busy during a measurement (> 0.3: figures are noisy)",
    ]
    if memory is not None:
        out += [
            "peak RSS: VmHWM of a subprocess running only that case; increase = peak RSS - RSS right after "
            "loading the model;",
            "  raw batch alone: the same increase after one raw session.run of a full batch, made before the "
            "method (onnxruntime's own share) (MB = 10^6 bytes)",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="images per onnxruntime call (default 32)")
    parser.add_argument("--repeats", type=int, default=None, help="(raw, method) pairs per case (default 3; 1 quick)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 RISE masks, 400 for memory, 1 repeat")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--settle", type=float, default=10.0, metavar="S",
                        help="before each pair, wait up to S seconds for other processes to leave the CPUs idle "
                             "(default 10; 0: do not wait)")
    parser.add_argument("--interleaved", type=int, default=1, metavar="N",
                        help="also N runs with a raw call before each method chunk (default 1; 0: none)")
    parser.add_argument("--case", action="append", choices=CASES,
                        help="run only this speed case (repeatable; default: all)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory case")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-masks", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.interleaved < 0:
        parser.error("--interleaved must be 0 or more")
    if args.memory_masks is None:
        args.memory_masks = 400 if args.quick else 8000
    if args.memory_child:
        memory_case_child(args)
        return 0

    image = load_image()
    model = load_model(args.batch_size, args.threads)
    header = header_info(model, args)
    raw = RawRunner(model, image)
    progress = sys.stderr.isatty()
    meter = CpuMeter()
    cases = [run_case(name, method, n, model, raw, image, args, meter, progress)
             for name, method, n in speed_cases(args, model.input_size)]
    del model, raw
    gc.collect()
    memory = None if args.no_memory else memory_case(args)
    header["load_average_end"] = list(os.getloadavg())
    print(report(header, cases, memory))
    if args.json:
        payload = {"header": header, "cases": cases, "memory": memory}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    missed = [c["case"] for c in cases if not c["ok"]] + ([memory["case"]] if memory and not memory["ok"] else [])
    return 1 if args.check and missed else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
