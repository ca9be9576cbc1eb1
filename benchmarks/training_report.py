"""Markdown tables of ``benchmarks/training.py``'s records (one dict per measurement)."""

from __future__ import annotations

from collections.abc import Callable

import torch

COLUMNS = (("ours", "auto"), ("ours", "fp32"), ("micro_sam", "amp"), ("micro_sam", "fp32"))


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def _cell(record: dict | None, show: Callable[[dict], str]) -> str:
    if record is None:
        return "—"
    return show(record) if record["status"] == "ok" else record["status"]


def _ratio(ours: dict | None, theirs: dict | None, key: str) -> str:
    if ours is None or theirs is None or "ok" != ours["status"] or "ok" != theirs["status"]:
        return "—"
    return f"{ours[key] / theirs[key]:.2f}x"


#: ours in auto counts as slower than ours in float32 past this ratio (timing noise stays under it)
SLOWER = 1.05


def auto_vs_fp32(found: dict) -> str:
    """``ours auto / ours fp32`` step time, flagged where auto is slower (what issue 23's rows would show)."""
    ratio = _ratio(found.get(("ours", "auto")), found.get(("ours", "fp32")), "step_s")
    if ratio != "—" and float(ratio[:-1]) > SLOWER:
        return f"**{ratio} SLOWER**"
    return ratio


def slower_rows(records: list[dict]) -> list[str]:
    """The rows where ours in auto stepped slower than ours in float32."""
    rows = dict.fromkeys(r["row"] for r in records)
    found = {row: {(r["kind"], r["variant"]): r for r in records if r["row"] == row} for row in rows}
    return [row for row in rows if auto_vs_fp32(found[row]).endswith("SLOWER**")]


def _header(variant: tuple[str, str], records: list[dict]) -> str:
    kind, name = variant
    found = {r["precision"] for r in records if (r["kind"], r["variant"]) == variant and "precision" in r}
    precision = found.pop() if len(found) == 1 else ""  # several (ours auto per model): said in each cell
    return f"{kind} {name}" + (f" ({precision})" if precision and precision != name else "")


def _step(record: dict, records: list[dict]) -> str:
    """A step time, with the precision where its column's header cannot say it (ours auto)."""
    text = f"{record['step_s']:.2f}"
    if (record["kind"], record["variant"]) == ("ours", "auto") and "(" not in _header(("ours", "auto"), records):
        text += f" ({record['precision']})"
    return text


def training_table(records: list[dict], device: torch.device) -> str:
    """Step time and peak memory of each (model, row) in the four variants, with ours/micro_sam ratios."""
    memory = "GiB allocated" if device.type == "cuda" else "GiB RSS"
    heads = [_header(variant, records) for variant in COLUMNS]
    lines = [
        "| model | row | "
        + " | ".join(f"step s, {h}" for h in heads)
        + " | ours auto / ours fp32 | step ratio, ours auto / micro_sam amp | "
        + " | ".join(f"peak {memory}, {h}" for h in heads)
        + " | memory ratio, ours auto / micro_sam amp | our estimate s / GiB | prepare s per image (ours auto) |",
        "|" + "---|" * 15,
    ]
    rows = list(dict.fromkeys(r["row"] for r in records))
    for row in rows:
        found = {(r["kind"], r["variant"]): r for r in records if r["row"] == row}
        ours, theirs = found.get(("ours", "auto")), found.get(("micro_sam", "amp"))
        model, _, preset = row.partition(" ")
        cells = [model, preset]
        cells += [_cell(found.get(v), lambda r: _step(r, records)) for v in COLUMNS]
        cells.append(auto_vs_fp32(found))
        cells.append(_ratio(ours, theirs, "step_s"))
        cells += [_cell(found.get(v), lambda r: _gib(r["peak_bytes"])) for v in COLUMNS]
        cells.append(_ratio(ours, theirs, "peak_bytes"))
        cells.append(_cell(ours, lambda r: f"{r['estimate_step_s']:.1f} / {_gib(r['estimate_memory_bytes'])}"))
        cells.append(_cell(ours, lambda r: f"{r['prepare_s_per_image']:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reload_table(records: list[dict]) -> str:
    """Time to the first mask from a new adapter: ours from the kept stage input, micro_sam's full path."""
    lines = [
        "| row | precision (ours) | reload + re-embed + prompt s (ours) | of which re-embed "
        "| full re-embed s (ours, no kept input) | full reload path s (micro_sam) | of which model load | ratio |",
        "|" + "---|" * 8,
    ]
    for record in records:
        keys = ("ours_total_s", "ours_reembed_s", "ours_full_embed_s", "micro_sam_total_s", "micro_sam_load_s")
        cells = [_cell(record, lambda r, key=key: f"{r[key]:.2f}") for key in keys]
        ratio = _cell(record, lambda r: f"{r['ours_total_s'] / r['micro_sam_total_s']:.3f}x")
        precision = _cell(record, lambda r: r["precision"])
        lines.append("| " + " | ".join([record["row"].partition(" ")[2], precision, *cells, ratio]) + " |")
    return "\n".join(lines)
