"""load_runs, aggregation over seeds, forgetting, plots and the CLI on hand-written runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bapo_exp.analysis import add_forgetting, aggregate, cli, load_runs, plots, read_run
from bapo_exp.analysis.cli import main as cli_main
from tests.analysis.conftest import cfg, make_run


def test_load_runs_one_row_per_run_from_files_not_names(toy_runs: Path) -> None:
    df = load_runs(toy_runs)
    assert len(df) == 8
    row = df[(df["method.name"] == "bapo") & (df["seed"] == 2)].iloc[0]
    assert row["eval/hhh/acc"] == 0.9 and row["data.preferences"] == "academy"
    assert row["het/nll_distance"] == 1.0 and row["het/n_preferences"] == 1
    broken = df[df["seed"] == 7].iloc[0]  # incomplete runs are listed, with what is missing
    assert broken["status"] == "incomplete" and broken["missing"] == "train,eval"
    assert (df["status"] == "complete").sum() == 7
    assert len(load_runs(toy_runs, complete_only=True)) == 7


def test_hidden_folders_are_not_runs(toy_runs: Path) -> None:
    make_run(toy_runs, ".submitit/123/x", cfg("dpo", 9), {"hhh/acc": 0.0})
    assert 9 not in set(load_runs(toy_runs)["seed"])


def test_mrpo_label_counts_references(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", cfg("mrpo", 0, refs=("a", "b")), {"hhh/acc": 0.5})
    row = read_run(run)
    assert row["method.n_references"] == 3 and row["method.label"] == "mrpo-K3"


def test_bad_summary_names_its_file(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", cfg("dpo", 0), None)
    (run / "eval" / "summary.json").write_text("{oops")
    with pytest.raises(ValueError, match="eval/summary.json"):
        load_runs(tmp_path)


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        load_runs(tmp_path / "nope")


def test_aggregate_mean_standard_error_and_n(toy_runs: Path) -> None:
    df = load_runs(toy_runs, complete_only=True)
    table = aggregate(df[df["method.name"] != "none"], ["method.name"], ["eval/hhh/acc"])
    dpo = table.set_index("method.name").loc["dpo"]
    assert dpo["eval/hhh/acc"] == pytest.approx(0.6)
    assert dpo["eval/hhh/acc_se"] == pytest.approx(0.1 / math.sqrt(3))  # sd 0.1 over 3 seeds
    assert dpo["n"] == 3 and dpo["seeds"] == "0,1,2"
    one = aggregate(df[df["seed"] == 0], ["method.name"], ["eval/hhh/acc"])
    assert one["eval/hhh/acc_se"].isna().all()  # one run: no spread to report


def test_forgetting_is_base_minus_trained(toy_runs: Path) -> None:
    df = add_forgetting(load_runs(toy_runs, complete_only=True), ["eval/hhh/acc"])
    row = df[(df["method.name"] == "dpo") & (df["seed"] == 0)].iloc[0]
    assert row["forget/hhh/acc"] == pytest.approx(0.95 - 0.50)
    assert df[df["method.name"] == "none"]["forget/hhh/acc"].iloc[0] == pytest.approx(0.0)


def test_drift_table_prefers_the_probe_set(toy_runs: Path) -> None:
    df = load_runs(toy_runs, complete_only=True)
    long = plots.drift_table(df[df["method.name"] == "dpo"])
    base = long[long["key"] == "drift/base"]
    assert sorted(base["value"].unique()) == [-6.0, -4.0, -2.0]  # probe/drift/base, not drift/base
    assert set(long["key"]) == {"drift/base", "drift/chosen", "drift/rejected"}


@pytest.mark.parametrize("figure", ["alignment", "drift", "heterogeneity", "frontier"])
def test_cli_prints_table_and_writes_png_and_pdf(
    toy_runs: Path, tmp_path: Path, figure: str, capsys
) -> None:
    metrics = ["--metrics", "eval/hhh/acc"]
    out = tmp_path / "figs"
    assert cli_main([str(toy_runs), "--figure", figure, "--out", str(out), *metrics]) == 0
    printed = capsys.readouterr().out
    assert "dpo" in printed and "bapo" in printed and "wrote" in printed
    files = sorted(out.iterdir())
    assert {f.suffix for f in files} == {".png", ".pdf", ".csv"}
    assert all(f.stat().st_size > 1000 for f in files if f.suffix != ".csv")
    (csv,) = [f for f in files if f.suffix == ".csv"]  # the full aggregated table
    assert "_se" in csv.read_text().splitlines()[0] and len(csv.read_text().splitlines()) > 1


def test_frontier_falls_back_to_likelihood_personalisation(
    toy_runs: Path, tmp_path: Path, capsys
) -> None:
    cli_main(
        [str(toy_runs), "--figure", "frontier", "--out", str(tmp_path), "--metrics", "eval/hhh/acc"]
    )
    assert "personal/pref_acc" in capsys.readouterr().out  # no gen/* keys in these runs


def test_cli_unknown_metric_is_an_error_not_a_traceback(toy_runs: Path, tmp_path: Path) -> None:
    code = cli_main(
        [
            str(toy_runs),
            "--figure",
            "alignment",
            "--out",
            str(tmp_path),
            "--metrics",
            "eval/nope/acc",
        ]
    )
    assert code == 2


def test_frontier_draws_one_figure_per_preference_and_prints_the_base(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "two"
    for pref, acc in (("concise", 0.9), ("poetic", 0.7)):
        for method in ("dpo", "bapo"):
            make_run(root, f"{pref}_{method}", cfg(method, 0, prefs=(pref,)),
                     {"hhh/acc": acc, "gen/style_share": 0.5})  # fmt: skip
    make_run(root, "base", cfg("none", 0) | {"stages": ["eval"]}, {"hhh/acc": 0.95}, done=("eval",))
    out = tmp_path / "figs"
    assert cli_main([str(root), "--figure", "frontier", "--out", str(out),
                     "--metrics", "eval/hhh/acc", "--name", "f"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "base model: hhh/acc=0.950" in printed
    assert sorted(f.name for f in out.glob("*.png")) == ["f_concise.png", "f_poetic.png"]
    assert (out / "f_table.csv").exists()


def test_forgetting_figure_without_a_base_run_is_refused_with_the_command(
    toy_runs: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    shutil.rmtree(toy_runs / "base")
    out = tmp_path / "figs"
    code = cli_main([str(toy_runs), "--figure", "heterogeneity", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "no base-model run for ['tiny']" in err and "Traceback" not in err
    assert "python -m bapo_exp -m experiment=base_model model=tiny" in err
    assert not out.exists()  # nothing written


def test_failed_cells_block_the_figure_unless_partial(
    toy_runs: Path, tmp_path: Path, capsys
) -> None:
    report = {"problems": [{"status": "failed", "run_dir": "x/mrpo", "error": "boom"}]}
    (toy_runs / "multirun_report.json").write_text(json.dumps(report))
    out = tmp_path / "figs"
    assert cli_main([str(toy_runs), "--figure", "alignment", "--out", str(out)]) == 2
    assert "failed: x/mrpo boom" in capsys.readouterr().err and not out.exists()
    assert cli_main([str(toy_runs), "--figure", "alignment", "--out", str(out), "--partial"]) == 0


def test_no_complete_trained_run_draws_nothing(tmp_path: Path, capsys) -> None:
    root = tmp_path / "grid"
    make_run(root, "failed", cfg("mrpo", 0), None, done=("reference",))
    make_run(root, "base", cfg("none", 0) | {"stages": ["eval"]}, {"hhh/acc": 0.9}, done=("eval",))
    assert cli_main([str(root), "--figure", "alignment", "--out", str(tmp_path / "f")]) == 2
    assert "no complete trained run" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_cli_help_describes_every_option() -> None:
    parser = cli.build_parser()
    described = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert set(described) >= {"root", "figure", "out", "name", "x", "metrics", "base",
                              "duplicates", "partial"}  # fmt: skip
    assert all(text and len(text) > 15 for text in described.values()), described


def test_configs_using_our_resolvers_load_in_a_fresh_process(tmp_path: Path) -> None:
    """A study cell's config keeps ``${add:...}`` unresolved (as Hydra saves it): the analysis
    registers the resolvers itself, in a process that never composed a config."""
    import subprocess
    import sys

    config = cfg("mrpo", 0) | {"extra": "${add:${seed},1}"}
    run = make_run(tmp_path, "cell", config, {"hhh/acc": 0.5})
    code = (f"from bapo_exp.analysis import load_runs; "
            f"print(load_runs({str(run)!r})['extra'].iloc[0])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_auto_figure_for_runs_of_no_preset_comes_from_what_they_measured(
    toy_runs: Path, tmp_path: Path, capsys
) -> None:
    """The hint a grid ends with, ``python -m bapo_exp.analysis <dir>``, failed for an ad-hoc
    grid ("cannot pick a figure for runs named ['adhoc']", issue 22)."""
    out = tmp_path / "figs"
    assert cli_main([str(toy_runs), "--out", str(out)]) == 0  # runs named "toy", with hhh/acc
    assert "figure: retention" in capsys.readouterr().out
    assert (out / "toy.png").exists()
