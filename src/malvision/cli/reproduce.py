"""``malvision reproduce``: rebuild a model's data, train it again into a scratch folder, compare the cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from malvision.cli.app import EXIT_FOUND, app, clean, err, out
from malvision.errors import MalvisionError


@app.command()
def reproduce(
    model: Annotated[
        str,
        typer.Argument(help="A bundled model name (see `malvision info`) or a .pt whose card has a recipe."),
    ],
    work: Annotated[
        Path | None,
        typer.Option(
            help="Scratch folder for the rebuilt cache and run (default ~/.cache/malvision/reproduce/MODEL)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Check the corpora and print the steps; run nothing.")
    ] = False,
    reuse_data: Annotated[
        bool,
        typer.Option(help="Keep the scratch cache of an earlier run of the same step (default: rebuild)."),
    ] = False,
    keep_going: Annotated[
        bool, typer.Option(help="Train even when the rebuilt data differs from the card's.")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="One row per figure (default: groups of many in one row).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Rebuild the data a model's card names, train it with the card's commands into a scratch folder
    (never over shipped files) and print both cards side by side, figure by figure.

    Exit status 0: every figure matches; 1: something differs; 2: an error.
    """
    from malvision.bundled import BUNDLED, resolve_checkpoint
    from malvision.checkpoint import load_checkpoint
    from malvision.data.build import cache_home
    from malvision.data.cache import CachedDataset
    from malvision.recipe import pin_conversion, recipe_for
    from malvision.reproduce import check_work_dir, data_differences, plan, run_steps

    path = resolve_checkpoint(model)
    shipped = load_checkpoint(path)
    card = dict((shipped.extra or {}).get("card") or {})
    name = model if model in BUNDLED else path.stem
    recipe = pin_conversion(
        recipe_for(model if model in BUNDLED else str(path), card), shipped.convert_spec()
    )
    rep = plan(name, recipe, check_work_dir(work or cache_home() / "reproduce" / name))
    say = lambda s: err.print(clean(s), markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"reproducing {name} ({path}) in {rep.work}")
    is_data = lambda step: step[:2] == ["data", "build"]  # noqa: E731
    timings = run_steps(rep, _run, say, dry_run, which=is_data, reuse_data=reuse_data)
    if dry_run:
        run_steps(rep, _run, say, dry_run, which=lambda step: not is_data(step))
        return
    ds = CachedDataset(rep.data_dir)
    expected = (card.get("data") or {}).get("data_hash") or recipe.get("data_hash")
    if ds.data_hash != expected:
        say(
            f"the rebuilt data differs from the card's ({len(ds)} files, data hash {ds.data_hash[:16]}, card {str(expected)[:16]})"
        )
        for line in data_differences(ds, card):
            say(f"  {line}")
        if not keep_going:
            _write_report(rep.work, name, [], ds.data_hash, expected, timings)
            if as_json:
                print(
                    json.dumps(
                        {
                            "model": name,
                            "verdict": "data differs",
                            "data_hash": ds.data_hash,
                            "expected": expected,
                        }
                    )
                )
            else:
                out.print(
                    f"{name}: DIFFERS: the rebuilt data is not the card's (--keep-going trains anyway)",
                    markup=False,
                )
            raise typer.Exit(EXIT_FOUND)
    timings += run_steps(rep, _run, say, dry_run, which=lambda step: not is_data(step))
    _compare(name, shipped, rep, ds.data_hash, expected, timings, show_all, as_json)


def _run(step: list[str]) -> int:
    """``malvision STEP`` in this process (its card's ``command`` names the step, not ``reproduce``).
    What the step prints on stdout (a card's JSON, tables) goes to stderr, so that stdout holds the
    comparison alone; progress and errors are on stderr anyway."""
    import contextlib
    import sys

    argv = sys.argv
    sys.argv = ["malvision", *step]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            rc = app(args=step, standalone_mode=False, prog_name="malvision")
    except typer.Exit as e:
        rc = e.exit_code
    except Exception as e:  # a usage error of the step: click's one line, as `main` prints it
        if not (hasattr(e, "show") and hasattr(e, "exit_code")):
            raise
        e.show()
        rc = e.exit_code
    finally:
        sys.argv = argv
    return rc if isinstance(rc, int) else 0


def _compare(
    name: str,
    shipped: Any,
    rep: Any,
    data_hash: str,
    expected: str | None,
    timings: list[tuple[str, float]],
    show_all: bool,
    as_json: bool,
) -> None:
    from malvision.checkpoint import load_checkpoint
    from malvision.reproduce import collapse, compare_cards

    if not rep.model_path.is_file():
        raise MalvisionError(f"{rep.model_path}: the recipe's last step made no model")
    rows = compare_cards(
        shipped, load_checkpoint(rep.model_path), data_hash=data_hash, expected_hash=expected
    )
    _write_report(rep.work, name, rows, data_hash, expected, timings)
    bad = [r for r in rows if not r.match]
    verdict = "MATCHES" if not bad else "DIFFERS"
    if as_json:
        rec = {
            "model": name,
            "verdict": verdict.lower(),
            "rows": [r.__dict__ for r in rows],
            "timings": timings,
        }
        print(json.dumps(rec))
    else:
        out.print("| figure | shipped | reproduced | verdict |\n|---|---|---|---|", markup=False)
        for r in rows if show_all else collapse(rows):
            cells = [r.figure, r.shipped, r.reproduced, "match" if r.match else "DIFFERS"]
            out.print("| " + " | ".join(clean(c) for c in cells) + " |", markup=False, soft_wrap=True)
        for step, seconds in timings:
            out.print(f"{step}: {seconds:.0f} s", markup=False)
        summary = f"{len(rows) - len(bad)} of {len(rows)} figures match"
        out.print(f"{name}: {verdict}: {summary} (report: {rep.work / 'reproduce.json'})", markup=False)
    if bad:
        raise typer.Exit(EXIT_FOUND)


def _write_report(
    work: Path,
    name: str,
    rows: list[Any],
    data_hash: str,
    expected: str | None,
    timings: list[tuple[str, float]],
) -> None:
    from malvision.io import atomic_writer

    rec = {
        "model": name,
        "data_hash": data_hash,
        "expected_data_hash": expected,
        "matches": bool(rows) and all(r.match for r in rows),
        "rows": [r.__dict__ for r in rows],
        "timings": timings,
    }
    with atomic_writer(work / "reproduce.json") as f:
        f.write(json.dumps(rec, indent=1).encode())
