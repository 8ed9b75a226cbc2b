"""Triple-MNIST's builder (``hpsearch make-triple``): an interrupted build goes on, bad input is one line."""

import json

import numpy as np
import pytest
from fixtures.triple import build_triple, files_of, one_line

from hpsearch.cli import main
from hpsearch.data import multidigit as md
from hpsearch.data.make_triple import make_triple
from hpsearch.data.multidigit import TripleError
from hpsearch.errors import UsageError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_triple(tmp_path_factory.mktemp("triple") / "t")


def test_the_same_command_after_an_interrupt_finishes_the_build(built, tmp_path, monkeypatch):
    """A Ctrl-C mid-build said 'run the same command again', which then refused the folder (not empty);
    now the same command goes on: the files written are kept, and the folder equals an uninterrupted build."""
    import hpsearch.data.make_triple as builder

    real, calls = builder.os.replace, []

    def interrupted(src, dst):  # as a Ctrl-C lands: this file's .part written, not yet renamed
        calls.append(dst)
        if len(calls) == 37:
            raise KeyboardInterrupt
        real(src, dst)

    out = tmp_path / "t"
    monkeypatch.setattr(builder.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_triple(out)
    monkeypatch.setattr(builder.os, "replace", real)
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert len(kept) == 36 and json.loads((out / "meta.json").read_text())["complete"] is False
    build_triple(out)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # not written again
    assert files_of(out) == {k: v for k, v in files_of(built.out).items() if k != md.CACHE_FILE}
    with pytest.raises(TripleError) as exc:  # another build in that folder: still refused, nothing lost
        build_triple(out, seed=2)
    one_line(exc, out, "overwrite")


def test_an_overwrite_interrupted_while_deleting_is_not_read_as_complete(built, tmp_path, monkeypatch):
    """A Ctrl-C (or kill) while --overwrite deleted the old build left part of it under a meta.json
    still saying complete, and the loader read the cut-down set without a word; the old build is now
    marked unfinished before anything goes, so the loader refuses it and the same command starts over."""
    import shutil

    import hpsearch.data.make_triple as builder

    out = tmp_path / "t"
    build_triple(out)
    real = shutil.rmtree

    def interrupted(path, *args, **kw):  # train/ gone, then the Ctrl-C
        real(path, *args, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(builder.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_triple(out, seed=2, overwrite=True)
    monkeypatch.setattr(builder.shutil, "rmtree", real)
    assert not (out / "train").exists() and (out / "test").is_dir()
    assert json.loads((out / "meta.json").read_text())["complete"] is False
    with pytest.raises(TripleError) as exc:
        md.load_triple(out)
    one_line(exc, "interrupted")
    build_triple(out, seed=2, overwrite=True)  # the same command: a whole build of seed 2
    assert files_of(out) == files_of(build_triple(tmp_path / "fresh", seed=2).out)


def test_a_resume_from_other_source_files_is_refused(tmp_path, monkeypatch):
    """The same make-triple command after a Ctrl-C, given another --data-dir whose MNIST files hold other
    images of the same counts, went on and mixed the two sources' digits in one build; now it is refused,
    naming the folder, and the --data-dir it was started with finishes the build. An earlier version's
    interrupted build (no digest: it wrote its files in place) is not gone on with."""
    import hpsearch.data.make_triple as builder
    from hpsearch.data.idx import write_idx
    from hpsearch.data.mnist import IDX_FILES

    for name, seed in (("a", 1), ("b", 2)):
        rng = np.random.default_rng(seed)
        (tmp_path / name).mkdir()
        for key, stem in IDX_FILES.items():
            n = 30 if key.startswith("train") else 10
            array = (np.arange(n) % 10) if key.endswith("labels") else rng.integers(0, 256, (n, 28, 28))
            write_idx(tmp_path / name / stem, array.astype(np.uint8))
    real = builder.os.replace

    def interrupted(src, dst):  # a Ctrl-C after the first image
        real(src, dst)
        raise KeyboardInterrupt

    out = tmp_path / "t"
    counts = {"n_train": 4, "n_val": 2, "n_test": 2}
    monkeypatch.setattr(builder.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_triple("mnist", out, data_dir=tmp_path / "a", **counts)
    monkeypatch.setattr(builder.os, "replace", real)
    first = sorted(out.rglob("*.png"))
    with pytest.raises(TripleError) as exc:
        make_triple("mnist", out, data_dir=tmp_path / "b", **counts)
    one_line(exc, out, "interrupted, from other mnist images", tmp_path / "b", "data_dir it was started with")
    assert sorted(out.rglob("*.png")) == first  # nothing written from b
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "source_digest"}))
    with pytest.raises(TripleError) as exc:  # an earlier version's build wrote in place: a file may be cut short
        make_triple("mnist", out, data_dir=tmp_path / "a", **counts)
    one_line(exc, out, "overwrite")
    (out / "meta.json").write_text(json.dumps(meta))
    assert len(make_triple("mnist", out, data_dir=tmp_path / "a", **counts).files["train"]) == 4


def test_the_builder_refuses_bad_input_naming_the_parameter(tmp_path):
    copy = build_triple(tmp_path / "t").out
    with pytest.raises(TripleError) as exc:
        build_triple(copy)
    one_line(exc, copy, "overwrite")
    assert len(build_triple(copy, overwrite=True).files["train"]) == 60  # its own folder: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(TripleError) as exc:
        build_triple(tmp_path / "mine", overwrite=True)
    one_line(exc, "did not write")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(TripleError) as exc:
        make_triple("cifar10", tmp_path / "c")
    one_line(exc, "colour", "digits")
    with pytest.raises(TripleError) as exc:
        make_triple("mnst", tmp_path / "c")
    one_line(exc, "source", "'mnst'", "did you mean 'mnist'")
    with pytest.raises(UsageError) as exc:
        make_triple("digits", tmp_path / "c", n_train=0)
    one_line(exc, "n_train", ">= 1", "0")
    with pytest.raises(TripleError) as exc:  # it was ignored without a word
        make_triple("digits", tmp_path / "c", data_dir=tmp_path / "nowhere")
    one_line(exc, "data_dir", "digits is bundled", "leave")
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_make_triple_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["make-triple", "--from", "digits", "--out", str(out), "--n-train", "60", "--n-val", "20",
                 "--n-test", "20", "--seed", "1", "--no-progress"])
    assert code == 0 and "60 train, 20 val, 20 test" in capsys.readouterr().out
    assert len(list((out / "train").glob("*/*.png"))) == 60
    assert main(["make-triple", "--from", "digits", "--out", str(tmp_path / "e"), "--n-test", "-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--n-test" in err and "-3" in err
    assert main(["make-triple", "--from", "cifar10", "--out", str(tmp_path / "e")]) == 2
    assert "colour" in capsys.readouterr().err


def test_make_triple_refuses_absurd_counts_and_looping_out(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    cases = [(["--n-train", "100000000000"], "--n-train 100,000,000,000: at most 1,000,000 images per split"),
             (["--out", str(loop)], "is a link that leads nowhere (or in a loop)"),
             (["--out", str(loop / "sub")], "cannot make the folder (Too many levels of symbolic links)")]
    for flags, message in cases:
        out = ["--out", str(tmp_path / "t")] if "--out" not in flags else []
        assert main(["make-triple", "--from", "digits", *out, *flags, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "t").exists()
