"""Build the docs website without Quarto: `python .ci/site.py [--out _site]`.

nbdev processes the notebooks itself (`nbdev.serve.proc_nbs`: show_doc API tables, hidden cells, directives, front
matter), exactly as for `nbdev_docs`; each processed notebook becomes one page, rendered with pandoc (formulas as
MathML, so no network is needed), with a sidebar in the notebooks' order (as `nbdev_sidebar` makes it), plots as image files, links
between pages made relative, and a small search box over all pages."""
import argparse, base64, html, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path
import yaml
from nbdev.config import get_config
from nbdev.serve import proc_nbs

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>$pagetitle$ | ift_nb</title>
<style>
body { margin: 0; font-family: system-ui, "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; line-height: 1.5; color: #222; }
#sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto; background: #f6f7f9; border-right: 1px solid #ddd; padding: 1rem; box-sizing: border-box; }
#sidebar a { display: block; padding: .2rem .3rem; color: #1a4d8f; text-decoration: none; border-radius: 4px; }
#sidebar a.current { background: #dde7f5; font-weight: 600; }
#search { width: 100%; box-sizing: border-box; padding: .3rem; margin: .5rem 0; }
#results a { font-size: 90%; }
main { margin-left: 270px; padding: 1rem 2rem; max-width: 980px; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; }
.cell-output pre { background: #fff; border-left: 3px solid lightsalmon; }
img { max-width: 100%; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
.description { font-style: italic; font-size: 120%; opacity: .75; }
</style></head>
<body>
<nav id="sidebar"><a href="index.html"><b>ift_nb</b></a>
<input id="search" type="search" placeholder="Search the docs">
<div id="results"></div>
$nav$
</nav>
<main>
<h1 class="title">$pagetitle$</h1>
$if(description)$<p class="description">$description$</p>$endif$
$body$
</main>
<script src="search_index.js"></script>
<script>
document.querySelectorAll('#sidebar a').forEach(a => { if (a.getAttribute('href') === location.pathname.split('/').pop()) a.classList.add('current'); });
const box = document.getElementById('search'), res = document.getElementById('results');
const run = () => {
  const q = box.value.trim().toLowerCase(); res.innerHTML = '';
  if (q.length < 2) return;
  for (const p of window.SEARCH_INDEX.filter(p => p.text.includes(q) || p.title.toLowerCase().includes(q)).slice(0, 10)) {
    const a = document.createElement('a'); a.href = p.url; a.textContent = p.title; res.appendChild(a);
  }
};
box.addEventListener('input', run);
const q0 = new URLSearchParams(location.search).get('q');  // search.html?q=... links and tests
if (q0) { box.value = q0; run(); }
</script>
</body></html>
"""

def frontmatter(nb:dict) -> dict:
    "The YAML front matter nbdev put in the first raw cell."
    for c in nb['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'raw' and s.startswith('---'): return yaml.safe_load(s.strip().strip('-')) or {}
    return {}

def _directives(src:str):
    d, keep = {}, []
    for l in src.splitlines():
        m = re.match(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$', l)
        if m: d[m.group(1)] = m.group(2).strip()
        else: keep.append(l)
    return d, '\n'.join(keep).strip('\n')

def to_markdown(nb:dict, page:str, img_dir:Path) -> str:
    "Pandoc markdown of a processed notebook: Quarto's directives honoured (include, echo, output, asis)."
    out, n_img = [], 0
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': out.append(src); continue
        if c['cell_type'] != 'code': continue
        d, code = _directives(src)
        if d.get('include') == 'false': continue
        if d.get('echo') != 'false' and code.strip(): out.append(f"```python\n{code}\n```")
        if d.get('output') == 'false': continue
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if o.get('output_type') == 'stream': out.append('<div class="cell-output">\n\n```\n' + ''.join(o['text']).rstrip() + '\n```\n\n</div>')
            elif 'image/png' in data:
                n_img += 1; f = img_dir/f"{page}_{n_img}.png"
                f.write_bytes(base64.b64decode(''.join(data['image/png'])))
                out.append(f"![]({img_dir.name}/{f.name})")
            elif 'text/markdown' in data: out.append(''.join(data['text/markdown']))
            elif 'text/html' in data: out.append(''.join(data['text/html']))
            elif 'text/plain' in data: out.append('<div class="cell-output">\n\n```\n' + ''.join(data['text/plain']).rstrip() + '\n```\n\n</div>')
    return '\n\n'.join(out)

def build(out:Path) -> list[dict]:
    "Build the site into `out`; returns the pages (title, file, source notebook)."
    cfg = get_config()
    nbs = Path(cfg.config_path)/cfg.nbs_path
    proc = proc_nbs(n_workers=0, skip_folder_re=r'^(runs|_.*|\..*)$')
    # the sidebar nbdev_sidebar makes: index first, then the notebooks in file order
    names = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    order = ['index.ipynb'] * ('index.ipynb' in names) + [n for n in names if n != 'index.ipynb']
    if out.exists(): shutil.rmtree(out)
    (out/'images').mkdir(parents=True)
    pages = []
    for name in order:
        nb = json.loads((proc/name).read_text(encoding='utf-8'))
        fm = frontmatter(nb)
        pages.append(dict(nb=name, nbjson=nb, title=fm.get('title', name), description=fm.get('description', ''),
                          file=fm.get('output-file', Path(name).stem + '.html')))
    site = f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip('/') + '/'
    files = {p['nb']: p['file'] for p in pages}
    nav = '\n'.join(f'<a href="{p["file"]}">{html.escape(p["title"])}</a>' for p in pages)
    index = []
    with tempfile.TemporaryDirectory() as tmp:
        tpl = Path(tmp)/'page.html'; tpl.write_text(_TEMPLATE, encoding='utf-8')
        for p in pages:
            md = to_markdown(p['nbjson'], Path(p['file']).stem, out/'images')
            md = md.replace(site, '')  # nbdev's doc links point at the published site: make them relative
            md = re.sub(r'\]\((\d\d\w*?\.ipynb)', lambda m: f"]({files.get(m.group(1), m.group(1))}", md)
            src = Path(tmp)/(Path(p['file']).stem + '.md'); src.write_text(md, encoding='utf-8')
            meta = Path(tmp)/'meta.yaml'; meta.write_text(yaml.safe_dump(dict(pagetitle=p['title'], description=p['description'], nav=nav), allow_unicode=True), encoding='utf-8')
            subprocess.run(['pandoc', str(src), '-f', 'markdown+raw_html+tex_math_dollars-yaml_metadata_block', '-t', 'html5', '--mathml', '--standalone',
                            '--template', str(tpl), '--metadata-file', str(meta), '--highlight-style', 'pygments', '-o', str(out/p['file'])], check=True)
            text = re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', (out/p['file']).read_text(encoding='utf-8'))).lower()
            index.append(dict(title=p['title'], url=p['file'], text=text[:20000]))
    (out/'search_index.js').write_text('window.SEARCH_INDEX = ' + json.dumps(index, ensure_ascii=False) + ';\n', encoding='utf-8')
    (out/'pages.json').write_text(json.dumps([{k: p[k] for k in ('nb', 'title', 'file')} for p in pages], ensure_ascii=False, indent=1), encoding='utf-8')
    return pages

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='_site', help='output folder (default _site)')
    a = ap.parse_args()
    if shutil.which('pandoc') is None: sys.exit("pandoc is needed: apt-get install pandoc")
    pages = build(Path(a.out))
    print(f"built {len(pages)} pages into {a.out}/")
