import os, pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def has_cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except Exception: return False

@pytest.fixture(scope='session', autouse=True)
def _quiet_env(tmp_path_factory):
    "Keep runs quiet; use the user's model cache (pre-trained models are reused between runs)."
    os.environ.setdefault('IFT_NB_QUIET', '1')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    yield

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: trains for minutes; run with --slow')
    config.addinivalue_line('markers', 'cuda: needs a CUDA GPU; skipped elsewhere')

def pytest_addoption(parser):
    parser.addoption('--slow', action='store_true', help='also run cells and tests flagged slow')
    parser.addoption('--fresh', action='store_true', help='bypass every cached result (IFT_NB_FRESH=1): slow cells assert on a new run')

def pytest_sessionstart(session):
    if session.config.getoption('--fresh'): os.environ['IFT_NB_FRESH'] = '1'

def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason='slow: run with --slow')
    skip_cuda = pytest.mark.skip(reason='no CUDA GPU here')
    for it in items:
        if 'slow' in it.keywords and not config.getoption('--slow'): it.add_marker(skip_slow)
        if 'cuda' in it.keywords and not has_cuda(): it.add_marker(skip_cuda)
