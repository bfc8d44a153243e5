"""The docs website, built offline by `.ci/site.py` and checked page by page in headless Chromium (the system one, driven by
Playwright), served from a local server, at 1280 and 400 px wide."""
import json, re, shutil, subprocess, sys, threading, time, urllib.request
from functools import partial
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
import pytest
from conftest import ROOT

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason='needs Chromium (apt-get install chromium; .ci/run installs it)')
SHOTS = ROOT/'_screenshots'

class Browser:
    "The system Chromium, headless, driven by Playwright: one page; `open` returns the script errors and failed loads it saw."
    def __init__(self):
        from playwright.sync_api import sync_playwright
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu'])
        self.page, self.errors = self.browser.new_page(viewport=dict(width=1280, height=900)), []
        self.page.on('pageerror', lambda e: self.errors.append(str(e)))
        self.page.on('console', lambda m: m.type == 'error' and self.errors.append(f'{m.text} {m.location.get("url", "")}'))
        # a load that failed or came back with an error status; a request cancelled (ERR_ABORTED, as when the next page's
        # navigation starts while a preload of the last one is in flight) is not the site's fault
        self.page.on('requestfailed', lambda r: 'ERR_ABORTED' not in (r.failure or '') and self.errors.append(f'{r.url}: {r.failure}'))
        self.page.on('response', lambda r: r.status >= 400 and self.errors.append(f'{r.url}: HTTP {r.status}'))

    def size(self, width, height=900): self.page.set_viewport_size(dict(width=width, height=height))
    def js(self, expr): return self.page.evaluate(expr)  # promises awaited, the value returned as JSON

    def wait(self, expr, timeout=10):
        try: self.page.wait_for_function(expr, timeout=timeout * 1000); return True
        except Exception: return False

    def open(self, url):
        "Load a page and wait until its load event and its scripts settled; returns the JavaScript problems logged."
        self.errors.clear()
        self.page.goto(url, wait_until='load', timeout=30_000)
        self.page.wait_for_timeout(300)
        return list(self.errors)

    def screenshot(self, path, width):
        self.size(width); self.page.wait_for_timeout(200)
        self.page.screenshot(path=str(path), full_page=True)

    def close(self): self.browser.close(); self.pw.stop()

class _Page(HTMLParser):
    "Links, ids, images, MathML elements and sidebar entries of a DOM."
    def __init__(self, text):
        super().__init__(); self.links, self.ids, self.imgs, self.math = [], set(), [], 0
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img': self.imgs.append(a.get('src', ''))
        if tag == 'math': self.math += 1

_IDS = {}
def _ids(url):
    if url not in _IDS: _IDS[url] = _Page(urllib.request.urlopen(url).read().decode('utf-8', 'replace')).ids
    return _IDS[url]

def check_page(base, name, dom, problems_js, expect_math=False, n_plots=0) -> list[str]:
    "Problems of one rendered page: broken internal links or anchors, missing images or formulas, JavaScript errors."
    p, problems = _Page(dom), []
    for href in dict.fromkeys(p.links):
        if re.match(r'^[a-z]+:', href): continue  # external (GitHub source links): not ours to check offline
        path, _, anchor = href.partition('#')
        target = path.split('?')[0] or name
        try: ids = _ids(f'{base}/{target}')
        except Exception as e: problems.append(f'{name}: broken link {href} ({e})'); continue
        if anchor and anchor not in ids: problems.append(f'{name}: link {href}: no id {anchor!r} in {target}')
    for src in p.imgs:
        if src.startswith('data:'): continue
        try: data = urllib.request.urlopen(f'{base}/{src}').read()
        except Exception as e: problems.append(f'{name}: image {src} missing ({e})'); continue
        if not data.startswith(b'\x89PNG'): problems.append(f'{name}: image {src} is not a PNG')
    if len(p.imgs) < n_plots: problems.append(f'{name}: {len(p.imgs)} images, the notebook has {n_plots} plots')
    if expect_math and not p.math: problems.append(f'{name}: no MathML formula')
    problems += [f'{name}: JavaScript: {l}' for l in problems_js]
    return problems

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'site'
    t = time.time()
    r = subprocess.run([sys.executable, '.ci/site.py', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f'site built in {time.time() - t:.0f} s')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(_Quiet, directory=str(out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield out, f'http://127.0.0.1:{srv.server_address[1]}', json.loads((out/'pages.json').read_text())
    srv.shutdown()

@pytest.fixture(scope='module')
def browser():
    b = Browser()
    yield b
    b.close()

def _nb(nb_name): return json.loads((ROOT/'nbs'/nb_name).read_text(encoding='utf-8'))

def _expectations(nb_name):
    "What a page must show, from its notebook: formulas where the markdown has $...$, an image per saved plot."
    nb = _nb(nb_name)
    md = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    plots = sum('image/png' in o.get('data', {}) for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    return bool(re.search(r'\$[^$\s][^$\n]*\$', md)), plots

MAIN = "document.querySelector('article.md-content__inner')"

def test_every_page_renders_with_links_formulas_plots_and_no_js_errors(site, browser):
    "Every notebook has a page; its links, anchors, images and formulas work, no script fails, the sidebar lists every page in order."
    out, base, pages = site
    nbs = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    assert sorted(p['nb'] for p in pages) == nbs, 'a notebook has no page'
    problems = []
    for p in pages:
        js = browser.open(f"{base}/{p['file']}")
        dom = browser.js('document.documentElement.outerHTML')
        math, plots = _expectations(p['nb'])
        problems += check_page(base, p['file'], dom, js, math, plots)
        # offline: every script, style sheet, font and image comes from the site itself
        ext = browser.js(f"performance.getEntriesByType('resource').map(r => r.name).filter(u => !u.startsWith({json.dumps(base)}))")
        problems += [f"{p['file']}: loads {u} from outside the site" for u in ext]
        hrefs = browser.js("[...document.querySelectorAll('nav.md-nav--primary > ul > li > a.md-nav__link')].map(a => a.getAttribute('href'))")
        want = [q['file'] for q in pages]
        got = [('' if h in ('.', './') else h.split('#')[0]) or p['file'] for h in hrefs]
        assert list(dict.fromkeys(got)) == want, (p['file'], got)  # the sidebar lists every page, in order
    assert not problems, '\n'.join(problems)
    assert _Page((out/'objective.html').read_text()).math and _Page((out/'index.html').read_text()).math

def test_highlighting_contents_prev_next_and_anchors(site, browser):
    "Code is coloured by Pygments, each page has its table of contents, previous/next links and heading anchors; styles.css is applied."
    out, base, pages = site
    for i, p in enumerate(pages):
        browser.open(f"{base}/{p['file']}")
        r = browser.js(f"""(() => {{
          const m = {MAIN}, code = m.querySelector('.highlight code .kn, .highlight code .k, .highlight code .n');
          const colours = new Set([...m.querySelectorAll('.highlight code span')].slice(0, 400).map(s => getComputedStyle(s).color));
          return {{tokens: m.querySelectorAll('.highlight code span').length, colours: colours.size,
                   toc: [...document.querySelectorAll('nav.md-nav--secondary a.md-nav__link')].map(a => a.getAttribute('href')),
                   h2: [...m.querySelectorAll('h2[id], h3[id]')].map(h => h.id),
                   anchors: [...m.querySelectorAll('h2 > a.headerlink, h3 > a.headerlink')].map(a => a.getAttribute('href')),
                   prev: document.querySelector('a.md-footer__link--prev')?.getAttribute('href') || null,
                   next: document.querySelector('a.md-footer__link--next')?.getAttribute('href') || null,
                   styles: [...document.styleSheets].some(s => (s.href || '').endsWith('/styles.css')),
                   outputBorder: (() => {{ const o = m.querySelector('.cell-output > pre, .cell-output > .output-table'); return o ? getComputedStyle(o).borderLeftStyle : 'none'; }})()}}; }})()""")
        has_code = any(c['cell_type'] == 'code' and not ''.join(c['source']).lstrip().startswith(('#| echo: false', '#|echo: false', '#| hide', '#| include: false'))
                       for c in _nb(p['nb'])['cells'])
        if has_code: assert r['tokens'] > 20 and r['colours'] >= 4, (p['file'], 'code is not highlighted', r['tokens'], r['colours'])
        if r['h2']:
            assert r['toc'], (p['file'], 'no table of contents')
            assert {h.split('#')[-1] for h in r['toc']} <= set(r['h2']), (p['file'], 'contents entries without a heading')
            assert set(a.lstrip('#') for a in r['anchors']) == set(r['h2']), (p['file'], 'a heading without its anchor link')
        assert (r['prev'] or '').split('#')[0] in ('', pages[i-1]['file'] if i else ''), (p['file'], r['prev'])
        if i: assert r['prev'], (p['file'], 'no previous link')
        if i + 1 < len(pages): assert r['next'] == pages[i+1]['file'], (p['file'], r['next'])
        assert r['styles'], (p['file'], 'nbs/styles.css is not applied')
        if 'cell-output' in browser.js(f'{MAIN}.innerHTML'): assert r['outputBorder'] == 'solid', p['file']

def _layout(browser):
    return browser.js("""(() => {
      const body = document.documentElement, main = document.querySelector('article.md-content__inner');
      const text = main.querySelector(':scope > p') || main;
      const h1 = main.querySelector('h1'), sidebar = document.querySelector('.md-sidebar--primary');
      const imgs = [...main.querySelectorAll('img')].map(i => ({w: i.getBoundingClientRect().width, nat: i.naturalWidth, css: +i.getAttribute('width') || i.naturalWidth,
                                                            box: i.parentElement.getBoundingClientRect().width, sw: i.parentElement.scrollWidth}));
      return {scrollW: body.scrollWidth, clientW: body.clientWidth, textW: text.getBoundingClientRect().width,
              h1Right: h1.getBoundingClientRect().right, h1Overflow: h1.scrollWidth > h1.clientWidth + 1,
              apiOverflow: [...main.querySelectorAll('.api-params')].filter(t => t.scrollWidth > t.clientWidth + 1).map(t => t.previousElementSibling?.id || t.innerText.slice(0, 60)),
              sidebarVisible: sidebar.getBoundingClientRect().right > 0 && getComputedStyle(sidebar).visibility !== 'hidden' && sidebar.getBoundingClientRect().width > 0,
              imgs};
    })()""")

def test_layout_at_1280_and_400_px(site, browser):
    "At 400 px the sidebar folds away, the text column takes the width and nothing scrolls the page sideways; plots keep readable text."
    out, base, pages = site
    for width in (1280, 400):
        browser.size(width)
        for p in pages:
            browser.open(f"{base}/{p['file']}")
            r = _layout(browser)
            assert r['scrollW'] <= r['clientW'] + 1, (p['file'], width, 'the page scrolls sideways', r['scrollW'])
            assert r['h1Right'] <= width and not r['h1Overflow'], (p['file'], width, 'the title is cut off')
            if width == 400:
                assert r['textW'] >= 300, (p['file'], 'text column too narrow', r['textW'])
                assert not r['sidebarVisible'], (p['file'], 'the sidebar stays at 400 px')
            else: assert r['sidebarVisible'] and r['textW'] >= 600, (p['file'], r)
            assert not r['apiOverflow'], (p['file'], width, 'API tables wider than the column', r['apiOverflow'])
            for im in r['imgs']:
                # the plot helpers' smallest text (8 pt value labels and legends), drawn at the notebook's 100 dpi, is 11.1 px at the figure's notebook size
                assert im['w'] / im['css'] * 8 * 100 / 72 >= 9, (p['file'], width, 'plot text under 9 px', im)
    browser.size(1280)

def test_api_entries(site, browser):
    "show_doc entries: a signature, the docstring and a Type/Default/Details table; classes as classes; no NoneType, __main__ or <factory>."
    out, base, pages = site
    browser.open(f'{base}/data.html')
    rec = browser.js(f"""(() => {{ const h = document.getElementById('record'), tbl = [], sig = [];
        for (let e = h.nextElementSibling; e && !e.matches('h2, h3, a.api-source'); e = e.nextElementSibling) {{
          if (e.matches('.highlight, pre')) sig.push(e.innerText);
          for (const tr of e.querySelectorAll('tr')) tbl.push([...tr.children].map(c => c.innerText.trim())); }}
        return {{sig: sig.join('\\n'), tbl}}; }})()""")
    assert rec['sig'].startswith('class Record('), rec
    assert 'history:list=[]' in rec['sig'] and '<factory>' not in rec['sig'], rec
    enc = browser.js(f"""(() => {{ const h = document.getElementById('encode'), rows = [];
        for (let e = h.nextElementSibling; e && !e.matches('h2, h3, a.api-source'); e = e.nextElementSibling)
          for (const tr of e.querySelectorAll('tr')) rows.push([...tr.children].map(c => c.innerText.trim()));
        return rows; }})()""")
    head, rows = enc[0], {r[0]: r for r in enc[1:]}
    assert head[1:] == ['Type', 'Default', 'Details'], head
    assert rows['rec'][1:] == ['Record', '', 'the example'], rows['rec']
    assert rows['max_length'][1:3] == ['int | None', '512'] and 'longest example' in rows['max_length'][3], rows['max_length']
    assert rows['Returns'][1] == 'dict', rows
    for p in pages:
        text = browser.open(f"{base}/{p['file']}") and None or browser.js(f'{MAIN}.innerText')
        for leak in ('NoneType', '__main__', '<factory>', 'object at 0x', '<function '):
            assert leak not in text, (p['file'], leak, text[max(0, text.find(leak) - 200):text.find(leak) + 100])
        # no markdown left raw in signatures, no smart typography in code
        for sig in browser.js(f"[...{MAIN}.querySelectorAll('h3.api-name + div.highlight, h3.api-name + pre')].map(e => e.innerText)"):
            assert '](' not in sig and '–' not in sig, (p['file'], sig)
        # API tables fit the column: nothing runs off the right edge of the page
        over = browser.js(f"[...{MAIN}.querySelectorAll('.api-params')].filter(t => t.getBoundingClientRect().right > {MAIN}.getBoundingClientRect().right + 2).length")
        assert over == 0, (p['file'], 'an API table runs off the column')
    # the CLI page: each command's options, from the parser
    browser.open(f'{base}/cli.html')
    cli = browser.js(f"[...{MAIN}.querySelectorAll('h3.api-name')].filter(h => h.id.startsWith('cmd_')).map(h => {{ let t = ''; "
                     "for (let e = h.nextElementSibling; e && !e.matches('h2, h3, a.api-source'); e = e.nextElementSibling) t += e.innerText + '\\n'; return [h.id, t]; })")
    assert len(cli) >= 5, cli
    for cid, t in cli:
        assert 'ift_nb ' + cid[4:] in t and '(a)' not in t, (cid, t)
    opts = dict(cli)
    assert '--out' in opts['cmd_predict'] and '--model' in opts['cmd_predict'] and '--set' in opts['cmd_train'], opts
    assert '–out' not in browser.js(f'{MAIN}.innerText')  # no en dash made from --out

def _search(browser, q):
    "Type a query into Material's search box; the hits as shown (links, titles, snippets), best first."
    def typed(v): browser.js(f"""(() => {{ const i = document.querySelector('input.md-search__input'); i.focus(); i.value = {json.dumps(v)};
                                   i.dispatchEvent(new Event('input', {{bubbles: true}})); i.dispatchEvent(new KeyboardEvent('keyup', {{bubbles: true}})); }})()""")
    typed('')
    assert browser.wait("document.querySelectorAll('.md-search-result__item').length === 0", 15)
    typed(q)
    assert browser.wait("document.querySelectorAll('.md-search-result__item').length > 0 || "
                        "/No matching/.test(document.querySelector('.md-search-result__meta')?.innerText || '')", 15), q
    time.sleep(.3)
    return browser.js("""[...document.querySelectorAll('.md-search-result__item')].map(li => ({
        hrefs: [...li.querySelectorAll('a.md-search-result__link')].map(a => { const u = new URL(a.href); return u.pathname.split('/').pop() + u.hash; }),
        titles: [...li.querySelectorAll('.md-search-result__article h1, .md-search-result__article h2')].map(h => h.innerText),
        text: [...li.querySelectorAll('.md-search-result__article p')].map(p => p.textContent).join(' ')}))""")

def test_search(site, browser):
    "Search covers page bodies split by section and API entry, ranks title matches first, shows snippets, links to anchors; Enter opens the first hit."
    out, base, pages = site
    idx = json.loads((out/'search'/'search_index.json').read_text())['docs']
    titles = [p['title'] for p in pages]
    assert not any(sum(t in d['text'] for t in titles[1:]) >= len(titles) - 2 for d in idx), 'the sidebar is indexed with the page'
    assert any(d['location'] == 'data.html#encode' for d in idx), 'API entries are not sections of the index'
    assert len({d['location'].split('#')[0] for d in idx}) == len(pages)
    longest = max(pages, key=lambda p: len((out/p['file']).read_text()))  # the whole of the longest page is indexed
    last = browser.open(f"{base}/{longest['file']}") and None or browser.js(f"[...{MAIN}.querySelectorAll('p')].at(-1).innerText")
    words = re.findall(r'[A-Za-z]{6,}', last)[-3:]
    assert all(any(w in d['text'] for d in idx if d['location'].startswith(longest['file'])) for w in words), (longest['file'], words)
    browser.open(f'{base}/index.html')
    hits = _search(browser, 'bench')
    assert hits[0]['hrefs'][0].split('#')[0] == 'bench.html', hits[:3]
    hits = _search(browser, 'packing')
    assert 'throughput.html' in [h['hrefs'][0].split('#')[0] for h in hits[:3]], hits[:3]
    hits = _search(browser, 'encode')
    assert 'data.html#encode' in hits[0]['hrefs'][:2], hits[:3]  # an API entry is its own hit, ranked by its heading
    hits = _search(browser, 'position-masked labels')  # words of a docstring: the entry's section, with its snippet
    assert 'data.html#encode' in hits[0]['hrefs'] and 'position-masked' in hits[0]['text'], hits[:2]
    browser.open((out/'index.html').as_uri())  # opened from the file system, search works too (Material's offline plugin)
    assert _search(browser, 'bench')[0]['hrefs'][0] == 'bench.html'
    browser.open(f'{base}/index.html')
    hits = _search(browser, 'TrainConfig')
    assert hits[0]['hrefs'][0] == 'train.html' and 'train.html#trainconfig' in hits[0]['hrefs'][:3], hits[:2]  # the class or one of its methods (TrainConfig.from_yaml) first
    browser.page.focus('input.md-search__input'); browser.page.keyboard.press('Enter')
    assert browser.wait("location.pathname.endsWith('/train.html') && location.hash.startsWith('#trainconfig')", 10), ('Enter did not open the best hit', browser.js('location.href'))

def _outputs(browser):
    return browser.js(f"[...{MAIN}.querySelectorAll('.cell-output')].map(o => o.innerText).join('\\n')")

def test_outputs_clean_and_tables(site, browser):
    "Outputs show no machine paths, interpreter warnings or progress bars; benchmark and results tables are HTML tables."
    out, base, pages = site
    for p in pages:
        browser.open(f"{base}/{p['file']}")
        text = _outputs(browser)
        for pat in (r'/tmp/tmp\w', r'/root/', r'/home/\w', r'site-packages/\S+\.py:\d+', r'\w*Warning: ', r'\d+it/s\]', r'#\|'):
            m = re.search(pat, text)
            assert not m, (p['file'], pat, text[max(0, m.start() - 200):m.end() + 100])
    browser.open(f'{base}/bench.html')
    tables = browser.js(f"[...{MAIN}.querySelectorAll('.cell-output table')].map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))")
    res = [t for t in tables if t[0][:2] == ['system', 'real tok/s']]
    assert res and all(len(r) == len(t[0]) for t in res for r in t) and any(r[0] == 'TRL' for t in res for r in t), tables
    browser.open(f'{base}/cli.html')
    tables = browser.js(f"[...{MAIN}.querySelectorAll('.cell-output table')].map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))")
    assert any(t[0] == ['metric', 'value'] and ['steps', '10'] in t for t in tables), tables
    browser.open(f'{base}/throughput.html')  # rows that repeat their labels ("padding 43.7%   real tokens/s 23436") become a table too
    tables = browser.js(f"[...{MAIN}.querySelectorAll('.cell-output table')].map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))")
    assert any(t[0][1:3] == ['padding', 'real tokens/s'] and len(t) >= 4 for t in tables), tables

def test_checker_finds_broken_pages(site, browser):
    "The checks above can fail: a page with a broken link, a missing image, no formula and a script error is reported."
    out, base, pages = site
    (out/'broken.html').write_text('<html><body><nav></nav><main><a href="missing.html">x</a><a href="index.html#no-such-id">y</a>'
                                   '<img src="images/none.png"><script>undefinedFunction()</script></main></body></html>')
    js = browser.open(f'{base}/broken.html')
    probs = check_page(base, 'broken.html', browser.js('document.documentElement.outerHTML'), js, expect_math=True, n_plots=2)
    for what in ('broken link missing.html', "no id 'no-such-id'", 'image images/none.png missing', 'no MathML formula', 'JavaScript'):
        assert any(what in x for x in probs), (what, probs)
    (out/'broken.html').unlink()

def test_screenshots(site, browser):
    "Full-page screenshots of the index, 02 (API entries), 08 (plots) and 11 (benchmark tables) at 1280 and 400 px, kept in _screenshots/."
    out, base, pages = site
    from PIL import Image
    SHOTS.mkdir(exist_ok=True)
    for page in ('index.html', 'data.html', 'tutorial_sentiment.html', 'bench.html'):
        for width in (1280, 400):
            f = SHOTS/f'{Path(page).stem}_{width}.png'
            if f.exists(): f.unlink()
            browser.open(f'{base}/{page}')
            browser.js("Promise.all([...document.images].map(i => i.loading = 'eager').concat([new Promise(r => setTimeout(r, 300))]))")
            browser.screenshot(f, width)
            im = Image.open(f)
            assert im.size[0] == width and len(im.convert('L').getcolors(1 << 16)) > 50, f'{f.name} is blank'
    px = Image.open(SHOTS/'tutorial_sentiment_1280.png').convert('RGB').getdata()  # the tutorial's plots are drawn: matplotlib's C0 blue is on screen
    assert sum(abs(r - 31) < 25 and abs(g - 119) < 25 and abs(b - 180) < 25 for r, g, b in px) > 5000, 'no plot on the screenshot'
