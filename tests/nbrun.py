"""The project's one way of executing a notebook, and the check that its saved outputs come from today's code.

Running a notebook (`run_nb`) executes every code cell not flagged by `skip_flags`, with nbdev's own runner
(execnb's `CaptureShell`, as `nbdev.test.test_nb` does). It reports the cells that printed when run but have
no saved output. With `save=True` it writes each executed cell's outputs back, with a hash of the source that
produced them in the cell's metadata (`ift_nb: {src: ...}`, a key kept by `nbdev_clean` through settings.ini's
`allowed_cell_metadata_keys`). `check_nb` reads a saved notebook and lists every output that does not come from
its cell's current source, and every output holding a machine path.

    python tests/nbrun.py nbs/05_train.ipynb --save          # fast cells (what CI runs), outputs saved
    python tests/nbrun.py nbs/08_tutorial_sentiment.ipynb --save --slow   # slow cells too (quiet machine)
    python tests/nbrun.py nbs/08_tutorial_sentiment.ipynb --save --slow --only ID1,ID2   # these slow cells, the others kept
"""
import hashlib, json, os, re, sys, time
from pathlib import Path

KEY = 'ift_nb'  # the cell-metadata key that holds the producing source's hash
# A home, temporary or working folder, or an installed package's path: never in a saved output.
MACHINE_PATH = re.compile(r'(?<![\w.])(/root/|/home/\w+|/Users/\w+|/tmp/\S|/var/folders/|/private/var/|/work/\w|[A-Za-z]:\\\\Users\\\\|site-packages|dist-packages)')

def src_hash(source) -> str:
    "Hash of a cell's source (a string or nbformat's list of lines), trailing whitespace ignored."
    s = ''.join(source) if isinstance(source, list) else source
    return hashlib.sha256(s.rstrip().encode('utf-8')).hexdigest()[:16]

def _flags(source) -> set:
    "The `#| flag` directives of a cell (nbdev's syntax: `#|` at the start of a line before the code)."
    fl = set()
    for line in (''.join(source) if isinstance(source, list) else source).splitlines():
        m = re.match(r'\s*#\s*\|\s*(.*)', line)
        if not m:
            if line.strip(): break
            continue
        fl.update(m.group(1).replace(',', ' ').split()[:1])
    return fl

def _out_text(o) -> str:
    "The text of one saved output (streams, text/plain, html, errors); images are not searched."
    if o.get('output_type') == 'stream': return ''.join(o.get('text', ''))
    if o.get('output_type') == 'error': return '\n'.join([o.get('ename', ''), o.get('evalue', ''), *o.get('traceback', [])])
    d = o.get('data', {})
    return '\n'.join(''.join(d[k]) for k in ('text/plain', 'text/html', 'text/markdown') if k in d)

def check_nb(path) -> list:
    "Problems of a saved notebook, one line each: outputs whose source changed (or never hashed), machine paths in outputs."
    path = Path(path); nb = json.loads(path.read_text(encoding='utf-8')); probs = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code' or not c.get('outputs'): continue
        where = f"{path.name} cell {i} ({c.get('id', '?')})"
        meta = c.get('metadata', {}).get(KEY) or {}
        if 'src' not in meta: probs.append(f"{where}: saved output without the hash of the source that produced it (run it with tests/nbrun.py --save)")
        elif meta['src'] != src_hash(c['source']): probs.append(f"{where}: source changed since its saved output was produced (re-run it with tests/nbrun.py --save)")
        for o in c['outputs']:
            m = MACHINE_PATH.search(_out_text(o))
            if m: probs.append(f"{where}: output holds a machine path ({m.group(0)!r})"); break
    return probs

def legacy_cells(path) -> list:
    "Cells whose outputs predate the check and were kept unchanged (slow runs not yet re-run): `legacy: true` in their metadata."
    nb = json.loads(Path(path).read_text(encoding='utf-8'))
    return [f"{Path(path).name} cell {i} ({c.get('id', '?')})" for i, c in enumerate(nb['cells'])
            if c['cell_type'] == 'code' and (c.get('metadata', {}).get(KEY) or {}).get('legacy')]

def run_nb(path, # the notebook
           skip_flags=('slow', 'cuda'), # cells with one of these directives are not run (their saved outputs stay)
           save:bool=False, # write the executed cells' outputs and source hashes back into the notebook
           only:set|None=None, # ids of the slow cells to run (the other slow cells keep their saved outputs); None: as `skip_flags` says
          ):
    "Execute `path` top to bottom (cwd = its folder); return (seconds, problems): cells that printed but have no saved output."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    path = Path(path).resolve(); nb = read_nb(path); skip = set(skip_flags); ran = []
    def _skip(cell):
        if cell.cell_type != 'code' or not cell.source.strip(): return True
        if 'nbdev_export' + '(' in cell.source or _flags(cell.source) & (skip | {'eval:'}): return True
        if only is not None and 'slow' in _flags(cell.source) and cell.get('id') not in only: return True
        ran.append((cell, bool(cell.get('outputs')))); cell.outputs = []  # a cell that now prints nothing keeps no old output
        return False
    os.environ.setdefault('IN_TEST', '1'); os.environ.setdefault('IFT_NB_QUIET', '1')
    sys.path.insert(0, str(path.parents[1]))
    start, k = time.time(), CaptureShell(path)
    with working_directory(path.parent):
        k.run_all(nb, exc_stop=True, preproc=_skip)
    secs = time.time() - start
    probs = [f"{path.name} cell {c.idx_} ({c.get('id', '?')}): printed when run but has no saved output"
             for c, had in ran if c.get('outputs') and not had]
    if save:
        for c, _ in ran:
            md = dict(c.get('metadata') or {})
            if c.get('outputs'): md[KEY] = {'src': src_hash(c.source)}
            else: md.pop(KEY, None)
            c.metadata = md
        write_nb(nb, path)
        from nbdev.clean import nbdev_clean
        nbdev_clean(fname=str(path))
    return secs, probs

if __name__ == '__main__':
    import argparse
    p = argparse.ArgumentParser(description='Execute notebooks top to bottom the way CI does; --save keeps the outputs.')
    p.add_argument('notebooks', nargs='+'); p.add_argument('--save', action='store_true'); p.add_argument('--slow', action='store_true', help='run slow cells too')
    p.add_argument('--only', default=None, help='comma-separated ids of the slow cells to run (with --slow): the other slow cells keep their outputs')
    a = p.parse_args()
    for f in a.notebooks:
        secs, probs = run_nb(f, skip_flags=('cuda',) if a.slow else ('slow', 'cuda'), save=a.save, only=set(a.only.split(',')) if a.only else None)
        print(f"{f}: {secs:.0f} s" + ''.join(f"\n  {q}" for q in probs), flush=True)
