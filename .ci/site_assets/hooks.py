"MkDocs hooks of the offline site (`.ci/site.py`): formulas as MathML, made at build time (no MathJax, no network)."
import html, re
from latex2mathml.converter import convert

_MATH = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]\s*</\1>', re.S)

def _mathml(m):
    tex, display = html.unescape(m.group(3)).strip(), m.group(2) == '['
    try: mml = convert(tex, display='block' if display else 'inline')
    except Exception: return m.group(0)  # left as TeX source rather than failing the build
    return f'<div class="nb-math-display">{mml}</div>' if display else f'<span class="nb-math">{mml}</span>'

def on_page_content(html_text, page, config, files):
    return _MATH.sub(_mathml, html_text)
