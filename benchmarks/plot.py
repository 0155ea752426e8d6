"""The throughput plot (needs matplotlib, from the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_throughput(results: dict[str, dict[str, Any]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, result in results.items():
        for name, style in (("plain", "--"), ("library", "-")):
            values = result["items_per_second"][name]
            concurrencies = sorted(values)
            axes.plot(
                concurrencies,
                [values[c] for c in concurrencies],
                style,
                marker="o",
                label=f"{name}, {label} latency",
            )
        if result["latency"]:
            ideal = sorted(result["items_per_second"]["plain"])
            axes.plot(
                ideal,
                [c * 100 / result["latency"] for c in ideal],
                ":",
                color="grey",
                label=f"C·100/L at {label}",
            )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("concurrency (requests in flight)")
    axes.set_ylabel("items acknowledged per second")
    axes.set_title("pleo_export_async vs a plain aiohttp loop (100-item PUTs)")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
