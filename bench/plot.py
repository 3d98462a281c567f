"""One PNG per run: the ratios that matter, and the memory run's RSS over time."""
from __future__ import annotations

from pathlib import Path


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {sc["name"]: sc for sc in results["scenarios"]}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colors = {"direct": "#888888", "nginx": "#2a9d8f", "haproxy": "#e9c46a", "gateway": "#e76f51"}

    def bars(ax, scenario, key, title, ylabel, reference=None, fmt="{:.2f}"):
        sc = by.get(scenario)
        if sc is None:
            ax.set_axis_off()
            ax.set_title(f"{title}\n(not run)")
            return
        rows = [r for r in sc["rows"] if r.get(key) is not None]
        labels = [r["participant"] for r in rows]
        values = [r[key] for r in rows]
        drawn = ax.bar(labels, values, color=[colors.get(r["kind"], "#264653") for r in rows])
        for bar, value in zip(drawn, values):
            ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        if reference is not None:
            ax.axhline(reference, color="black", linestyle="--", linewidth=1)
            ax.annotate(f"target {reference:g}", (ax.get_xlim()[1], reference), ha="right", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)

    bars(axes[0][0], "flask", "vs_direct", "Flask app: throughput kept vs direct (median of per-round ratios)",
         "ratio", reference=0.60)
    bars(axes[0][1], "latency", "added_p50_ms", "1 connection: added p50 latency over direct",
         "ms", reference=0.15, fmt="{:+.3f}")
    bars(axes[1][0], "static", "rps", "static upstream: requests/s (median)", "req/s", fmt="{:.0f}")

    ax = axes[1][1]
    trace = results.get("rss_trace") or []
    mem = results.get("memory") or {}
    if trace:
        t0 = trace[0][0]
        ax.plot([t - t0 for t, _ in trace], [m for _, m in trace], color=colors["gateway"])
        ax.axhline(150, color="black", linestyle="--", linewidth=1)
        ax.annotate("150 MB target", (0, 150), va="bottom", fontsize=8)
        if mem.get("baseline_mb"):
            ax.axhline(mem["baseline_mb"] * 1.2, color="grey", linestyle=":", linewidth=1)
            ax.annotate("before load +20%", (0, mem["baseline_mb"] * 1.2), va="bottom", fontsize=8)
        ax.set_title(f"memory run: gateway RSS ({mem.get('tokens', '?')} tokens, "
                     f"{mem.get('requests_served', '?')} requests)", fontsize=10)
        ax.set_xlabel("seconds since the gateway started")
        ax.set_ylabel("RSS MB")
    else:
        ax.set_axis_off()
        ax.set_title("memory run\n(not run)")
    fig.suptitle(f"make bench {results['stamp']} on {results['machine']['cores']} cores "
                 f"({results['settings']['rounds']} alternating rounds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
