"""Build the docs website without Quarto: `python .ci/site.py [--out _site]`.

nbdev processes the notebooks exactly as for `nbdev_docs` (`nbdev.serve.proc_nbs`: hidden cells, directives, front matter,
doc links, show_doc cells); each processed notebook becomes one Markdown page, and MkDocs with the Material theme renders
the site: Pygments highlighting, per-page contents, previous/next links, heading anchors, a responsive layout and its
offline search (an index split by section, ranked with title matches first, snippets, Enter opens the best hit).
Material is a well-kept generator (maintained until May 2027; Zensical, its successor, reads the same configuration)
whose pages work offline (`offline` plugin with its file:// worker shim vendored, no web fonts, no CDN); Quarto, which
nbdev uses, cannot be installed here, and the Quarto path (`nbdev_docs`, the deploy workflow) is left as it is.

What this script does on top, the parts Quarto would do or the notebooks' outputs need:
- API entries (show_doc) are rendered again from the library's objects: a signature (`class` for classes, types without
  module paths, dataclass factories and lambdas as written), the docstring, and nbdev's Type/Default/Details table of
  docments; the CLI's `cmd_*` entries show their subcommand's usage and options from the argument parser;
- formulas become MathML at build time (latex2mathml, in `site_assets/hooks.py`): no MathJax, no network;
- outputs lose the paths of the machine that ran them (temporary folders, home, site-packages) and Python warnings;
  column-aligned text tables in outputs (a header line over rows of values, or rows that repeat their labels) become
  HTML tables;
- plots are image files shown at their notebook size, never scaled below 82% (their 8 pt text stays above 9 px):
  a wider figure scrolls sideways in its own box.
"""
import argparse, ast, base64, dataclasses, html, importlib, inspect, io, json, os, re, shutil, subprocess, sys, tempfile, textwrap
from pathlib import Path
import yaml
import markdown
from nbdev.config import get_config
from nbdev.serve import proc_nbs

HERE = Path(__file__).resolve().parent
ASSETS = HERE/'site_assets'
MIN_FIG_SCALE = 0.82  # plots never shown smaller: the 8 pt labels of the plot helpers stay above 9 px

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

# ---------------------------------------------------------------- outputs: machine paths, warnings, progress bars
_WARNING = re.compile(r'^\S.*?:\d+: \w*(?:Warning|Deprecation)\w*: .*\n(?:[ \t]+\S.*\n?)*', re.M)
_PATHS = [(re.compile(r'(?:/private)?(?:/var/folders/[^/\s]+/[^/\s]+/T|/tmp)/(?:tmp|pytest-of-)[^/\s\'",:)]*'), 'tmp'),
          (re.compile(r'/\S*?/(site|dist)-packages/'), r'\1-packages/'),
          (re.compile(r'(?<![\w.~])(?:/[\w.-]+)+/(?=shared/data\b)'), '../'),  # the project's shared data beside the repository
          (re.compile(r'(?:/root|/home/[^/\s]+|/Users/[^/\s]+)(?=/)'), '~')]

def clean_text(s:str) -> str:
    "Output text as a reader should see it: no carriage-return progress frames, warnings or machine paths."
    s = '\n'.join(l.rsplit('\r', 1)[-1] for l in s.replace('\r\n', '\n').split('\n'))
    s = _WARNING.sub('', s)
    for pat, rep in _PATHS: s = pat.sub(rep, s)
    return s

_NUM = re.compile(r'^[-+]?[\d.,]+(?:e[-+]?\d+)?\s*(?:%|x|s|ms|MiB|GiB)?$|^[-+]?[\d.,]+\s*±\s*[\d.,]+$')

def _spans(lines):
    "Column spans: maximal runs of positions where some line has text."
    width = max(map(len, lines))
    filled = [any(i < len(l) and l[i] != ' ' for l in lines) for i in range(width)] + [False]
    spans, start = [], None
    for i, f in enumerate(filled):
        if f and start is None: start = i
        if not f and start is not None: spans.append([start, i]); start = None
    return spans

def _cells(line, spans): return [line[a:b].strip() for a, b in spans]

def _table(block):
    "A header line over rows of values, aligned in columns, as (header, rows); None when the block is not such a table."
    head, rows = block[0], block[1:]
    if len(rows) >= 2 and re.fullmatch(r'[ -]+', rows[0]) and rows[0].count('-') > 2:  # tabulate's 'simple' format
        spans = [[m.start(), m.end()] for m in re.finditer(r'-+', rows[0])]
        rows, width = rows[1:], max(map(len, block))
        spans[-1][1] = max(spans[-1][1], width)
        for (a, _), s in zip(spans[1:], spans): s[1] = a
        min_cols = 2
    else:
        spans, min_cols = _spans(rows + [head]), 3
        # a header fragment over no value joins its nearest neighbour ("real" + "tok/s", "speed / TRL" + "packed")
        i = 0
        while i < len(spans):
            a, b = spans[i]
            if all(not l[a:b].strip() for l in rows) and len(spans) > 1:
                left = a - spans[i-1][1] if i > 0 else 1 << 30
                right = spans[i+1][0] - b if i + 1 < len(spans) else 1 << 30
                j = i - 1 if left < right else i + 1
                spans[j] = [min(spans[j][0], a), max(spans[j][1], b)]; del spans[i]; i = 0; continue
            i += 1
        # values with no header, one space after the previous column, belong to it ("ift_nb" + "padded")
        i = 1
        while i < len(spans):
            if not head[spans[i][0]:spans[i][1]].strip() and spans[i][0] - spans[i-1][1] == 1:
                spans[i-1][1] = spans[i][1]; del spans[i]
            else: i += 1
    if len(spans) < min_cols or len(rows) < 2: return None
    hc = _cells(head, spans)
    if not all(hc[1:]) or any(_NUM.match(c) for c in hc if c): return None
    cells = [_cells(r, spans) for r in rows]
    if any(not r[0] for r in cells) or any(sum(map(bool, r[1:])) < (len(r) - 1) / 2 for r in cells): return None
    if sum(bool(_NUM.match(c)) for r in cells for c in r[1:]) < len(cells) * (len(spans) - 1) / 2: return None  # mostly numbers
    return hc, cells

_VAL = re.compile(r'^(?:[-+]?\d[\d.,]*(?:e[-+]?\d+)?[%x]?|nan|inf)(?: ± [\d.,]+)?(?: \([^)]*\))?$')

def _fields(line):
    "A line of 'name  label value  value unit  ...' fields (two or more spaces apart), each field typed."
    out = []
    for f in re.split(r'\s{2,}', re.sub(r'±\s+', '± ', line.strip())):
        cut = next((k for k in range(len(f)) if f[k] == ' ' and re.search('[A-Za-z]', f[:k]) and _VAL.match(f[k+1:])), None)
        if out and cut: out += [('label', f[:cut]), ('value', f[cut+1:], '')]; continue  # "final loss 1.324"
        m = re.match(r'^([-+]?\d[\d.,]*(?:e[-+]?\d+)?[%x]?)\s+([^\d\s]+)$', f)
        if out and m: out.append(('value', m.group(1), m.group(2))); continue
        out.append(('value', f, '') if out and _VAL.match(f) else ('label', f))
    return out

def _labelled(block):
    "Rows that repeat their labels ('padded  padding 43.7%  real tokens/s 23436'), as (header, rows); None otherwise."
    rows = [_fields(l) for l in block]
    longest = max(rows, key=len)
    if len(rows) < 2 or len(longest) < 3 or any(len(r) < 2 for r in rows): return None
    notes = set()  # text that differs between rows, or ends a row: a column of its own
    for r in rows:  # every row follows the longest row's pattern (shorter rows stop early): same labels, same units
        for k, (f, g) in enumerate(zip(r[1:], longest[1:]), 1):
            if f[0] != g[0] or (f[0] == 'value' and f[2] != g[2]): return None
            if f[0] == 'label' and (f[1] != g[1] or k + 1 == len(r)): notes.add(k)
    head, cols, pending = [''], [], ''
    for k, f in enumerate(longest[1:], 1):
        if f[0] == 'label' and k not in notes: pending = f'{pending} {f[1]}'.strip(); continue
        unit = f[2] if f[0] == 'value' else ''
        head.append(f'{pending} ({unit})' if pending and unit else pending or unit); cols.append(k); pending = ''
    if not cols or pending or not any(head) or len(notes) > 1: return None
    return head, [[r[0][1]] + [r[k][1] if k < len(r) else '' for k in cols] for r in rows]

def text_segments(text:str):
    "Split output text into ('pre', text) and ('table', header, rows) segments."
    lines, out, i, buf = text.split('\n'), [], 0, []
    while i < len(lines):
        best = None
        if lines[i].startswith('|') and i + 1 < len(lines) and re.fullmatch(r'\|[-:| ]+\|', lines[i+1].strip()):  # a Markdown table (`md_table`)
            k = i + 2
            while k < len(lines) and lines[k].startswith('|'): k += 1
            cells = lambda l: [c.strip() for c in l.strip().strip('|').split('|')]
            if buf: out.append(('pre', '\n'.join(buf))); buf = []
            out.append(('table', cells(lines[i]), [cells(l) for l in lines[i+2:k]])); i = k; continue
        ind = len(lines[i]) - len(lines[i].lstrip())
        if i + 1 < len(lines) and lines[i+1].strip():  # a header over a nameless first column starts further right
            ind = min(ind, len(lines[i+1]) - len(lines[i+1].lstrip()))
        if len(re.split(r'\s{2,}', lines[i].strip())) >= 2:
            j = i + 1
            while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip(' -')) >= ind \
                  and (len(lines[j]) - len(lines[j].lstrip()) == ind or re.fullmatch(r'[ -]+', lines[j])): j += 1
            for k in range(j, i + 2, -1):
                t = _table([l[ind:].rstrip() for l in lines[i:k]])
                if t: best = (k, t); break
            prev = lines[i-1] if i else ''
            for k in range(j, i + 1, -1):  # rows with labels: none left out above (a line of fields at the same indent)
                if best or (len(prev) - len(prev.lstrip()) == ind and len(re.split(r'\s{2,}', prev.strip())) > 1): break
                t = _labelled([l[ind:].rstrip() for l in lines[i:k]])
                if t: best = (k, t)
        if best:
            if buf: out.append(('pre', '\n'.join(buf))); buf = []
            out.append(('table',) + best[1]); i = best[0]
        else: buf.append(lines[i]); i += 1
    if buf and '\n'.join(buf).strip(): out.append(('pre', '\n'.join(buf)))
    return out

def _html_table(head, rows):
    esc = html.escape
    align = ['left' if not any(_NUM.match(r[k]) for r in rows if r[k]) else 'right' for k in range(len(head))]
    th = ''.join(f'<th style="text-align:{a}">{esc(h)}</th>' for h, a in zip(head, align))
    trs = ''.join('<tr>' + ''.join(f'<td style="text-align:{a}">{esc(c)}</td>' for c, a in zip(r, align)) + '</tr>' for r in rows)
    return f'<table class="nb-table">\n<thead><tr>{th}</tr></thead>\n<tbody>{trs}</tbody>\n</table>'

def output_html(text:str, kind:str) -> str:
    "An output block: preformatted text, with any text table in it as an HTML table."
    parts = []
    for seg in text_segments(text.strip('\n')):
        if seg[0] == 'pre':
            if seg[1].strip(): parts.append(f'<pre><code>{html.escape(seg[1].strip(chr(10)))}</code></pre>')
        else: parts.append(f'<div class="output-table">\n{_html_table(seg[1], seg[2])}\n</div>')
    return f'<div class="cell-output cell-output-{kind}">\n' + '\n'.join(parts) + '\n</div>' if parts else ''

# ---------------------------------------------------------------- API entries (show_doc), from the library's objects
_EMPTY = inspect.Parameter.empty

def fmt_anno(a) -> str:
    "An annotation as a reader writes it: `str | None`, `Record`, `list[Record]` (no module paths, no NoneType)."
    if a is _EMPTY: return ''
    s = a if isinstance(a, str) else inspect.formatannotation(a)
    s = re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", '', s)
    return s.replace('NoneType', 'None').replace("'", '')

def _src_defaults(obj) -> dict:
    "Defaults as written in the source (for lambdas and functions, whose repr is an address)."
    try:
        src = textwrap.dedent(inspect.getsource(obj)); tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError): return {}
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.ClassDef):
        node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == '__init__'), None)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): return {}
    a = node.args; pos = a.posonlyargs + a.args
    res = {p.arg: ast.get_source_segment(src, d) for p, d in zip(pos[len(pos)-len(a.defaults):], a.defaults)}
    res.update({p.arg: ast.get_source_segment(src, d) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
    return res

def fmt_default(obj, p:inspect.Parameter, src:dict) -> str:
    d = p.default
    if d is _EMPTY: return ''
    if repr(d) == '<factory>' and dataclasses.is_dataclass(obj):  # dataclasses.field(default_factory=...)
        f = next((f.default_factory for f in dataclasses.fields(obj) if f.name == p.name), None)
        if f in (list, dict, set, tuple) or getattr(f, '__module__', '') == 'collections':
            try: return repr(f())
            except Exception: pass
        return f'{getattr(f, "__name__", "factory")}()'
    r = repr(d)
    if r.startswith('<'): r = src.get(p.name) or getattr(d, '__name__', r)
    return r if len(r) <= 80 else r[:77] + '...'

def _params(obj):
    try: sig = inspect.signature(obj, eval_str=True)
    except Exception:
        try: sig = inspect.signature(obj)
        except Exception: return None, _EMPTY
    ps = list(sig.parameters.values())
    if ps and ps[0].name in ('self', 'cls') and not inspect.isclass(obj): ps = ps[1:]
    return ps, sig.return_annotation

def fmt_signature(prefix:str, name:str, obj, ps, ret) -> str:
    "A signature in nbdev's compact style (`a:int=1`), wrapped to fit the text column (76 characters)."
    src, parts, star = _src_defaults(obj), [], False
    for i, p in enumerate(ps):
        k = p.kind
        if k == p.KEYWORD_ONLY and not star: parts.append('*'); star = True
        pre = '*' if k == p.VAR_POSITIONAL else '**' if k == p.VAR_KEYWORD else ''
        star = star or k == p.VAR_POSITIONAL
        a, d = fmt_anno(p.annotation), fmt_default(obj, p, src)
        parts.append(pre + p.name + (f':{a}' if a else '') + (f'={d}' if d else ''))
        if k == p.POSITIONAL_ONLY and (i + 1 == len(ps) or ps[i+1].kind != p.POSITIONAL_ONLY): parts.append('/')
    r = fmt_anno(ret) if not inspect.isclass(obj) and ret not in (_EMPTY, None, type(None)) else ''
    tail = f')->{r}' if r else ')'
    one = f'{prefix}{name}(' + ', '.join(parts) + tail
    if len(one) <= 76: return one
    lines, cur = [], ''
    for x in parts:
        if cur and len(cur) + len(x) + 2 > 72: lines.append(cur + ','); cur = x
        else: cur = f'{cur}, {x}' if cur else x
    lines.append(cur)
    return f'{prefix}{name}(\n' + '\n'.join('    ' + l for l in lines) + '\n' + tail

def _docments(obj) -> dict:
    from fastcore.docments import docments
    try: return dict(docments(obj)) or {}
    except Exception: return {}

def _own_doc(obj) -> str:
    d = obj.__dict__.get('__doc__') if inspect.isclass(obj) else getattr(obj, '__doc__', None)
    if not d or (inspect.isclass(obj) and dataclasses.is_dataclass(obj) and d.startswith(obj.__name__ + '(')): return ''
    return inspect.cleandoc(d)

class ApiRenderer:
    "Renders nbdev's show_doc outputs again from the objects the source links point at."
    def __init__(self, site:str, pages:dict):
        from nbdev.doclinks import NbdevLookup
        self.lookup, self.site, self.pages = NbdevLookup(), site, pages
    def linkify(self, s): return self.lookup.linkify(s) if s else s
    def md_inline(self, s:str) -> str:
        "Markdown (a docments comment) as inline HTML, links made relative."
        s = re.sub(r'^(\s*)([>#+*-]|\d+\.)', r'\1\\\2', s, flags=re.M)  # "> 0 overrides epochs" is no blockquote
        h = markdown.markdown(self.linkify(s))
        h = re.sub(r'^<p>|</p>$', '', h.strip())
        return relink_html(h, self.site)

    def resolve(self, url, name):
        m = re.search(r'/blob/[^/]+/(.+?)\.py(?:#|$)', url or '')
        if not m: return None
        try:
            obj = importlib.import_module(m.group(1).replace('/', '.'))
            for part in name.split('.'): obj = getattr(obj, part)
            return obj
        except Exception as e:
            print(f'site.py: API entry {name} ({url}) rendered from the notebook: {type(e).__name__}: {e}', file=sys.stderr)
            return None

    @staticmethod
    def clean(md:str) -> str:
        "nbdev's own rendering of an entry this renderer cannot resolve, without its leaks (NoneType, __main__, <factory>, links in code)."
        def code(m):
            c = re.sub(r'\[(`?)([^\]`]+)\1\]\([^)]*\)', r'\2', m.group(0))
            c = re.sub(r':NoneType=None', '=None', c)
            c = re.sub(r'\b(?:__main__|[a-z_]+(?:\.[a-z_]+)+)\.(?=[A-Z])', '', c)
            return c.replace('=<factory>', '=...').replace('NoneType', 'None')
        md = re.sub(r'```python\n.*?```', code, md, flags=re.S)
        return re.sub(r'^```python\ndef (?=[A-Z])', '```python\nclass ', md, flags=re.M)

    def render(self, md:str) -> str | None:
        "Markdown of one API entry; None when the output is not a show_doc entry this renderer can resolve."
        m = re.match(r'---\s*\n+(?:\[source\]\((?P<url>[^)]+)\)\{[^}]*\}\s*\n+)?(?P<h>#+) (?P<name>\S+)\s*\n', md)
        if not m: return None
        name, level, url = m.group('name').replace('\\', ''), len(m.group('h')), m.group('url')
        obj = self.resolve(url, name)
        if obj is None: return None
        obj = getattr(obj, '__wrapped__', obj) if not inspect.isclass(obj) else obj
        ps, ret = _params(obj)
        is_cls = inspect.isclass(obj)
        prefix = 'class ' if is_cls else 'async def ' if inspect.iscoroutinefunction(obj) else 'def '
        anchor = name.lower()
        esc_name = re.sub(r'([_*\\`])', r'\\\1', name)
        out = []
        if url: out.append(f'<a class="api-source" href="{html.escape(url)}" target="_blank" rel="noopener">source</a>')
        out.append(f'{"#" * level} {esc_name} {{ #{anchor} .api-name }}')
        cli = self.cli_command(obj, name)
        if cli is not None:
            usage, rows = cli
            out.append(f'```text\n{usage}\n```')
            if (d := _own_doc(obj)): out.append(self.linkify(d))
            if rows: out.append(self.table(['option', 'default', 'details'], rows))
            return '\n\n'.join(out)
        if ps is not None: out.append(f'```python\n{fmt_signature(prefix, name, obj, ps, ret)}\n```')
        if (d := _own_doc(obj)): out.append(self.linkify(d))
        dm = _docments(obj) if ps else {}
        if ps and (any(dm.values()) or any(p.annotation is not _EMPTY for p in ps)):  # nbdev shows a table when there is more to say
            src = _src_defaults(obj)
            rows = []
            for p in ps:
                pre = '*' if p.kind == p.VAR_POSITIONAL else '**' if p.kind == p.VAR_KEYWORD else ''
                rows.append([f'<code>{pre}{html.escape(p.name)}</code>', f'<code>{html.escape(fmt_anno(p.annotation))}</code>' if fmt_anno(p.annotation) else '',
                             f'<code>{html.escape(fmt_default(obj, p, src))}</code>' if p.default is not _EMPTY else '',
                             self.md_inline(dm.get(p.name) or '')])
            r = fmt_anno(ret) if not is_cls and ret not in (_EMPTY, None, type(None)) else ''
            if r or dm.get('return'): rows.append(['<strong>Returns</strong>', f'<code>{html.escape(r)}</code>' if r else '', '', self.md_inline(dm.get('return') or '')])
            out.append(self.table(['', 'Type', 'Default', 'Details'], rows))
        return '\n\n'.join(out)

    def table(self, head, rows):
        keep = [0] + [k for k in range(1, len(head)) if any(r[k] for r in rows)]
        cls = ['name', 'type', 'default', 'details'] if len(head) == 4 else ['name', 'default', 'details']
        th = ''.join(f'<th>{head[k]}</th>' for k in keep)
        trs = '\n'.join('<tr>' + ''.join(f'<td class="api-{cls[k]}">{r[k]}</td>' for k in keep) + '</tr>' for r in rows)
        return f'<div class="api-params">\n<table class="nb-table">\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}\n</tbody>\n</table>\n</div>'

    def cli_command(self, obj, name):
        "For a `cmd_*` function of the CLI: its subcommand's usage and (option, default, help) rows."
        if not name.startswith('cmd_'): return None
        try: p = importlib.import_module(obj.__module__).parser()
        except Exception: return None
        subs = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        sp = next((s for s in (subs.choices.values() if subs else []) if s.get_default('func') is obj), None)
        if sp is None: return None
        fmt, rows = sp._get_formatter(), []
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction): continue
            opt = ', '.join(a.option_strings) if a.option_strings else (a.metavar or a.dest)
            if a.option_strings and a.nargs != 0: opt += ' ' + (a.metavar or a.dest.upper())
            dflt = '' if a.default in (None, False, argparse.SUPPRESS) or not a.option_strings else repr(a.default) if isinstance(a.default, str) else str(a.default)
            hlp = fmt._expand_help(a) if a.help else ''
            if a.choices: hlp = (hlp + '; ' if hlp else '') + 'one of ' + ', '.join(f'`{c}`' for c in a.choices)
            if a.required and a.option_strings: hlp = 'required' + ('; ' + hlp if hlp else '')
            opt = html.escape(opt).replace(', ', ',<br>').replace('-', '-<wbr>')  # an option and its Hugging Face name on lines of their own; long names may wrap at a hyphen
            rows.append([f'<code>{opt}</code>', f'<code>{html.escape(dflt)}</code>' if dflt else '', self.md_inline(hlp)])
        return sp.format_usage().replace('usage: ', '').strip(), rows

# ---------------------------------------------------------------- notebooks to Markdown pages
def relink_md(md:str, site:str, files:dict) -> str:
    "nbdev's doc links point at the published site and notebooks: make them links between the Markdown pages."
    md = re.sub(re.escape(site) + r'([\w-]+)\.html', lambda m: f'{m.group(1)}.md', md)
    return re.sub(r'\]\((\d\d\w*?\.ipynb)', lambda m: f"]({Path(files.get(m.group(1), m.group(1))).stem}.md", md)

def relink_html(h:str, site:str) -> str: return h.replace(f'href="{site}', 'href="')

def _png_size(data:bytes):
    from PIL import Image
    im = Image.open(io.BytesIO(data)); dpi = (im.info.get('dpi') or (72, 72))[0]
    return im.size, dpi

def to_markdown(nb:dict, page:str, img_dir:Path, api:ApiRenderer, site:str, files:dict) -> str:
    "Markdown of a processed notebook: Quarto's directives honoured (include, echo, output), outputs cleaned."
    out, n_img = [], 0
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            if not src.lstrip().startswith('<!-- WARNING'): out.append(relink_md(src, site, files))
            continue
        if c['cell_type'] != 'code': continue
        d, code = _directives(src)
        if d.get('include') == 'false': continue
        if d.get('echo') != 'false' and code.strip(): out.append(f"```python\n{code}\n```")
        if d.get('output') == 'false': continue
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if o.get('output_type') == 'stream':
                if (h := output_html(clean_text(''.join(o['text'])), 'stderr' if o.get('name') == 'stderr' else 'stdout')): out.append(h)
            elif o.get('output_type') == 'error': continue
            elif 'image/png' in data:
                n_img += 1; f = img_dir/f"{page}_{n_img}.png"
                png = base64.b64decode(''.join(data['image/png'])); f.write_bytes(png)
                (w, h), dpi = _png_size(png)
                meta = (o.get('metadata') or {}).get('image/png', {})
                w, h = meta.get('width') or round(w * 100 / max(dpi, 100)), meta.get('height') or round(h * 100 / max(dpi, 100))
                out.append(f'<div class="cell-output cell-output-display nb-figure"><a href="{img_dir.name}/{f.name}" title="the plot at full size">'
                           f'<img src="{img_dir.name}/{f.name}" width="{w}" height="{h}" style="max-width:{w}px; min-width:{round(w * MIN_FIG_SCALE)}px" '
                           f'alt="plot {n_img} of {page}" loading="lazy"></a></div>')
            elif 'text/markdown' in data:
                md = clean_text(''.join(data['text/markdown']))
                out.append(api.render(md) or relink_md(api.clean(md), site, files))
            elif 'text/html' in data:
                out.append(f'<div class="cell-output cell-output-display">\n{relink_html(clean_text("".join(data["text/html"])), site)}\n</div>')
            elif 'text/plain' in data:
                if (h := output_html(clean_text(''.join(data['text/plain'])), 'display')): out.append(h)
    return '\n\n'.join(out)

def mkdocs_config(cfg, pages, docs:Path, out:Path) -> dict:
    extra_css = ['styles.css', 'site.css']
    return dict(
        site_name=cfg.lib_name, site_description=cfg.get('description', ''), docs_dir=str(docs), site_dir=str(out.resolve()),
        use_directory_urls=False, copyright=cfg.get('copyright', ''),
        nav=[{p['title']: Path(p['file']).stem + '.md'} for p in pages],
        theme=dict(name='material', font=False, language='en',
                   palette=dict(scheme='default', primary='blue', accent='blue'),
                   icon=dict(repo='fontawesome/brands/github'),
                   features=['navigation.footer', 'navigation.top', 'navigation.tracking', 'toc.follow',
                             'content.code.copy', 'search.highlight', 'search.share']),
        extra=dict(social=[dict(icon='fontawesome/brands/github', link=cfg.git_url, name='source on GitHub')], generator=False,
                   polyfills=['assets/javascripts/iframe-worker-shim.js']),  # the offline plugin would load it from a CDN
        extra_css=extra_css,
        hooks=[str(ASSETS/'hooks.py')],
        # snake_case splits into its words, CamelCase stays whole (TrainConfig); jieba (installed with ift_nb) splits Chinese
        plugins=[dict(search=dict(separator=r'[\s\u200b\-_,:!=\[\]()"`/]+|\.(?!\d)|&[lg]t;')), 'offline'],
        markdown_extensions=[
            dict(toc=dict(permalink='¶', permalink_title='Link to this section', toc_depth='2-3')),
            'attr_list', 'md_in_html', 'tables', 'admonition', 'footnotes', 'def_list',
            {'pymdownx.highlight': dict(use_pygments=True, pygments_lang_class=True)},
            'pymdownx.superfences', 'pymdownx.inlinehilite',
            {'pymdownx.arithmatex': dict(generic=True)}],
        validation=dict(links=dict(anchors='warn')),
    )

def build(out:Path) -> list[dict]:
    "Build the site into `out`; returns the pages (title, file, source notebook)."
    cfg = get_config()
    nbs = Path(cfg.config_path)/cfg.nbs_path
    proc = proc_nbs(n_workers=0, skip_folder_re=r'^(runs|_.*|\..*)$')
    # the sidebar nbdev_sidebar makes: index first, then the notebooks in file order
    names = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    order = ['index.ipynb'] * ('index.ipynb' in names) + [n for n in names if n != 'index.ipynb']
    pages = []
    for name in order:
        nb = json.loads((proc/name).read_text(encoding='utf-8'))
        fm = frontmatter(nb)
        pages.append(dict(nb=name, nbjson=nb, title=fm.get('title', name), description=fm.get('description', ''),
                          file=fm.get('output-file', Path(name).stem + '.html')))
    site = f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip('/') + '/'
    files = {p['nb']: p['file'] for p in pages}
    api = ApiRenderer(site, files)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp)/'docs'; (docs/'images').mkdir(parents=True)
        shutil.copy(nbs/'styles.css', docs/'styles.css'); shutil.copy(ASSETS/'site.css', docs/'site.css')
        (docs/'assets'/'javascripts').mkdir(parents=True); shutil.copy(ASSETS/'iframe-worker-shim.js', docs/'assets'/'javascripts')
        for p in pages:
            stem = Path(p['file']).stem
            body = to_markdown(p['nbjson'], stem, docs/'images', api, site, files)
            head = f"---\ntitle: {json.dumps(p['title'], ensure_ascii=False)}\n---\n\n# {p['title']}\n\n"
            if p['description']: head += f'<p class="description" markdown="1">{html.escape(relink_md(p["description"], site, files), quote=False)}</p>\n\n'
            (docs/f'{stem}.md').write_text(head + body + '\n', encoding='utf-8')
        (Path(tmp)/'mkdocs.yml').write_text(yaml.safe_dump(mkdocs_config(cfg, pages, docs, out), allow_unicode=True, sort_keys=False), encoding='utf-8')
        if out.exists(): shutil.rmtree(out)
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(Path(tmp)/'mkdocs.yml')], capture_output=True, text=True,
                           env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})  # no end-of-life banner in the build log
        log = [l for l in (r.stdout + r.stderr).splitlines() if re.search(r'WARNING|ERROR|Error|Traceback', l) or r.returncode]
        if log: print('\n'.join(log), file=sys.stderr)
        if r.returncode: raise SystemExit(f'mkdocs build failed ({r.returncode})')
    (out/'pages.json').write_text(json.dumps([{k: p[k] for k in ('nb', 'title', 'file')} for p in pages], ensure_ascii=False, indent=1), encoding='utf-8')
    return pages

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='_site', help='output folder (default _site)')
    a = ap.parse_args()
    pages = build(Path(a.out))
    print(f"built {len(pages)} pages into {a.out}/")
