"""Build README.md from nbs/index.ipynb without Quarto: nbdev's own notebook processors
(the ones `nbdev.serve.proc_nbs` applies for the docs), then nbconvert's Markdown exporter.
`python .ci/readme.py` writes README.md; `--check` fails if README.md is out of date."""
import sys, tempfile
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from nbdev.config import get_config
from nbdev.processors import FilterDefaults
from nbconvert import MarkdownExporter
import nbformat

def render(root: Path) -> str:
    nb = read_nb(root/get_config().nbs_path/get_config().readme_nb)
    FilterDefaults()(nb)
    fm = getattr(nb, 'frontmatter_', {}) or {}
    with tempfile.TemporaryDirectory() as d:
        write_nb(nb, Path(d)/'index.ipynb')
        nbf = nbformat.read(Path(d)/'index.ipynb', as_version=4)
    nbf.cells = [c for c in nbf.cells if c.cell_type != 'raw' and not c.source.startswith('<!-- WARNING')]
    nbf.metadata['language_info'] = {'name': 'python'}
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nbf)
    head = f"# {fm.get('title', get_config().lib_name)}\n\n"
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    warn = "<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n\n"
    return warn + head + body.strip() + "\n"

if __name__ == '__main__':
    root = Path(get_config().config_path)
    text, readme = render(root), root/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python .ci/readme.py` and commit README.md")
        print("README.md is in sync with nbs/index.ipynb")
    else:
        readme.write_text(text, encoding='utf-8'); print(f"wrote {readme}")
