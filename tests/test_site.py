"The docs website, built offline by `.ci/site.py` and opened page by page in headless Chromium from a local server."
import json, re, shutil, subprocess, sys, threading, urllib.request
from functools import partial
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
import pytest
from conftest import ROOT

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = pytest.mark.skipif(CHROMIUM is None or shutil.which('pandoc') is None,
                                reason='needs Chromium and pandoc (apt-get install chromium pandoc; .ci/run installs them)')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
SHOTS = ROOT/'_screenshots'

class _Page(HTMLParser):
    "Links, ids, images, MathML elements and sidebar entries of a DOM."
    def __init__(self, text):
        super().__init__(); self.links, self.ids, self.imgs, self.math, self.nav, self._in_nav = [], set(), [], 0, [], 0
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'nav': self._in_nav += 1
        if tag == 'a' and a.get('href'):
            self.links.append(a['href'])
            if self._in_nav: self.nav.append(a['href'])
        if tag == 'img': self.imgs.append(a.get('src', ''))
        if tag == 'math': self.math += 1
    def handle_endtag(self, tag):
        if tag == 'nav': self._in_nav -= 1

def chromium(url, profile, *extra):
    "The DOM after load (stdout) and the browser log (stderr, console messages included)."
    r = subprocess.run([CHROMIUM, *FLAGS, f'--user-data-dir={profile}', '--enable-logging=stderr', '--v=0', *extra, url],
                       capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr

def js_errors(log):
    return [l for l in log.splitlines() if 'CONSOLE' in l and ('Uncaught' in l or 'Failed to load resource' in l or 'Error' in l)]

def check_page(base, name, dom, log, expect_math=False, n_plots=0) -> list[str]:
    "Problems of one rendered page: broken internal links or anchors, missing images or formulas, JavaScript errors."
    p, problems = _Page(dom), []
    for href in p.links:
        if re.match(r'^[a-z]+:', href): continue  # external (GitHub source links): not ours to check offline
        path, _, anchor = href.partition('#')
        target = path or name
        try: body = urllib.request.urlopen(f'{base}/{target}').read().decode('utf-8', 'replace')
        except Exception as e: problems.append(f'{name}: broken link {href} ({e})'); continue
        if anchor and anchor not in _Page(body).ids: problems.append(f'{name}: link {href}: no id {anchor!r} in {target}')
    for src in p.imgs:
        try: data = urllib.request.urlopen(f'{base}/{src}').read()
        except Exception as e: problems.append(f'{name}: image {src} missing ({e})'); continue
        if not data.startswith(b'\x89PNG'): problems.append(f'{name}: image {src} is not a PNG')
    if len(p.imgs) < n_plots: problems.append(f'{name}: {len(p.imgs)} images, the notebook has {n_plots} plots')
    if expect_math and not p.math: problems.append(f'{name}: no MathML formula')
    problems += [f'{name}: JavaScript: {l}' for l in js_errors(log)]
    return problems

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'site'
    r = subprocess.run([sys.executable, '.ci/site.py', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(_Quiet, directory=str(out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield out, f'http://127.0.0.1:{srv.server_address[1]}', tmp_path_factory.mktemp('chromium')
    srv.shutdown()

def _expectations(nb_name):
    "What a page must show, from its notebook: formulas where the markdown has $...$, an image per saved plot."
    nb = json.loads((ROOT/'nbs'/nb_name).read_text(encoding='utf-8'))
    md = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    plots = sum('image/png' in o.get('data', {}) for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    return bool(re.search(r'\$[^$\s][^$\n]*\$', md)), plots

def test_every_page_renders_with_links_formulas_plots_and_no_js_errors(site):
    out, base, prof = site
    pages = json.loads((out/'pages.json').read_text())
    nbs = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    assert sorted(p['nb'] for p in pages) == nbs, 'a notebook has no page'
    problems = []
    for i, p in enumerate(pages):
        dom, log = chromium(f"{base}/{p['file']}", prof/f'p{i}', '--dump-dom')
        assert '<main>' in dom, (p['file'], log[-2000:])
        math, plots = _expectations(p['nb'])
        problems += check_page(base, p['file'], dom, log, math, plots)
        nav = _Page(dom).nav
        assert nav[-len(pages):] == [q['file'] for q in pages], (p['file'], nav)  # the sidebar lists every page, in order
    assert not problems, '\n'.join(problems)
    assert _Page((out/'objective.html').read_text()).math and _Page((out/'index.html').read_text()).math

def test_api_tables_and_search(site):
    out, base, prof = site
    train = (out/'train.html').read_text(encoding='utf-8')
    assert 'id="trainconfig"' in train and re.search(r'TrainConfig\(.*?max_length', train, re.S)  # show_doc's signature, rendered by nbdev
    data = (out/'data.html').read_text(encoding='utf-8')
    assert re.search(r'id="encode".*?the example.*?Token ids and position-masked labels', data, re.S), "encode's API entry (signature with docments, docstring) is missing"
    dom, log = chromium(f'{base}/index.html?q=ensemble', prof/'search', '--dump-dom')
    assert 'ensemble.html' in re.search(r'<div id="results">(.*?)</div>', dom, re.S).group(1), 'the search box found nothing'
    assert not js_errors(log)

def test_checker_finds_broken_pages(site, tmp_path):
    "The checks above can fail: a page with a broken link, a missing image, no formula and a script error is reported."
    out, base, prof = site
    (out/'broken.html').write_text('<html><body><nav></nav><main><a href="missing.html">x</a><a href="index.html#no-such-id">y</a>'
                                   '<img src="images/none.png"><script>undefinedFunction()</script></main></body></html>')
    dom, log = chromium(f'{base}/broken.html', prof/'broken', '--dump-dom')
    probs = check_page(base, 'broken.html', dom, log, expect_math=True, n_plots=2)
    for what in ('broken link missing.html', "no id 'no-such-id'", 'image images/none.png missing', 'no MathML formula', 'JavaScript'):
        assert any(what in x for x in probs), (what, probs)

def test_screenshots(site):
    "Screenshots of the index, the objective chapter (formula), an API table and the tutorial's first plot, kept in _screenshots/."
    out, base, prof = site
    SHOTS.mkdir(exist_ok=True)
    for page, name, h in (('index.html', 'index', 1000), ('objective.html', 'objective', 1000), ('train.html', 'api_table', 1000),
                          ('tutorial_sentiment.html', 'plot', 4400)):
        f = SHOTS/f'{name}.png'
        if f.exists(): f.unlink()
        _, log = chromium(f'{base}/{page}', prof/f'shot_{name}', f'--window-size=1280,{h}', '--virtual-time-budget=5000', f'--screenshot={f}')
        assert f.exists(), log[-1000:]
        from PIL import Image
        assert len(Image.open(f).convert('L').getcolors(1 << 16)) > 50, f'{f.name} is blank'
    px = Image.open(SHOTS/'plot.png').convert('RGB').getdata()  # the tutorial's first plot is drawn: its blue (matplotlib C0) bars are on screen
    assert sum(abs(r - 31) < 25 and abs(g - 119) < 25 and abs(b - 180) < 25 for r, g, b in px) > 5000, 'no plot on the screenshot'
