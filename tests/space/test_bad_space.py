"""A space that cannot train is refused when it is read (or, for the image size, once the data are
loaded), with a message naming the parameter, instead of scoring NaN config after config."""

import tomllib

import pytest

from hpsearch.cli import main
from hpsearch.data import load_dataset
from hpsearch.errors import UsageError
from hpsearch.space.checks import NET_CHECKS, check_space_for_data
from hpsearch.space.search_space import PARAMETERS, SEARCHES_DIR, ParamGenerator, SearchSpace, load_space
from hpsearch.training.models import MODELS, module_keys
from hpsearch.training.models.cnn import CNN
from hpsearch.training.models.gapcnn import GAPCNN
from hpsearch.training.models.parameters import PARAMETER_CHECKS

CAT = "distribution = 'categorical'\nchoices = "


def _load(tmp_path, text: str) -> SearchSpace:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return load_space(path)


# (TOML, the parameter the message must name, a piece of the message)
BAD = [
    ("model = 'resnet'", "model", "must be one of 'mlp', 'cnn', 'gapcnn'"),
    (f"[model]\n{CAT}['mlp', 'cnnn']", "[model] choices", "got 'cnnn'; did you mean 'cnn'?"),
    ("optimizer = 'adan'", "optimizer", "did you mean 'adam'?"),
    (f"[optimizer]\n{CAT}['adam', 'lbfgs']", "[optimizer] choices", "'adam', 'rmsprop', 'sgd', 'adamw'"),
    ("dropout = 1.0", "dropout", "must be a probability in [0, 1), got 1.0"),
    ("dropout = -0.1", "dropout", "in [0, 1), got -0.1"),
    ("[dropout]\ndistribution = 'uniform'\nlow = 0.2\nhigh = 1.5", "[dropout] uniform range [0.2, 1.5]", "got 1.5"),
    (f"[dropout]\n{CAT}[0.0, 0.5, 1.0]", "[dropout] choices", "got 1.0"),
    ("dropout = '0.2'", "dropout", "got '0.2'; write it without quotes"),
    ("batch_size = 0", "batch_size", "whole number >= 1, got 0"),
    ("batch_size = -32", "batch_size", "got -32"),
    ("batch_size = true", "batch_size", "got True"),
    ("batch_size = '128'", "batch_size", "got '128'"),
    ("batch_size = 64.5", "batch_size", "got 64.5"),
    ("[batch_size]\ndistribution = 'uniform'\nlow = 16\nhigh = 256", "[batch_size] uniform draws fractions",
     "use distribution = 'int_uniform'"),
    ("[batch_size]\ndistribution = 'int_uniform'\nlow = 0\nhigh = 256", "[batch_size] int_uniform range [0, 256]",
     "got 0"),
    ("lr = 0", "lr", "must be > 0, got 0"),
    ("lr = -1e-3", "lr", "must be > 0"),
    ("lr = '1e-3'", "lr", "write it without quotes"),
    ("lr = [1e-3]", "lr", "finite number"),
    ("[lr]\ndistribution = 'log_uniform'\nlow = '1e-4'\nhigh = 0.1", "[lr] low must be a finite number",
     "got '1e-4'; write it without quotes"),
    ("[lr]\ndistribution = 'uniform'\nlow = -0.01\nhigh = 0.1", "[lr] uniform range [-0.01, 0.1]", "> 0"),
    (f"[lr]\n{CAT}[1e-3, 0]", "[lr] choices", "> 0, got 0"),
    ("weight_decay = -1e-4", "weight_decay", "must be >= 0"),
    ("optimizer = 'sgd'\nmomentum = 1.5", "momentum", "in [0, 1), got 1.5"),
    ("momentum = 0.9", "momentum applies to the sgd and rmsprop optimizers, but this space's optimizer is 'adam'",
     "remove momentum or add optimizer = \"sgd\""),
    ("[hidden]\ndistribution = 'decreasing_int'\nlow = 50\nhigh = 600\nlayers = 2\nbatch_size = 64",
     "[hidden] has unknown key 'batch_size'", "a 'name = value' line after [hidden] belongs to that table: put "
     "batch_size above the first [table]"),
    # a key another distribution reads was ignored: step = 16 drew 141, 137, 221 and 252
    ("[batch_size]\ndistribution = 'int_uniform'\nlow = 16\nhigh = 256\nstep = 16",
     "[batch_size] int_uniform takes no 'step' (it takes low, high)", "'step' is read by int_list only: remove it, "
     "or choose that distribution (or a categorical listing the values: choices = [16, 32, 48])"),
    ("[lr]\ndistribution = 'log_uniform'\nlow = 1e-4\nhigh = 1e-1\np = [0.5, 0.5]",
     "[lr] log_uniform takes no 'p' (it takes low, high)", "'p' is read by categorical only"),
    (f"[optimizer]\n{CAT}['adam', 'sgd']\nlow = 0", "[optimizer] categorical takes no 'low' (it takes choices, p)",
     "'low' is read by uniform and log_uniform and int_uniform and decreasing_int and int_list only"),
    # [] was a traceback, [1, 2, 3] read as [1, 2], [2] "must be a whole number, got None"
    *[(f"[hidden]\ndistribution = 'decreasing_int'\nlow = 8\nhigh = 64\nlayers = {layers}",
       "[hidden] layers must be a whole number or [min, max]", f"got {layers}") for layers in ("[]", "[2]", "[1, 2, 3]")],
    ("negative_slope = 'leaky'", "negative_slope", "finite number"),
    ("hidden = [0]", "hidden", "whole numbers >= 1, e.g. [64, 32], got [0]"),
    ("hidden = [100, -5]", "hidden", "got [100, -5]"),
    ("hidden = 100", "hidden", "must be a list"),
    ("hidden = ['100']", "hidden", "must be a list of whole numbers"),
    ("hidden = [true]", "hidden", "must be a list of whole numbers"),
    (f"[hidden]\n{CAT}[[100], [0]]", "[hidden] choices", "got [0]"),
    ("max_epochs = -1", "max_epochs", "whole number >= 1, got -1"),
    ("max_epochs = 0", "max_epochs", "0 epochs would rank untrained nets"),
    ("max_epochs = 2.5", "max_epochs", "got 2.5"),
    ("model = 'cnn'\nkernel_size = 2", "kernel_size", "odd whole number >= 1"),
    ("model = 'cnn'\nkernel_size = 0", "kernel_size", "got 0"),
    ("model = 'gapcnn'\nkernel_size = '3'", "kernel_size", "write it without quotes"),
    ("model = 'cnn'\n[kernel_size]\ndistribution = 'int_uniform'\nlow = 1\nhigh = 5",
     "[kernel_size] int_uniform range [1, 5]", "got 2"),
    (f"model = 'cnn'\n[kernel_size]\n{CAT}[3, 4]", "[kernel_size] choices", "got 4"),
    ("model = 'cnn'\nblock_size = 0", "block_size", "whole number >= 1"),
    ("model = 'cnn'\nblock_size = true", "block_size", "got True"),
    ("model = 'cnn'\nfilters = []", "filters", "needs at least one entry"),
    ("model = 'cnn'\nfilters = [32, 0]", "filters", "got [32, 0]"),
    ("model = 'cnn'\ndense = [0]", "dense", "got [0]"),
    ("model = 'cnn'\nconv_dropout = 1", "conv_dropout", "in [0, 1), got 1"),
    ("model = 'cnn'\nbatch_norm = 'yes'", "batch_norm", "true or false"),
    ("model = 'cnn'\nbatch_norm = 1", "batch_norm", "true or false"),
    ("model = 'gapcnn'\nfilters = [8, 8]\npool_after = [3]", "pool_after", "counts convolutions 1..2, got 3"),
    ("model = 'gapcnn'\npool_after = [0]", "pool_after", "whole numbers >= 1"),
    (f"model = 'gapcnn'\n[filters]\n{CAT}[[8, 8], [8, 8, 8, 8]]\n[pool_after]\n{CAT}[[2], [4]]",
     "pool_after: [4] with filters [8, 8]", "got 4"),
    ("model = 'gapcnn'\nfilters = [8]", "pool_after: [2] with filters [8]", "1..1"),  # pool_after's default, [2]
    ("model = 'mlp'\nfilters = [8]", "filters is a parameter of cnn and gapcnn", "would be ignored"),
    ("model = 'gapcnn'\nhidden = [8]", "hidden is a parameter of mlp", "model is 'gapcnn'"),
    (f"block_size = 2\n[model]\n{CAT}['mlp', 'gapcnn']", "block_size is a parameter of cnn", "'mlp' or 'gapcnn'"),
    (f"dropout = 1.0\n[model]\n{CAT}['mlp', 'cnn']", "dropout", "in [0, 1)"),
    (f"kernel_size = 4\n[model]\n{CAT}['mlp', 'cnn']", "kernel_size", "odd"),
    ("max_epochs = 99999999999999999999", "max_epochs", "must be at most 1,000,000"),  # a traceback from the store
    ("batch_size = 99999999999999999999", "batch_size", "must be at most 1,000,000,000"),
    # each config drawing both failed in the search (NaN), none was refused up front
    (f"[head]\n{CAT}['softmax', 'sigmoid']\n[loss]\n{CAT}['ce', 'worst_class']", "loss 'worst_class'",
     "head may be 'sigmoid', so the configs that draw both would fail"),
]


@pytest.mark.parametrize("toml, names, message", BAD, ids=[case[0][:40] for case in BAD])
def test_a_space_that_cannot_train_is_refused_naming_the_parameter(tmp_path, toml, names, message):
    with pytest.raises(UsageError) as info:
        _load(tmp_path, toml + "\n")
    text = str(info.value)
    assert text.startswith(f"space {tmp_path / 'space.toml'}: ")
    assert names in text and message in text
    assert "\n" not in text


def test_a_mapping_and_a_direct_construction_are_checked_too():
    with pytest.raises(UsageError, match="dropout must be a probability"):
        SearchSpace.from_dict({"dropout": 1.0})
    from hpsearch.space.distributions import Constant, Uniform
    with pytest.raises(UsageError, match=r"\[dropout\] uniform range \[0.2, 1.5\]"):
        SearchSpace({"model": Constant("mlp"), "dropout": Uniform(0.2, 1.5)})


@pytest.mark.parametrize("name", sorted(p.stem for p in SEARCHES_DIR.glob("*.toml")))
def test_every_shipped_space_loads_and_fits_digits_and_mnist(name, digits):
    space = load_space(name)
    check_space_for_data(space, digits)
    check_space_for_data(space, (1, 28, 28))


@pytest.mark.parametrize("toml", [
    "dropout = 0",
    "dropout = 0.999",
    "lr = 1e-12",
    "[lr]\ndistribution = 'log_uniform'\nlow = 1e-10\nhigh = 1e-9",
    "lr = 1",  # an int is a number
    "lr = 1e6",  # diverges (a training failure, reported as such), but is a learning rate
    "weight_decay = 0",
    "optimizer = 'sgd'\nmomentum = 0",
    "batch_size = 1\nmax_epochs = 1",
    "hidden = []",  # logistic regression
    "[dropout]\ndistribution = 'uniform'\nlow = 0\nhigh = 0.99",
    "model = 'cnn'\nkernel_size = 1\nblock_size = 1\nfilters = [4]\ndense = []\nbatch_norm = false",
    f"model = 'cnn'\n[kernel_size]\n{CAT}[1, 3, 5]",
    "model = 'gapcnn'\nfilters = [8, 8]",  # pool_after's default, [2], is after the last conv: no pool
    "model = 'gapcnn'\nfilters = [8, 8]\npool_after = []",
    "model = 'gapcnn'\nfilters = [8, 8]\npool_after = [1, 2]",  # a pool after the last conv is GAP's
    f"hidden = [16]\nfilters = [4, 4]\nblock_size = 2\ndropout = 0.2\n[model]\n{CAT}['mlp', 'cnn', 'gapcnn']",
    "negative_slope = -0.5",
])
def test_valid_edge_values_are_accepted(tmp_path, toml):
    space = _load(tmp_path, toml + "\n")
    config = ParamGenerator(space, 0).sample(0)
    for key, value in tomllib.loads(toml).items():  # a constant is drawn as written, not dropped or defaulted
        if not isinstance(value, dict):
            assert config[key] == (tuple(value) if isinstance(value, list) else value), (key, config[key])


def test_every_parameter_has_a_check():
    keys = {kind: set(module_keys(kind)) for kind in MODELS}  # read off each kind's constructor
    assert keys == {"mlp": {"hidden", "dropout", "negative_slope"},
                    "cnn": {"filters", "block_size", "dense", "dropout", "conv_dropout", "batch_norm", "kernel_size"},
                    "gapcnn": {"filters", "pool_after", "batch_norm", "dropout", "kernel_size"}}
    assert set(PARAMETERS) == set(NET_CHECKS) | set(PARAMETER_CHECKS)
    assert set().union(*keys.values()) == set(PARAMETER_CHECKS)


DATA_BAD = [
    ("model = 'cnn'\nfilters = [4, 4, 4, 4, 4, 4, 4, 4]", "filters: [4, 4, 4, 4, 4, 4, 4, 4] at block_size 2 makes 4 "
     "blocks; 4 blocks of 2x2 pooling need images of at least 16x16, digits images are 8x8; use at most 3 blocks"),
    ("model = 'cnn'\nfilters = [4, 4, 4, 4]\nblock_size = 1", "use at most 3 blocks (at most 3 convolutions"),
    (f"model = 'cnn'\nfilters = [4, 4, 4, 4]\n[block_size]\n{CAT}[4, 1]", "at block_size 1 makes 4 blocks"),
    (f"[model]\n{CAT}['mlp', 'cnn']\n[filters]\ndistribution = 'decreasing_int'\nlayers = [1, 7]\nlow = 8\nhigh = 64",
     "filters: [64, 63, 62, 61, 60, 59, 58] at block_size 2 makes 4 blocks"),
    ("model = 'gapcnn'\nfilters = [4, 4, 4, 4, 4]\npool_after = [1, 2, 3, 4]",
     "pool_after: [1, 2, 3, 4] with 5 filters pools 2x2 4 times; 4 poolings need images of at least 16x16"),
    (f"model = 'gapcnn'\n[filters]\n{CAT}[[4, 4, 4, 4], [4, 4, 4, 4, 4]]\n[pool_after]\n{CAT}[[1], [1, 2, 3, 4]]",
     "pool at most 3 times"),
]


@pytest.mark.parametrize("toml, message", DATA_BAD)
def test_a_net_too_deep_for_the_images_is_refused_once_the_data_are_loaded(tmp_path, digits, toml, message):
    space = _load(tmp_path, toml + "\n")
    with pytest.raises(UsageError) as info:
        check_space_for_data(space, digits)
    assert str(info.value).startswith("search space 'space': ") and message in str(info.value)
    check_space_for_data(space, (1, 28, 28))  # 28x28 takes four poolings


def _refused(call) -> bool:
    try:
        call()
    except UsageError:
        return True
    return False


@pytest.mark.parametrize("n_filters", range(1, 10))
@pytest.mark.parametrize("block_size", [1, 2, 3])
def test_the_data_check_agrees_with_what_the_cnn_builds(n_filters, block_size):
    space = SearchSpace.from_dict({"model": "cnn", "filters": [2] * n_filters, "block_size": block_size})
    assert _refused(lambda: check_space_for_data(space, (1, 8, 8))) == _refused(
        lambda: CNN(1, 8, 10, filters=(2,) * n_filters, block_size=block_size))


@pytest.mark.parametrize("pool_after", [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), (2, 4, 5), (5,)])
def test_the_data_check_agrees_with_what_the_gapcnn_builds(pool_after):
    space = SearchSpace.from_dict({"model": "gapcnn", "filters": [2] * 5, "pool_after": list(pool_after)})
    assert _refused(lambda: check_space_for_data(space, (1, 8, 8))) == _refused(
        lambda: GAPCNN(1, 8, 10, filters=(2,) * 5, pool_after=pool_after))


@pytest.mark.parametrize("data, reason", [
    ("model = 'mlp'\n".encode("utf-16"), "byte 0xff at offset 0: invalid start byte"),
    ("# r\xe9glages\nmodel = 'mlp'\n".encode("latin-1"), "byte 0xe9 at offset 3"),
])
def test_a_space_that_is_not_utf8_says_so(tmp_path, data, reason):
    path = tmp_path / "space.toml"
    path.write_bytes(data)
    with pytest.raises(UsageError) as info:
        load_space(path)
    text = str(info.value)
    assert text.startswith(f"space {path}: not UTF-8 text (") and text.endswith("); save it as UTF-8")
    assert reason in text


def test_utf8_with_a_byte_order_mark_and_non_ascii_comments_load(tmp_path):
    path = tmp_path / "space.toml"
    path.write_bytes("# Nh1 ∈ [50, 600], réglages\nmodel = 'mlp'\nhidden = [16]\n".encode("utf-8-sig"))
    space = load_space(path)
    assert space.constant("hidden") == (16,) and space.source.startswith("# Nh1 ∈")


@pytest.mark.parametrize("toml, message", [
    ("dropout = 1.5\n", "dropout must be a probability in [0, 1), got 1.5"),
    ("[optimizer]\ndistribution = 'categorical'\nchoices = ['adam', 'adan']\n", "[optimizer] choices:"),
    ("max_epochs = -1\n", "max_epochs must be a whole number >= 1, got -1"),
    ("model = 'mlp'\n".encode("utf-16"), "not UTF-8 text"),
])
def test_the_cli_exits_2_with_one_line_and_stores_no_trial(tmp_path, capsys, toml, message):
    space = tmp_path / "bad.toml"
    space.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
    out = tmp_path / "run"
    code = main(["search", "--space", str(space), "--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--no-retrain", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"hpsearch: error: --space {space}: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "trials.db").exists()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_cli_refuses_a_net_too_deep_for_the_images_before_any_trial(tmp_path, capsys):
    space = tmp_path / "deep.toml"
    space.write_text("model = 'cnn'\nfilters = [4, 4, 4, 4, 4, 4, 4, 4]\n")
    out = tmp_path / "run"
    code = main(["search", "--space", str(space), "--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--no-retrain", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "filters: [4, 4, 4, 4, 4, 4, 4, 4] at block_size 2 makes 4 blocks" in err
    assert len(err.strip().splitlines()) == 1 and not (out / "trials.db").exists()


def test_a_space_whose_widest_mlp_cannot_be_trained_in_memory_is_refused(tmp_path, digits, capsys):
    """A mistyped high = 100000 drew [85070, 54204]: 4.6e9 weights; Linux's overcommit let the search hang,
    silent, for minutes (or its OOM killer end other programs)."""
    from hpsearch.jobs.resources import physical_memory
    from hpsearch.space.checks import check_space_fits_memory

    text = "[hidden]\ndistribution = 'decreasing_int'\nlayers = [1, 2]\nlow = 50\nhigh = {high}\n"
    check_space_fits_memory(_load(tmp_path, text.format(high=600)), digits, 2**30)  # 64-600-599-10: 0.4M weights
    with pytest.raises(UsageError) as info:
        check_space_fits_memory(_load(tmp_path, text.format(high=10000)), digits, 2**30)
    weights = 64 * 10000 + 10000 * 9999 + 9999 * 10  # the widest draw, two layers
    assert str(info.value) == (f"search space 'space': [hidden] can draw [10000, 9999], {weights:.2g} weights on 64 "
                               f"inputs: about {weights * 16 / 2**30:,.0f} GiB to train (weights, gradients, Adam's "
                               "moments), more than this machine's 1 GiB; lower [hidden] high (or the layers)")
    with pytest.raises(UsageError, match=r"can draw \[30000, 30000\], .* GiB; use narrower \[hidden\] widths$"):
        check_space_fits_memory(_load(tmp_path, "hidden = [30000, 30000]\n"), digits, 2**30)  # no high to lower
    space = tmp_path / "huge.toml"
    space.write_text(text.format(high=100000))
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--no-retrain", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"more than this machine's {physical_memory() / 2**30:.0f} GiB" in err and not out.exists()
