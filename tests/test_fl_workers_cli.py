"""The train CLI's small frictions found while writing the tutorial's loop (issue 14): help text, errors, the
start-up summary, the plot, and a missing optional package naming its extra."""

import sys

import pytest

pytest.importorskip("jax", reason="the train CLI needs the fl extra (jax)")
pytest.importorskip("matplotlib", reason="the train CLI's plot needs the fl extra (matplotlib)")

from refimpl.fl import train


def test_help_documents_every_flag_without_misleading_defaults(capsys):
    parser = train.build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help text"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text
    assert "(default: fashion_mnist)" in text and "(default: 0.1)" in text


def test_unknown_model_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--model", "foo"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--model 'foo'" in err and "2nn" in err and "small" in err and "784,64,10" in err


def test_startup_summary_and_plot_title_and_integer_round_ticks(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    out = tmp_path / "run"
    assert train.main(["--dataset", "mnist-10k", "--clients", "4", "--fraction", "0.5", "--rounds", "3",
                       "--model", "784,8,10", "--out", str(out), "--no-progress", "--secure", "none"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("refimpl train: mnist-10k (8000 train / 2000 test")
    assert "4 clients (iid), 2 per round" in first and "6,370 parameters" in first
    assert "secure aggregation: off (plaintext), DP: off" in first
    (fig,) = figures
    assert "secure aggregation: off" in fig._suptitle.get_text()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_missing_dp_accounting_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # import fails as if it were not installed
    rc = train.main(["--dataset", "mnist-10k", "--clients", "4", "--fraction", "0.5", "--rounds", "1", "--clip", "1",
                     "--noise-multiplier", "1", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc != 0
    assert "pip install 'refimpl[dp]'" in capsys.readouterr().err
