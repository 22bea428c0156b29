import pytest
import torch

from ltx_pipeline.tiny import build_tiny_components


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # Toy-sized tensors gain nothing from a second thread, and lose a lot when the cores are shared.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_components() -> dict:
    """Tiny LTX-2.3 components, shared read-only by the tests of one session."""
    return build_tiny_components("2.3", seed=0)


@pytest.fixture(scope="session")
def tiny_components_2_0() -> dict:
    return build_tiny_components("2.0", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_components: dict):
    """The tiny LTX-2.3 components as a diffusers-format folder, for `--model DIR`."""
    from ltx_pipeline import TI2VidTwoStagesPipeline

    folder = tmp_path_factory.mktemp("tiny_model")
    TI2VidTwoStagesPipeline(**tiny_components).save_pretrained(folder)
    return folder
