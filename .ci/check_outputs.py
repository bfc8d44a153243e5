#!/usr/bin/env python
"Every saved output of a notebook comes from its cell's current source and holds no machine path: one line per problem, exit 1."
import sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tests'))
from nbrun import check_nb, legacy_cells

def main(paths):
    probs, legacy = [], []
    for p in paths: probs += check_nb(p); legacy += legacy_cells(p)
    if legacy: print(f"check_outputs: {len(legacy)} slow cells keep outputs from before this check (source unchanged since; not yet re-run):\n  " + '\n  '.join(legacy))
    for q in probs: print(q)
    print(f"check_outputs: {len(paths)} notebooks, {len(probs)} problems")
    return 1 if probs else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:] or sorted(str(p) for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))))
