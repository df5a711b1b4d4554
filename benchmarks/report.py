"""Presenting results: a text table, the Markdown section of docs/PERFORMANCE.md, a PNG chart."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from benchmarks.runner import Result

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def verdict(r: Result) -> str:
    if r.error:
        return "error"
    met = r.met
    if met is None:
        return "skipped"
    return "met" if met else "NOT met"


def text_table(results: list[Result]) -> str:
    rows = [("case", "walship", "baseline", "unit", "ratio", "target", "")]
    for r in results:
        rows.append(
            (
                r.name,
                fmt(r.value),
                fmt(r.baseline_value),
                r.unit,
                fmt(r.ratio),
                str(r.target),
                verdict(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(
    results: list[Result],
    machine: dict[str, str],
    profile: str,
    rounds: int,
    seconds: float,
    chart: str | None,
) -> str:
    """The generated section: machine, table, notes."""
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        BEGIN,
        f"Run `{profile}` on {when}: {rounds} alternating rounds per case, medians, "
        f"{seconds:.0f} s in all.",
        "",
        "| machine | |",
        "| --- | --- |",
    ]
    out += [f"| {k} | {v} |" for k, v in machine.items()]
    out += [
        "",
        "| case | walship | baseline | unit | ratio | target | verdict |",
        "| --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for r in results:
        out.append(
            f"| `{r.name}` | {fmt(r.value)} | {fmt(r.baseline_value)} | {r.unit} | "
            f"{fmt(r.ratio)} | {r.target} | {verdict(r)} |"
        )
    out += peer_table(results)
    out += ["", "What each row measures (walship / baseline; samples in round order):", ""]
    for r in results:
        detail = r.error or r.note or "no note"
        samples = ", ".join(fmt(x) for x in r.samples) or "—"
        base = ", ".join(fmt(x) for x in r.baseline_samples) or "—"
        out.append(
            f"- `{r.name}`: {detail}. Baseline: {r.baseline_name or 'none'}. "
            f"Samples: {samples} / {base}."
        )
    if chart:
        out += ["", chart]
    out.append(END)
    return "\n".join(out)


def peer_table(results: list[Result]) -> list[str]:
    """walship against each peer store: one row per case run against them, one column per
    peer, each cell walship's median over the peer's (above 1: walship is faster); empty
    when no such case ran."""
    rows = [r for r in results if r.peers and r.value is not None]
    names = list(dict.fromkeys(n for r in rows for n in r.peers))  # in the cases' order
    if not rows:
        return []
    out = [
        "",
        "walship against each peer (walship's median over the peer's, above 1: walship is faster):",
        "",
        "| case | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for r in rows:
        assert r.value is not None
        cells = [fmt(r.value / r.peers[n]) if r.peers.get(n) else "—" for n in names]
        out.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
    return out


def update_doc(path: Path, section: str) -> None:
    """Replace the generated section of ``path`` (between the markers), or append one."""
    text = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def chart(results: list[Result], path: Path, title: str) -> str | None:
    """Draw each case's margin to its target (>= 1 means met) as a PNG at ``path``.

    Returns ``None`` on success, or a one-line note why no chart was drawn (matplotlib absent:
    ``pip install 'walship[bench]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install 'walship[bench]')"
    names, margins, colors, labels = [], [], [], []
    for r in results:
        m = r.target.margin(r.value, r.ratio)
        names.append(r.name)
        margins.append(m if m is not None else 0.0)
        met = r.met
        colors.append("#9e9e9e" if met is None else "#2e7d32" if met else "#c62828")
        shown = r.ratio if r.target.on == "ratio" else r.value
        labels.append("skipped" if m is None else f"{fmt(shown)} (target {r.target})")
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    y = list(range(len(names)))[::-1]
    ax.barh(y, [max(m, 1e-3) for m in margins], color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.set_xlabel("ratio / target (>= 1: target met; latency and memory inverted)")
    ax.set_title(title)
    for yi, m, label in zip(y, margins, labels, strict=False):
        ax.text(max(m, 0.05) * 1.05, yi, label, va="center", fontsize=8)
    right = max([m for m in margins if m > 0] + [2.0])
    ax.set_xlim(0.05, right * 6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
