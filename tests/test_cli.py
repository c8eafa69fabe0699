"""The command line: every command validates its inputs at the entry and reports a package
error as ONE line ``clvsmim <command>: error: …`` with exit code 2, before any work starts."""
import pytest
import torch

from clvsmim import cli


@pytest.mark.parametrize("argv, command, expected", [
    (["train", "--objective", "hybrid", "--lam", "1.5", "--out", "OUT"], "train", "--lam 1.5"),
    (["train", "--objective", "moco", "--profile", "nonexistent", "--out", "OUT"], "train", "profile 'nonexistent'"),
    (["train", "--objective", "moco", "--profile", "smoke", "--size", "XL", "--out", "OUT"], "train", "no size 'XL'"),
    (["book", "--data", "/nonexistent/folder"], "book", "--data /nonexistent/folder"),
    (["book", "--profile", "nonexistent"], "book", "unknown profile"),
    (["claims", "--profile", "smoke", "--seeds", "0"], "claims", "--seeds 0"),
    (["zoo", "list", "--profile", "BADPROFILE"], "zoo", "profile 'BADPROFILE'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, command, expected, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"clvsmim {command}: error: ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_unknown_profile_key_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  embed_dimension: 8\n")
    assert cli.main(["zoo", "list", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['embed_dimension']" in err and err.count("\n") == 1


def test_every_command_is_registered():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse has no public accessor)
    assert set(commands) == {"train", "zoo", "claims", "book", "notebooks", "analyze", "weights"}


def test_clvsmim_threads_sets_torchs_threads_for_every_command(tmp_path, monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path))
    monkeypatch.setenv("CLVSMIM_THREADS", "1")
    try:
        torch.set_num_threads(2)
        assert cli.main(["zoo", "list", "--profile", "smoke"]) == 0  # no training: the CLI itself sets it
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_profile_with_a_base_overrides_only_the_keys_it_names(tmp_path):
    """``base: mini3`` + ``data: {texture_scale: 1.0}`` is mini3 with that one data field changed
    (the other data fields, and every other section, are the base's); a missing base is named."""
    import dataclasses

    from clvsmim.config import load_profile
    child = tmp_path / "child.yaml"
    child.write_text("base: mini3\nname: child\ndata: {texture_scale: 1.0}\ntrain: {steps: 7}\n")
    mini3, got = load_profile("mini3"), load_profile(child)
    assert got == dataclasses.replace(mini3, name="child",
                                      data=dataclasses.replace(mini3.data, texture_scale=1.0),
                                      train=dataclasses.replace(mini3.train, steps=7))
    grandchild = tmp_path / "grandchild.yaml"  # a relative path, and a base that has a base itself
    grandchild.write_text("base: child.yaml\nname: grandchild\ntrain: {batch_size: 8}\n")
    assert load_profile(grandchild).train == dataclasses.replace(got.train, batch_size=8)
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="orphan.yaml: base profile not found"):
        load_profile(orphan)
    from clvsmim.config import profile_from_dict
    with pytest.raises(ValueError, match="'base' is resolved when a profile file is read"):
        profile_from_dict({"base": "mini3"})  # a mapping that skipped the file reader
