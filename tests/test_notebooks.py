"Every notebook is one test, run with nbdev's own notebook runner (`nbdev.test.test_nb`)."
import os, pytest
from pathlib import Path
from conftest import ROOT, has_cuda

NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def skip_flags(run_slow=False):
    "The flags in settings.ini's `tst_flags`, minus `cuda` where a GPU exists (and `slow` with --slow)."
    from nbdev.config import get_config
    flags = set(get_config(path=ROOT).tst_flags.split())
    if has_cuda(): flags.discard('cuda')
    if run_slow: flags.discard('slow')
    return sorted(flags)

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, request):
    from nbdev.test import test_nb
    cwd = os.getcwd()
    try: ok, secs = test_nb(nb, skip_flags=skip_flags(request.config.getoption('--slow')), basepath=ROOT)
    finally: os.chdir(cwd)
    assert ok, f'{nb.name} failed (traceback above)'
