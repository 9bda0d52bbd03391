"""The `ablation` console command."""

import pathlib
import re

import pytest

from pipeline import cli
from pipeline.cli import main


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_set_applies_any_setting_and_refuses_bad_ones_in_one_line(tmp_path, capsys):
    from pipeline import config as config_lib

    base = config_lib.load_profile("cifar_cpu")
    config = config_lib.with_settings(base, [
        "training.epochs=40", "training.mixed_precision=off", "training.step_decay_epochs=[20, 30]",
        "training.weight_decay=5e-4", "seeds = 2", "data=imagefolder:rel/folder",
        "models=['cifar_resnet20', 'cifar_plain20']"])
    assert (config.training.epochs, config.training.mixed_precision) == (40, "off")
    assert config.training.step_decay_epochs == (20, 30) and config.training.weight_decay == 5e-4
    assert config.seeds == 2 and config.models == ("cifar_resnet20", "cifar_plain20")
    assert config.data == f"imagefolder:{pathlib.Path.cwd() / 'rel/folder'}"
    assert config.training.batch_size == base.training.batch_size  # the rest is the profile's
    for setting, message in [
            ("training.epochs", "expected KEY=VALUE"),
            ("epochs=40", "unknown setting epochs; allowed: .*training"),
            ("training.epoch=40", "unknown setting training.epoch; allowed: .*epochs"),
            ("seeds.x=1", "seeds is not a table of settings"),
            ("training.epochs=forty", "training.epochs: expected an integer, got 'forty'")]:
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.with_settings(base, [setting])
    # through the command: one line, exit 2, before anything runs
    assert main(["run", "--set", "training.batch_size=big",
                 "--pipeline-root", str(tmp_path / "root")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("ablation run: --set: training.batch_size: expected an integer, "
                     "got 'big'") and not (tmp_path / "root").exists()


def test_a_profile_may_be_a_toml_file_anywhere_with_paths_relative_to_it(tmp_path, capsys):
    from pipeline import config as config_lib

    profile = tmp_path / "studies" / "mine.toml"
    profile.parent.mkdir()
    profile.write_text('data = "imagefolder:images"\npipeline_root = "out"\n'
                       '[training]\nepochs = 3\n')
    config = config_lib.load_profile(str(profile))
    assert config.profile == "mine" and config.training.epochs == 3
    assert config.data == f"imagefolder:{profile.parent / 'images'}"
    assert config.pipeline_root == str(profile.parent / "out")
    assert main(["run", "--profile", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ablation run: profile file {tmp_path / 'missing.toml'} does not exist (a profile "
        f"outside pipeline/profiles is given as a path to a .toml file)")
    assert main(["run", "--profile", "nope"]) == 2
    assert "unknown profile 'nope'; available: " in capsys.readouterr().err


def test_version_names_the_project_and_what_it_runs_on(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"ablation \d+\.\d+\.\d+ \(TFX 1\.21\.0, TensorFlow [\d.]+, "
                        r"Python 3\.11\.\d+\)\n", capsys.readouterr().out)


def test_compile_reads_the_study_flags_as_run_does():
    """`ablation compile` takes run's study flags, with run's help texts and meaning."""
    from kubeflow import runner

    parser = cli.build_parser()
    flags = ["--profile", "cifar_cpu", "--set", "training.epochs=3", "--models",
             "cifar_resnet20,cifar_plain20", "--seeds", "2", "--first-seed", "4", "--deterministic"]
    run_args = parser.parse_args(["run", *flags])
    compile_args = parser.parse_args(["compile", "--output", "spec.json", *flags])
    from pipeline import study_flags
    ran, compiled = study_flags.config_from(run_args), runner.config_from(compile_args)
    assert compiled.training == ran.training and compiled.training.epochs == 3
    assert (compiled.models, compiled.seeds, compiled.first_seed) == (
        ("cifar_resnet20", "cifar_plain20"), 2, 4)
    assert compiled.training.deterministic
    helps = {name: {a.dest: a.help for a in p._actions}
             for name, p in parser._subparsers._group_actions[0].choices.items()
             if name in ("run", "compile")}
    for dest in ("profile", "settings", "models", "epochs", "seeds", "first_seed", "data"):
        assert helps["run"][dest] == helps["compile"][dest]
