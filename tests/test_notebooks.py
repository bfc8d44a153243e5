"Every notebook is one test, run by the project's notebook runner (`tests/nbrun.py`, nbdev's execnb shell as in `nbdev.test.test_nb`); a cell that prints must have its saved output."
import json, shutil, subprocess, sys, pytest
from pathlib import Path
from conftest import ROOT, has_cuda
from nbrun import run_nb, check_nb, src_hash, KEY

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
    secs, probs = run_nb(nb, skip_flags=skip_flags(request.config.getoption('--slow')))
    assert not probs, '\n'.join(probs)

def _check(nb_dir):
    return subprocess.run([sys.executable, str(ROOT/'.ci'/'check_outputs.py'), *map(str, sorted(nb_dir.glob('*.ipynb')))], capture_output=True, text=True)

def test_output_check_passes_on_the_notebooks():
    r = _check(ROOT/'nbs')
    assert r.returncode == 0, r.stdout[-3000:]

def test_output_check_fails_on_an_edited_slow_cell(tmp_path):
    "A copy of a notebook with one slow cell's source edited fails the check, naming the notebook and cell; so does a machine path in an output."
    nb_path = next(p for p in NBS if any('#| slow' in ''.join(c['source']) and c.get('outputs') for c in json.loads(p.read_text())['cells']))
    nb = json.loads(nb_path.read_text())
    i, c = next((i, c) for i, c in enumerate(nb['cells']) if '#| slow' in ''.join(c['source']) and c.get('outputs'))
    assert c['metadata'][KEY]['src'] == src_hash(c['source'])  # as saved: the check passes on it
    c['source'] = c['source'] + ['\nx = 1']
    (tmp_path/nb_path.name).write_text(json.dumps(nb), encoding='utf-8')
    r = _check(tmp_path)
    assert r.returncode == 1 and f'{nb_path.name} cell {i} ({c["id"]}): source changed' in r.stdout, r.stdout
    c['source'] = c['source'][:-1]; c['outputs'] = c['outputs'] + [{'output_type': 'stream', 'name': 'stdout', 'text': ['saved to /home/alice/runs\n']}]
    (tmp_path/nb_path.name).write_text(json.dumps(nb), encoding='utf-8')
    probs = [q for q in check_nb(tmp_path/nb_path.name) if f' cell {i} (' in q]
    assert probs == [f'{nb_path.name} cell {i} ({c["id"]}): output holds a machine path (\'/home/alice\')'], probs

def test_runner_reports_a_printing_cell_without_output(tmp_path):
    "A cell that prints when run but was saved without output is reported; --save then writes the output and its hash."
    nb = {'cells': [{'cell_type': 'code', 'id': 'a1', 'metadata': {}, 'execution_count': None, 'outputs': [], 'source': ['print(6 * 7)']},
                    {'cell_type': 'code', 'id': 'a2', 'metadata': {}, 'execution_count': None, 'outputs': [], 'source': ['#| slow\n', 'print(1)']}],
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}, 'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path/'x.ipynb').write_text(json.dumps(nb)); shutil.copy(ROOT/'settings.ini', tmp_path/'settings.ini')
    _, probs = run_nb(tmp_path/'x.ipynb')
    assert probs == ['x.ipynb cell 0 (a1): printed when run but has no saved output'], probs
    run_nb(tmp_path/'x.ipynb', save=True)
    c0, c1 = json.loads((tmp_path/'x.ipynb').read_text())['cells']
    assert c0['outputs'][0]['text'] == ['42\n'] and c0['metadata'][KEY] == {'src': src_hash('print(6 * 7)')}, c0
    assert c1['outputs'] == [] and KEY not in c1['metadata']  # the slow cell was not run
    assert run_nb(tmp_path/'x.ipynb')[1] == [] and check_nb(tmp_path/'x.ipynb') == []
