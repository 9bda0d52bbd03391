"""The `ablation` console command."""

import pytest

from pipeline import cli


def test_summary_prints_resnet50_trainable_count(capsys):
    assert cli.main(["summary", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "resnet50: 25,557,032 trainable parameters, 25,610,152 in total" in out
    assert "stage4_block3_add (Add)" in out


def test_unknown_model_is_rejected_with_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["summary", "resnet51"])
    assert exit_info.value.code == 2
    assert "unknown model 'resnet51'; valid names: resnet18" in capsys.readouterr().err


def test_gradients_writes_png_with_both_stages_per_model(tmp_path, capsys):
    output = tmp_path / "profile.png"
    assert cli.main(["gradients", "cifar_plain20", "cifar_resnet20", "--batch", "4",
                     "--batches", "2", "--seeds", "2", "--steps", "2",
                     "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cifar_plain20 init   : 19 convolutions, ‖g‖/‖W‖ first")
    assert lines[1].startswith("cifar_plain20 trained: 19 convolutions")
    assert lines[2].startswith("cifar_resnet20 init   : 19 convolutions")
